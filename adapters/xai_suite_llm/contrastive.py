"""CELL-style contrastive prompt edits: the smallest edits of a prompt that change the response.

Luss, Miehling & Dhurandhar (2024), "CELL your Model: Contrastive Explanations for Large
Language Models" (IBM ICX360), explain a response by a *contrast*: a slightly edited prompt
on which the model would have answered otherwise. ``native:cell`` searches for one, by model
queries only (no gradients):

- the prompt's units (tokens, words or sentences) are the places to edit; an edit replaces a
  unit by one candidate token: the model's own top predictions for that place from its left
  context (``replacements="lm"``, a causal LM standing in for CELL's infilling model; the first
  unit, which has no left context, is masked), the baseline token (``"mask"``), or tokens the
  user lists;
- the objective of an edited prompt is how much less the model prefers the response:
  ``-log p(response | edited)``, or with a ``contrast`` continuation
  ``log p(contrast | edited) - log p(response | edited)``;
- a beam search (CELL's budgeted search in small): every round extends each of the
  ``beam_width`` best prompts by one more edit (each unit edited at most once), scores all
  the extensions in batched model calls and keeps the best; when the extensions outnumber
  the query budget left, a ``random_state``-seeded sample of them is scored. It stops at the
  first round where a contrast is found: the greedy response changes (or the contrast becomes
  more likely than the response), so the contrasts reported have the fewest edits found;
  after ``max_edits`` rounds; or when ``budget`` model rows are spent.

The result (:class:`PromptEdits`) lists the best edited prompts, their edits (unit, old,
new), the greedy response to each, the objective's change and whether each is a contrast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from xai_suite.plugin import (
    BaselineSpec,
    Explainer,
    Result,
    Seeded,
    check_positive_int,
    check_random_state,
    register_explainer,
    render_text_html,
)

from .attribution import TextAblation, _Prepared, prompt_values
from .models import check_language_model
from .segments import Unit, check_level, segment

#: ``replacements`` names: the model's top predictions, or the baseline token.
REPLACEMENTS = ("lm", "mask")


@dataclass
class PromptEdits(Result):
    """Edited prompts that change a model's response the most (CELL-style contrasts).

    Attributes
    ----------
    prompt : str
    response : str
        The response explained (the target, or the greedy continuation).
    contrast : str or None
        The contrast continuation, when one was given.
    units : list of str, length U
        The prompt's units (the places edited).
    spans : list of (int, int), length U
        Each unit's character span in ``prompt``.
    edited_prompts : list of str, length K
        The last round's beam (every one with the same number of edits), contrasts first,
        then by objective: the prompt's text with each edited unit's text replaced by its new
        token's (the model scored the edited token ids, which a BPE tokenizer need not
        give back from this text).
    edits : list of list of dict, length K
        Each prompt's edits, ``{"unit": index, "old": text, "new": text}``, in unit order.
    responses : list of str, length K
        The greedy continuation of each edited prompt (as long as ``response``).
    objectives : numpy.ndarray of float64, shape (K,)
        Each edited prompt's objective (see :mod:`xai_suite_llm.contrastive`).
    objective : float
        The unedited prompt's objective; ``objectives - objective`` is each edit's effect.
    found : list of bool, length K
        Whether each edited prompt is a contrast (its response changed, or the contrast is
        more likely than the response).
    method : str
    params : dict
        Hyper-parameters and ``queries`` (model rows used), ``rounds``.
    """

    format = "xai-suite-prompt-edits/1"
    prompt: str
    response: str
    contrast: str | None
    units: list[str]
    spans: list[tuple[int, int]]
    edited_prompts: list[str]
    edits: list[list[dict]]
    responses: list[str]
    objectives: np.ndarray
    objective: float
    found: list[bool]
    method: str = "native:cell"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.spans = [(int(a), int(b)) for a, b in self.spans]
        self.found = [bool(f) for f in self.found]
        k = len(self.edited_prompts)
        if len(self.spans) != len(self.units):
            raise ValueError(f"spans ({len(self.spans)}) must have one entry per unit ({len(self.units)})")
        if not (len(self.edits) == len(self.responses) == len(self.found) == k
                and self.objectives.shape == (k,)):
            raise ValueError(f"edits ({len(self.edits)}), responses ({len(self.responses)}), found "
                             f"({len(self.found)}) and objectives {self.objectives.shape} must have one "
                             f"entry per edited prompt ({k})")

    @property
    def changes(self) -> np.ndarray:
        """``objectives - objective`` (K,): how much each edit moved the model off its response."""
        return self.objectives - self.objective

    def to_frame(self) -> pd.DataFrame:
        """One row per edited prompt: rank, edits, edited_prompt, response, change, found."""
        return pd.DataFrame({
            "rank": np.arange(1, len(self.edited_prompts) + 1),
            "edits": ["; ".join(f"{e['unit']}: {e['old']!r} -> {e['new']!r}" for e in es)
                      for es in self.edits],
            "edited_prompt": self.edited_prompts,
            "response": self.responses,
            "change": self.changes,
            "found": self.found,
        })

    def _html(self, page) -> None:
        vs = "" if self.contrast is None else f" (contrast: {self.contrast!r})"
        n_found = sum(self.found)
        page.paragraph(f"Response {self.response!r}{vs}; {n_found} of {len(self.found)} edited prompts "
                       f"shown are contrasts; {self.params.get('queries')} model rows used.")
        if self.edits:
            edited = {e["unit"]: self.changes[0] for e in self.edits[0]}
            values = np.array([edited.get(i, 0.0) for i in range(len(self.units))])
            page.markup(render_text_html(self.prompt, self.spans, values,
                                         title="the prompt, the best edit's units shaded by its change"))
        page.table(self.to_frame(), caption="edited prompts, best first (click to sort)")


@dataclass
class _Search:
    """One call's fixed state: the prepared prompt and continuations, units and candidates."""

    prep: _Prepared
    helper: TextAblation
    units: list[Unit]
    candidates: list[list[int]]  # per unit, replacement token ids


