"""Baselines of the ``text`` modality: what replaces a prompt token that is taken away.

The text explainers take them as ``baseline=`` and the removal metrics as ``replacement=``,
by name, spec or instance, as the array baselines (``xs.list_baselines("text")``):

- ``pad_token``: the tokenizer's pad token, else its unk token (the default);
- ``unk_token``: the tokenizer's unk token;
- ``token``: one token of the vocabulary, by string or id: ``{"name": "token", "token": "the"}``;
- ``zero_embedding``: zero vectors in place of the prompt's token embeddings. Only
  integrated gradients takes it: perturbations and the removal metrics replace tokens.
"""

from __future__ import annotations

import numpy as np

from xai_suite.plugin import Baseline, register_baseline


class TextBaseline(Baseline):
    """A text baseline: :meth:`token_id` resolves it against a language model's tokenizer."""

    def __init__(self):
        pass

    def token_id(self, lm) -> int | None:
        """The replacing token's id in ``lm``'s vocabulary; ``None`` for zero embeddings."""
        raise NotImplementedError

    def sample(self, x, target, n_samples, rng, modality=None):
        raise TypeError(f"baseline {self.name!r} is a text baseline: it names a token (token_id(lm)), "
                        "not reference arrays")


@register_baseline("pad_token", modalities="text")
class PadToken(TextBaseline):
    """The tokenizer's pad token, else its unk token."""

    def token_id(self, lm) -> int:
        for tid in (lm.tokenizer.pad_token_id, lm.tokenizer.unk_token_id):
            if tid is not None:
                return int(tid)
        raise ValueError("the tokenizer has neither a pad nor an unk token: pass baseline="
                         "{'name': 'token', 'token': <a token string or id>}")


@register_baseline("unk_token", modalities="text")
class UnkToken(TextBaseline):
    """The tokenizer's unk (unknown) token."""

    def token_id(self, lm) -> int:
        if lm.tokenizer.unk_token_id is None:
            raise ValueError("the tokenizer has no unk token: pass baseline='pad_token' or "
                             "{'name': 'token', 'token': <a token string or id>}")
        return int(lm.tokenizer.unk_token_id)


@register_baseline("token", modalities="text")
class Token(TextBaseline):
    """One token of the vocabulary, ``token`` (its string or its id)."""

    def __init__(self, *, token: str | int = 0):
        self.token = token

    def token_id(self, lm) -> int:
        token, tok, n = self.token, lm.tokenizer, lm.vocab_size
        if isinstance(token, str):
            tid = tok.convert_tokens_to_ids(token)
            if tid is None or (tid == tok.unk_token_id and token != tok.unk_token):
                raise ValueError(f"token {token!r} is not a token of the tokenizer's vocabulary")
            return int(tid)
        if isinstance(token, bool) or not isinstance(token, int | np.integer) or not 0 <= token < n:
            raise ValueError(f"token must be a token string or a token id in [0, {n}); got {token!r}")
        return int(token)


@register_baseline("zero_embedding", modalities="text")
class ZeroEmbedding(TextBaseline):
    """Zero vectors in place of the token embeddings (integrated gradients only)."""

    def token_id(self, lm) -> None:
        return None
