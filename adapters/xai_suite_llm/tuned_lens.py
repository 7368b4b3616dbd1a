"""The tuned lens: the logit lens after a learned affine map per layer.

The logit lens (:mod:`.lens`) decodes an intermediate residual stream ``h_l`` as if it were
the last one. Earlier layers do not speak the last layer's basis, so their logit lens is
biased and often unreadable. The tuned lens (Belrose et al. 2023) learns, per layer, an
affine *translator* ``A_l h + b_l`` (initialised to the identity and zero) and decodes
``softmax(unembed(final_norm(A_l h_l + b_l)))``. The translators are trained, with the model
frozen, to minimise ``KL(final distribution || translated layer's distribution)`` over every
position of the text given, so each layer's decoding comes as close to the model's own output
as an affine map of that layer allows. The last layer needs no translator (its lens is the
output): it keeps the identity.

- :class:`TunedLens`: ``TunedLens.fit(lm, texts, ...)``, ``translate``, ``save(path)`` and
  ``TunedLens.load(path, lm)`` (which refuses another model's lens).
- ``native:tuned_lens`` (:class:`TunedLensExplainer`): the lens table of a prompt through a
  fitted tuned lens, a :class:`~xai_suite_llm.LogitLensResult` with ``lens="tuned"`` (the same
  table, plots and HTML view as the logit lens).
- :func:`kl_to_final`: each layer's mean KL to the final distribution on held-out text, for
  the logit lens or a tuned lens (the tuned lens's is lower wherever it learned anything).

Reference: Belrose, Furman, Smith, Halawi, Ostrovsky, McKinney, Biderman & Steinhardt (2023),
"Eliciting Latent Predictions from Transformers with the Tuned Lens", arXiv:2303.08112.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xai_suite.plugin import (
    atomic_write,
    check_positive_int,
    check_positive_number,
    check_random_state,
    chunks,
    progress,
    register_explainer,
)

from .lens import _Lens, decode_logits
from .models import LanguageModel, check_language_model, layer_hooks

#: ``format`` of a saved tuned lens (its JSON config says it).
FORMAT = "xai-suite-tuned-lens/1"
#: What a saved lens records of its model, and :meth:`TunedLens.load` compares.
IDENTITY = ("n_layers", "d_model", "vocab_size", "model_type")


def model_identity(lm: LanguageModel) -> dict:
    """The model facts a tuned lens is tied to: layers, width, vocabulary, architecture."""
    return {"n_layers": lm.n_layers, "d_model": lm.d_model, "vocab_size": lm.vocab_size,
            "model_type": str(getattr(lm.model.config, "model_type", type(lm.model).__name__))}


def as_token_ids(lm: LanguageModel, texts, what: str = "texts") -> list[torch.Tensor]:
    """``texts`` as a list of 1-D int64 id tensors (each ``(T_i,)``, 1 <= T_i <= positions).

    Parameters
    ----------
    lm : LanguageModel
    texts : sequence of str or of 1-D integer arrays/tensors, or a 2-D integer array (N, T)
        Strings are tokenised without special tokens; ids must lie in the vocabulary.
    what : str
        The argument's name in error messages.
    """
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a sequence of texts; got one string (wrap it in a list)")
    if isinstance(texts, torch.Tensor | np.ndarray) and np.ndim(texts) != 2:
        raise ValueError(f"{what} as one array must have shape (N, T); got {tuple(np.shape(texts))}")
    if not isinstance(texts, Sequence | torch.Tensor | np.ndarray) or len(texts) == 0:
        raise ValueError(f"{what} must be a non-empty sequence of strings or token id tensors; got "
                         f"{texts if isinstance(texts, Sequence) else type(texts).__name__!r}")
    max_pos = getattr(lm.model.config, "max_position_embeddings", None)
    out = []
    for i, text in enumerate(texts):
        if isinstance(text, str):
            ids = lm.encode(text).ids
        elif isinstance(text, torch.Tensor | np.ndarray | list | tuple):
            ids = torch.as_tensor(np.asarray(text))
            if ids.ndim != 1 or len(ids) == 0 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
                raise ValueError(f"{what}[{i}] as token ids must be a non-empty 1-D integer sequence; "
                                 f"got shape {tuple(ids.shape)} and dtype {ids.dtype}")
            if int(ids.min()) < 0 or int(ids.max()) >= lm.vocab_size:
                raise ValueError(f"{what}[{i}]: token ids must lie in [0, {lm.vocab_size})")
        else:
            raise TypeError(f"{what}[{i}] must be a string or a sequence of token ids; got "
                            f"{type(text).__name__}")
        if max_pos is not None and len(ids) > max_pos:
            raise ValueError(f"{what}[{i}] has {len(ids)} tokens, more than the model's {max_pos} positions")
        out.append(ids.long())
    return out


def _padded(seqs: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) and the mask (B, T) of real tokens. The model is causal, so a
    position never reads the padding after it."""
    ids = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    lengths = torch.tensor([len(s) for s in seqs])
    return ids.to(device), (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).to(device)