@register_explainer(
    "cell", library="native", family="counterfactual", modalities=("text",), model_kinds=("hf_causal_lm",),
    requires=("transformers",), needs_baseline=True, stochastic=True, batch_invariant=True,
    summary="CELL-style contrastive prompt edits: a budgeted beam search for the fewest unit edits "
    "that change the response",
    reference="Luss, Miehling & Dhurandhar (2024), CELL your Model: Contrastive Explanations for "
    "Large Language Models (IBM ICX360)",
    notes="Not an attribution: explain(prompt, target=None, contrast=None) returns PromptEdits; "
    "random only when the extensions of a round outnumber the budget left.",
)
class CellEdits(Explainer, Seeded):
    """Search edits of the prompt's units that move the model off its response (see the module doc).

    Parameters
    ----------
    model : LanguageModel
    level : {"token", "word", "sentence"}
        The units edited (default ``"word"``, as CELL).
    replacements : "lm", "mask" or sequence of str
        What a unit may become: the model's ``n_candidates`` most likely tokens at the unit's
        first position given the text before it (``"lm"``), the baseline token (``"mask"``),
        or any of the listed tokens (each one token of the vocabulary).
    n_candidates : int
        Candidates per unit for ``replacements="lm"``.
    max_edits : int
        Rounds of the search: the most units edited in one prompt.
    beam_width : int
        Prompts kept and extended each round; also how many are reported.
    budget : int
        Model rows the search may use: the unedited prompt's, every scored edit's and the
        greedy checks of each round's beam (``beam_width`` x the response's length).
    max_new_tokens : int
        Length of the greedy continuation explained when ``target`` is ``None``.
    baseline : str, dict or TextBaseline
        The mask token (``"mask"``, and the first unit under ``"lm"``); default ``"pad_token"``.
    batch_size : "auto" or int
        Rows per model call.
    """

    family = "counterfactual"

    level: str = "word"
    replacements: str | Sequence[str] = "lm"
    n_candidates: int = 3
    max_edits: int = 2
    beam_width: int = 3
    budget: int = 200
    max_new_tokens: int = 1
    baseline: BaselineSpec = "pad_token"
    batch_size: int | str = "auto"

    @property
    def requires_fit(self) -> bool:
        return False

    def fit(self, X, y=None):
        """Not used (raises ``TypeError``): the search learns nothing from data."""
        raise TypeError(f"{self.info.qualified_name} learns nothing from data: call explain(prompt)")

    def explain(self, prompt: str, target=None, *, contrast=None) -> PromptEdits:
        """Search contrastive edits of ``prompt``.

        Parameters
        ----------
        prompt : str
        target : str, sequence of int or None
            The response (``None``: the greedy continuation of ``max_new_tokens`` tokens).
        contrast : str or sequence of int, optional
            A continuation to make more likely than the response.

        Returns
        -------
        PromptEdits
        """
        return self._explain(prompt, target, contrast=contrast)

    @contextlib.contextmanager
    def _begin(self, prompt, target, *, contrast) -> Iterator[_Search]:
        lm = check_language_model(self.model, self.info.qualified_name)
        check_level(self.level)
        check_positive_int(n_candidates=self.n_candidates, max_edits=self.max_edits,
                           beam_width=self.beam_width, budget=self.budget)
        check_random_state(self.random_state)
        helper = TextAblation(lm, scalariser="logprob" if contrast is None else "contrastive",
                              max_new_tokens=self.max_new_tokens, baseline=self.baseline,
                              batch_size=self.batch_size)
        prep = helper._prepare(prompt, target, contrast)
        units = segment(prep.enc, self.level)
        yield _Search(prep, helper, units, self._candidates(prep, units))

    def _candidates(self, prep: _Prepared, units: list[Unit]) -> list[list[int]]:
        """Replacement token ids per unit (never the unit itself)."""
        lm, mask = prep.lm, int(prep.baseline_id)
        if isinstance(self.replacements, str):
            if self.replacements not in REPLACEMENTS:
                raise ValueError(f"replacements must be 'lm', 'mask' or a sequence of tokens; got "
                                 f"{self.replacements!r}")
            pool = None
        else:
            pool = []
            for text in self.replacements:
                ids = lm.token_ids(text) if isinstance(text, str) else None
                if ids is None or len(ids) != 1:
                    raise ValueError(f"each replacement must be a string of one token; got {text!r}")
                pool.append(int(ids[0]))
            if not pool:
                raise ValueError("replacements must list at least one token")
        if self.replacements == "lm":
            with torch.no_grad():
                logits = lm.logits(prep.ids.unsqueeze(0))[0]  # (T, V): position t - 1 predicts token t
            order = logits.argsort(dim=-1, descending=True)[:, : self.n_candidates + 1].tolist()
        out = []
        for u in units:
            own = [int(prep.ids[t]) for t in u.tokens]
            if pool is not None:
                cands = pool
            elif self.replacements == "mask" or u.tokens[0] == 0:
                cands = [mask]
            else:
                cands = order[u.tokens[0] - 1]
            cands = [c for c in dict.fromkeys(cands) if [c] != own]
            out.append(cands if pool is not None else cands[: self.n_candidates])
        return out

    def _ids(self, search: _Search, state: tuple) -> torch.Tensor:
        """The prompt's ids with ``state``'s edits ``((unit, token id), ...)`` applied."""
        edits = dict(state)
        parts = [torch.tensor([edits[i]]) if i in edits else search.prep.enc.ids[list(u.tokens)]
                 for i, u in enumerate(search.units)]
        return torch.cat(parts)

    def _text(self, search: _Search, state: tuple) -> str:
        """The prompt's text with ``state``'s edited units replaced by their tokens' text."""
        text, lm = search.prep.enc.text, search.prep.lm
        for u, c in sorted(state, reverse=True):  # from the end: earlier spans stay valid
            unit = search.units[u]
            text = text[: unit.start] + lm.decode([c]).strip() + text[unit.end:]
        return text

    def _objectives(self, search: _Search, prompts: list[torch.Tensor]) -> np.ndarray:
        """Objective (P,) of prompts of any lengths, batched by length."""
        prep = search.prep
        dev = prep.ids.device
        out = np.empty(len(prompts))
        by_length: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            by_length.setdefault(len(p), []).append(i)
        for idx in by_length.values():
            ids = torch.stack([prompts[i] for i in idx]).to(dev)
            # the response's log-prob, or minus the contrast's lead
            out[idx] = -prompt_values(search.helper, prep, ids, "CELL edits")[:, 0]
        return out

    def _response(self, search: _Search, ids: torch.Tensor) -> torch.Tensor:
        return search.prep.lm.generate(ids, len(search.prep.target_ids))

    def _compute(self, search: _Search) -> tuple:
        prep = search.prep
        contrast = prep.contrast is not None
        rng = np.random.default_rng(self.random_state)
        n_cont, n_resp = prep.conts.shape[0], len(prep.target_ids)
        scores = {(): float(self._objectives(search, [prep.ids.cpu()])[0])}
        queries, rounds = n_cont, 0
        responses: dict[tuple, torch.Tensor] = {}
        check_rows = 0 if contrast else self.beam_width * n_resp  # greedy checks of a round's beam
        beam = [()]
        for _ in range(self.max_edits):
            children = sorted({tuple(sorted((*s, (u, c)))) for s in beam
                               for u, cands in enumerate(search.candidates) if u not in dict(s)
                               for c in cands} - scores.keys())
            left = (self.budget - queries - check_rows) // n_cont
            if not children or left <= 0:
                break
            if len(children) > left:  # the budget decides: score a seeded sample
                children = [children[i] for i in np.sort(rng.choice(len(children), left, replace=False))]
            values = self._objectives(search, [self._ids(search, s) for s in children])
            queries += len(children) * n_cont
            rounds += 1
            scores.update(zip(children, values.tolist(), strict=True))
            beam = sorted(children, key=lambda s: -scores[s])[: self.beam_width]
            for s in beam:
                responses[s] = self._response(search, self._ids(search, s))
            queries += len(beam) * n_resp if not contrast else 0
            found = [scores[s] > 0 if contrast else not torch.equal(responses[s], prep.target_ids.cpu())
                     for s in beam]
            if any(found):
                break
        if rounds == 0:
            raise ValueError(f"budget={self.budget} model rows leave none for a single edit (the prompt "
                             f"takes {n_cont}, the greedy checks {check_rows}): raise the budget")
        order = sorted(range(len(beam)), key=lambda i: (not found[i], -scores[beam[i]]))
        beam = [beam[i] for i in order]
        return scores, beam, responses, [found[i] for i in order], queries, rounds

    def _finish(self, search: _Search, raw: tuple) -> PromptEdits:
        scores, best, responses, found, queries, rounds = raw
        prep, lm = search.prep, search.prep.lm
        edits = [[{"unit": int(u), "old": search.units[u].text, "new": lm.decode([c])} for u, c in s]
                 for s in best]
        params = self._recorded_params(prep.rows, {
            "replacements": (self.replacements if isinstance(self.replacements, str)
                             else list(self.replacements)),
            "baseline_token_id": prep.baseline_id, "queries": int(queries), "rounds": rounds,
            "n_units": len(search.units),
            "candidates": [[lm.decode([c]) for c in cs] for cs in search.candidates]})
        return PromptEdits(
            prompt=prep.enc.text, response=prep.target, contrast=prep.contrast,
            units=[u.text for u in search.units], spans=[(u.start, u.end) for u in search.units],
            edited_prompts=[self._text(search, s) for s in best], edits=edits,
            responses=[lm.decode(responses[s]) for s in best],
            objectives=np.array([scores[s] for s in best], dtype=np.float64), objective=scores[()],
            found=found, method=self.info.qualified_name, params=params)
