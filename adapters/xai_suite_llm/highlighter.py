"""Token Highlighter: which prompt tokens push a model towards an affirmative (jailbroken) answer.

Hu, Chen & Ho (2024), "Token Highlighter: Inspecting and Mitigating Jailbreak Prompts for
Large Language Models" (AAAI 2025; in IBM ICX360), score a prompt's tokens by how strongly
they drive the model to *affirm* it:

- the affirmation loss is ``-log p(affirmation | prompt)``, the affirmation a compliant
  opening such as ``" Sure, here is"`` (scored by teacher forcing);
- a token's score (its *influence*) is the L2 norm of the loss's gradient with respect to its
  embedding; a unit's is the norm of its tokens' gradients together (``sqrt`` of the sum of
  their squared norms);
- the ``fraction`` of units with the largest scores are *highlighted* (at least one);
- *soft removal*, the mitigation: the highlighted tokens' embeddings are multiplied by
  ``beta`` and the model runs on those embeddings; the affirmation's probability before and
  after shows how much of the affirming pressure the highlighted tokens carried.

``native:token_highlighter`` returns a :class:`~xai_suite_llm.TextExplanation` whose
attributions are the scores (non-negative: a gradient norm has no sign), ``score`` the
affirmation's log-probability, and ``params`` the affirmation, ``fraction``, ``beta``, the
highlighted units and the affirmation's log-probability and probability before and after soft
removal, with the greedy continuations (as long as the affirmation) before and after.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch

from xai_suite.plugin import Explainer, check_positive_number, register_explainer

from .attribution import TextExplanation, TextGradientXActivation, _Prepared
from .models import check_language_model
from .segments import check_level, segment

#: The default affirmation (the kind of compliant opening the paper's loss targets).
AFFIRMATION = " Sure, here is"


@register_explainer(
    "token_highlighter", library="native", family="gradient", modalities=("text",),
    model_kinds=("hf_causal_lm",), requires=("transformers",),
    summary="Token Highlighter: gradient norm of the affirmation loss per prompt token, the top "
    "fraction highlighted, and soft removal (their embeddings scaled by beta)",
    reference="Hu, Chen & Ho (2024), Token Highlighter: Inspecting and Mitigating Jailbreak Prompts "
    "for Large Language Models",
    notes="explain(prompt, target=affirmation); attributions are unsigned gradient norms.",
)
class TokenHighlighter(Explainer):
    """Affirmation-loss gradient norms of the prompt's units, and the effect of soft removal.

    Parameters
    ----------
    model : LanguageModel
    level : {"token", "word", "sentence"}
        Units scored and highlighted (default ``"token"``, as the paper).
    fraction : float
        Share of the units highlighted, in (0, 1] (at least one unit); 0.25 by default.
    beta : float
        Soft removal's scale of the highlighted tokens' embeddings, in [0, 1) (0.5).
    """

    family = "gradient"

    level: str = "token"
    fraction: float = 0.25
    beta: float = 0.5

    @property
    def requires_fit(self) -> bool:
        return False

    def fit(self, X, y=None):
        """Not used (raises ``TypeError``): the scores learn nothing from data."""
        raise TypeError(f"{self.info.qualified_name} learns nothing from data: call explain(prompt)")

    def explain(self, prompt: str, target=None) -> TextExplanation:
        """Score the units of ``prompt`` by the affirmation loss's gradient norm.

        Parameters
        ----------
        prompt : str
        target : str or sequence of int, optional
            The affirmation (text as it follows the prompt, or token ids); default
            :data:`AFFIRMATION`.

        Returns
        -------
        TextExplanation
            ``attributions`` (U,) the scores; ``params["highlighted"]`` the highlighted units'
            indices (largest score first); ``params["affirmation_prob"]`` and
            ``params["affirmation_prob_removed"]`` the affirmation's probability before and
            after soft removal (``..._logprob`` likewise).
        """
        return self._explain(prompt, AFFIRMATION if target is None else target)

    @contextlib.contextmanager
    def _begin(self, prompt, target) -> Iterator[tuple]:
        lm = check_language_model(self.model, self.info.qualified_name)
        check_level(self.level)
        check_positive_number(fraction=self.fraction)
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must lie in (0, 1]; got {self.fraction!r}")
        if isinstance(self.beta, bool) or not isinstance(self.beta, int | float) or not 0 <= self.beta < 1:
            raise ValueError(f"beta must be a number in [0, 1) (1 would remove nothing); got {self.beta!r}")
        helper = TextGradientXActivation(lm, scalariser="logprob")
        prep = helper._prepare(prompt, target, None)
        yield helper, prep, segment(prep.enc, self.level)

    def _compute(self, call: tuple) -> tuple:
        helper, prep, units = call
        e, cont = helper._embeddings(prep)
        z = e.unsqueeze(0).clone().requires_grad_(True)
        logp = helper._scores(prep, z, cont)  # (1,): log p(affirmation | prompt)
        (grad,) = torch.autograd.grad(-logp.sum(), z)
        sq = grad[0].double().pow(2).sum(-1).cpu().numpy()  # (T,) squared gradient norms
        scores = np.sqrt([sq[list(u.tokens)].sum() for u in units])
        k = max(1, math.ceil(self.fraction * len(units)))
        top = [int(i) for i in np.argsort(-scores, kind="stable")[:k]]
        tokens = [t for i in top for t in units[i].tokens]
        removed = e.clone()
        removed[tokens] = removed[tokens] * self.beta
        with torch.no_grad():
            after = float(helper._scores(prep, removed.unsqueeze(0), cont)[0])
        return scores, float(logp.detach()[0]), after, top, self._greedy(prep, e), self._greedy(prep, removed)

    @staticmethod
    def _greedy(prep: _Prepared, prompt_emb: torch.Tensor) -> str:
        """The greedy continuation (as long as the affirmation) from prompt embeddings (T, d)."""
        lm, seq = prep.lm, prompt_emb.unsqueeze(0)
        new = []
        with torch.no_grad():
            for _ in range(len(prep.target_ids)):
                nxt = lm.logits(None, inputs_embeds=seq)[0, -1].argmax()
                new.append(int(nxt))
                seq = torch.cat([seq, lm.embed(nxt.view(1, 1))], dim=1)
        return lm.decode(new)

    def _finish(self, call: tuple, raw: tuple) -> TextExplanation:
        _, prep, units = call
        scores, before, after, top, greedy, greedy_removed = raw
        params = self._recorded_params(1, {
            "scalariser": "logprob", "affirmation": prep.target, "highlighted": top,
            "highlighted_units": [units[i].text for i in top],
            "affirmation_logprob": before, "affirmation_logprob_removed": after,
            "affirmation_prob": math.exp(before), "affirmation_prob_removed": math.exp(after),
            "response": greedy, "response_removed": greedy_removed,
            "n_units": len(units), "unit_levels": [u.level for u in units]})
        return TextExplanation(
            prompt=prep.enc.text, target=prep.target, contrast=None,
            target_ids=prep.target_ids.cpu().numpy().astype(np.int64), units=[u.text for u in units],
            spans=[(u.start, u.end) for u in units], unit_tokens=[u.tokens for u in units],
            level=self.level, attributions=np.asarray(scores, dtype=np.float64), score=before,
            params=params, method=self.info.qualified_name)