def _kl_sums(lm: LanguageModel, rows: tuple[tuple[str, ...], tuple[str, ...]], translate,
             ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row (layer), the sum over real positions of KL(final || lens), shape (R,), float32;
    differentiable in what ``translate(layer, h)`` learns (the model runs without gradients)."""
    logits, cache = lm.run_with_cache(ids, rows[1])
    final = torch.log_softmax(logits.float(), dim=-1)
    sums = []
    for layer, name in zip(*rows, strict=True):
        lens = torch.log_softmax(decode_logits(lm, translate(layer, cache.pop(name))), dim=-1)
        kl = torch.nn.functional.kl_div(lens, final, log_target=True, reduction="none").sum(-1)
        sums.append((kl * mask).sum())
    return torch.stack(sums)


@contextlib.contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    """No gradient reaches the model's parameters within the block (their flags restored after)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class TunedLens:
    """Affine translators ``A_l h + b_l``, one per layer but the last, fitted to one model.

    Build one with :meth:`fit` (or :meth:`load`); the constructor takes fitted values.

    Parameters
    ----------
    weight : torch.Tensor of float32, shape (L, d_model, d_model)
        ``A_l`` of rows ``"embed"``, ``"0"``, ..., ``str(n_layers - 2)`` (the residual stream
        entering block 0, then leaving block l).
    bias : torch.Tensor of float32, shape (L, d_model)
        ``b_l``.
    config : dict
        JSON-ready: the model identity (:data:`IDENTITY`) and how the lens was fitted (``fit``);
        ``format`` is set to :data:`FORMAT`.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, config: dict):
        missing = [k for k in IDENTITY if k not in config]
        if missing:
            raise ValueError(f"config must record the model's {', '.join(missing)}")
        n, d = int(config["n_layers"]), int(config["d_model"])
        for name, value, shape in (("weight", weight, (n, d, d)), ("bias", bias, (n, d))):
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"{name} must be a tensor of shape {shape} (n_layers, d_model"
                                 f"{', d_model' * (name == 'weight')}); got {got}")
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} holds NaN or inf")
        self.weight, self.bias = weight.float(), bias.float()
        self.config = {**config, "format": FORMAT}

    @property
    def layers(self) -> tuple[str, ...]:
        """Every lens row's label (``"embed"``, ``"0"``, ... ``str(n_layers - 1)``); the last
        row's translator is the identity."""
        return ("embed", *map(str, range(self.config["n_layers"])))

    def __repr__(self) -> str:
        fit = self.config.get("fit", {})
        how = f", fitted on {fit['n_texts']} texts for {fit['n_steps']} steps" if fit else ""
        return (f"TunedLens({self.config['model_type']}, layers={self.config['n_layers']}, "
                f"d_model={self.config['d_model']}{how})")

    # -- translating -----------------------------------------------------------------------
    def translate(self, layer: str, h: torch.Tensor) -> torch.Tensor:
        """``A_l h + b_l`` for row ``layer`` (a label of :attr:`layers`), in ``h``'s dtype.

        Parameters
        ----------
        layer : str
        h : torch.Tensor, shape (..., d_model)

        Returns
        -------
        torch.Tensor, shape (..., d_model)
            ``h`` itself for the last layer.
        """
        layers = self.layers
        if layer not in layers:
            raise ValueError(f"layer must be one of {', '.join(layers)}; got {layer!r}")
        i = layers.index(layer)
        if i == len(layers) - 1:
            return h
        w, b = self.weight[i].to(h.device), self.bias[i].to(h.device)
        return (h.float() @ w.T + b).to(h.dtype)

    def check_model(self, lm: LanguageModel) -> None:
        """Raise a ``ValueError`` unless ``lm`` is a model of the kind this lens was fitted on."""
        got, want = model_identity(lm), {k: self.config[k] for k in IDENTITY}
        if got != want:
            diff = ", ".join(f"{k}={want[k]!r} (the model has {got[k]!r})"
                             for k in IDENTITY if got[k] != want[k])
            raise ValueError(f"this tuned lens was fitted on another model: {diff}")

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, lm: LanguageModel, texts, *, n_steps: int = 250, lr: float = 1e-3, batch_size: int = 8,
            random_state: int = 0) -> TunedLens:
        """Train the translators on ``texts`` with the model frozen.

        Each step draws ``batch_size`` texts (every text once per pass, in an order drawn from
        ``random_state``), runs the model once, and takes an Adam step on the sum over layers
        of the mean, over every real position, of ``KL(final || translated layer)``.

        Parameters
        ----------
        lm : LanguageModel
        texts : sequence of str or of 1-D token id tensors, or an (N, T) id array
            Training text (see :func:`as_token_ids`); use text unlike what you evaluate on.
        n_steps, batch_size : int
            Adam steps and texts per step.
        lr : float
            Adam's learning rate (constant).
        random_state : int
            Seeds the order of the texts; the same seed gives the same translators.

        Returns
        -------
        TunedLens
            Its tensors on ``lm.device``; ``config["fit"]`` records the settings, the text and
            ``train_kl``, the last step's mean KL per translated layer.
        """
        lm = check_language_model(lm, "TunedLens.fit")
        check_positive_int(n_steps=n_steps, batch_size=batch_size)
        check_positive_number(lr=lr)
        check_random_state(random_state)
        if random_state is None:
            raise ValueError("random_state must be an int: the order of the texts is drawn from it")
        seqs = as_token_ids(lm, texts)
        layers, hooks = layer_hooks(lm, "resid_post", True)
        rows = (layers[:-1], hooks[:-1])  # the last layer keeps the identity
        n, d = len(rows[0]), lm.d_model
        weight = torch.eye(d, device=lm.device).repeat(n, 1, 1).requires_grad_()
        bias = torch.zeros(n, d, device=lm.device, requires_grad=True)
        lens = cls(weight, bias, model_identity(lm))
        lens.weight, lens.bias = weight, bias  # the leaves Adam updates
        gen = torch.Generator().manual_seed(random_state)
        order = torch.empty(0, dtype=torch.long)
        opt = torch.optim.Adam([weight, bias], lr=lr)
        with _frozen(lm.model):
            for _ in progress(range(n_steps), "tuned lens"):
                if len(order) < batch_size:  # every text once per pass
                    order = torch.cat([order, torch.randperm(len(seqs), generator=gen)])
                pick, order = order[:batch_size], order[batch_size:]
                ids, mask = _padded([seqs[i] for i in pick], lm.device)
                kl = _kl_sums(lm, rows, lens.translate, ids, mask) / mask.sum()
                opt.zero_grad()
                kl.sum().backward()
                opt.step()
        lens.weight, lens.bias = weight.detach(), bias.detach()
        lens.config["fit"] = {"n_steps": n_steps, "lr": float(lr), "batch_size": batch_size,
                              "random_state": random_state, "n_texts": len(seqs),
                              "n_tokens": int(sum(len(s) for s in seqs)),
                              "train_kl": [float(v) for v in kl.detach().cpu()]}
        return lens

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the lens to ``path`` atomically (a crash leaves the old file or none): one
        torch file holding ``weight``, ``bias`` and the JSON ``config`` (no pickled code).

        Returns
        -------
        pathlib.Path
        """
        state = {"config": json.dumps(self.config), "weight": self.weight.detach().cpu(),
                 "bias": self.bias.detach().cpu()}
        return atomic_write(Path(path), lambda fh: torch.save(state, fh))

    @classmethod
    def load(cls, path: str | os.PathLike, lm: LanguageModel) -> TunedLens:
        """Read a lens written by :meth:`save`, for model ``lm`` (on its device).

        Raises
        ------
        ValueError
            If the file is not a saved tuned lens, or was fitted on a model of other layers,
            width, vocabulary or architecture than ``lm``.
        """
        lm = check_language_model(lm, "TunedLens.load")
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            config = json.loads(state["config"])
            if config.get("format") != FORMAT:
                raise ValueError(f"its format is {config.get('format')!r}, not {FORMAT!r}")
            lens = cls(state["weight"], state["bias"], config)
        except FileNotFoundError:
            raise
        except Exception as exc:  # a malformed file, whatever broke: say so in one type
            raise ValueError(f"{path} is not a saved tuned lens: {type(exc).__name__}: {exc}") from None
        lens.check_model(lm)
        lens.weight, lens.bias = lens.weight.to(lm.device), lens.bias.to(lm.device)
        return lens


def kl_to_final(lm: LanguageModel, texts, lens: TunedLens | None = None, *, batch_size: int = 8) -> pd.Series:
    """Each layer's mean KL divergence from the model's output to the lens, over every position.

    Parameters
    ----------
    lm : LanguageModel
    texts : sequence of str or of 1-D token id tensors, or an (N, T) id array
        Evaluation text (held out from the tuned lens's training text).
    lens : TunedLens, optional
        ``None`` measures the logit lens.
    batch_size : int
        Texts per model call (the result does not depend on it beyond float noise).

    Returns
    -------
    pandas.Series of float64, indexed by layer (``"embed"``, ``"0"``, ...)
        ``mean over positions of KL(final || lens)`` in nats; 0 at the last layer. Named
        ``"logit lens"`` or ``"tuned lens"``.
    """
    lm = check_language_model(lm, "kl_to_final")
    check_positive_int(batch_size=batch_size)
    if lens is not None:
        if not isinstance(lens, TunedLens):
            raise TypeError(f"lens must be a TunedLens or None (the logit lens); got {type(lens).__name__}")
        lens.check_model(lm)
    seqs = as_token_ids(lm, texts)
    rows = layer_hooks(lm, "resid_post", True)
    translate = (lambda layer, h: h) if lens is None else lens.translate
    total, count = torch.zeros(len(rows[0]), dtype=torch.float64), 0
    with torch.no_grad():
        for part in chunks(len(seqs), batch_size, desc="kl_to_final"):
            ids, mask = _padded(seqs[part], lm.device)
            total += _kl_sums(lm, rows, translate, ids, mask).double().cpu()
            count += int(mask.sum())
    return pd.Series((total / count).numpy(), index=pd.Index(rows[0], name="layer"),
                     name="logit lens" if lens is None else "tuned lens")


@register_explainer(
    "tuned_lens", library="native", family="mechanistic", modalities=("text",),
    model_kinds=("hf_causal_lm",), requires=("transformers",),
    summary="Tuned lens: each layer's residual stream decoded after a learned affine translator; "
    "target probability, rank and entropy",
    reference="Belrose et al. (2023), Eliciting Latent Predictions from Transformers with the Tuned Lens",
    notes="Not an attribution: explain(prompt, target) returns a LogitLensResult with lens='tuned'; "
    "takes a fitted TunedLens (TunedLens.fit(lm, texts)) or the path of a saved one; deterministic.",
)
class TunedLensExplainer(_Lens):
    """Decode every layer's residual stream, at every position, through a fitted tuned lens.

    Parameters
    ----------
    model : xai_suite_llm.LanguageModel
    top_k : int
        Most probable tokens kept per layer and position.
    include_embeddings : bool
        Add the embedding stream (``blocks.0.hook_resid_pre``) as layer ``"embed"``.
    lens : TunedLens or path
        A lens fitted on this model (:meth:`TunedLens.fit`), or the file of a saved one
        (:meth:`TunedLens.save`); required.
    """

    lens: TunedLens | str | os.PathLike | None = None

    kind = "tuned"

    def _tuned(self, lm: LanguageModel) -> TunedLens:
        """The ``lens`` parameter as a TunedLens checked against ``lm`` (cached while unchanged)."""
        spec = self.lens
        cached = getattr(self, "_tuned_cache", None)
        if cached is not None and cached[0] is spec:
            return cached[1]
        if isinstance(spec, TunedLens):
            spec.check_model(lm)
            lens = spec
        elif isinstance(spec, str | os.PathLike):
            lens = TunedLens.load(spec, lm)
        else:
            raise TypeError(f"{self.info.qualified_name} needs lens=, a fitted TunedLens "
                            f"(TunedLens.fit(lm, texts)) or the path of a saved one; got {spec!r}")
        self._tuned_cache = (spec, lens)
        return lens

    def _check(self) -> LanguageModel:
        lm = super()._check()
        self._tuned(lm)
        return lm

    def _logits(self, lm: LanguageModel, layer: str, h: torch.Tensor) -> torch.Tensor:
        return decode_logits(lm, self._tuned(lm).translate(layer, h))

    def _settings(self) -> dict:
        path = None if isinstance(self.lens, TunedLens) else str(self.lens)
        return {"lens": {"path": path, **self._tuned(self.model).config}}
