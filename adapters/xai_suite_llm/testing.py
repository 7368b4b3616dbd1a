"""Conformance problems of the text entries, for :func:`xai_suite.testing.check_explainer`.

Every ``text`` entry is checked on an untrained tiny GPT-2 built from a config (seeded, no
download) and the key task's word-level tokenizer: attribution entries on one prompt and a
fixed continuation, the mechanistic ones on what each of them takes (a prompt, with a tuned
lens fitted on other key prompts for ``native:tuned_lens``; a clean and a corrupted prompt;
prompts with labels).
"""

from __future__ import annotations

import functools

import numpy as np

from xai_suite.plugin import Problem, create_explainer, register_problem

from .lens import LogitLens
from .models import LanguageModel
from .tiny import make_key_prompts, make_tiny_gpt2, make_tiny_tokenizer
from .tuned_lens import TunedLens

PROMPT, OTHER_PROMPT = make_key_prompts(2, random_state=0)[0]
TARGET = " b"


@functools.cache
def reference_language_model() -> LanguageModel:
    """An untrained 2-layer GPT-2 (seed 0) with the key task's tokenizer, on the CPU."""
    tok = make_tiny_tokenizer()
    return LanguageModel(make_tiny_gpt2(len(tok), random_state=0), tok, device="cpu")


class TextProblem(Problem):
    """Attribution of a continuation to a prompt's units: ``exp.attributions`` (U,)."""

    def __init__(self):
        self.model, self.inputs = reference_language_model(), PROMPT

    def explain(self, explainer, **kwargs):
        return explainer.explain(self.inputs, **{"target": TARGET, **kwargs})

    def same_target(self, result):
        return {"target": result.target}

    def check_result(self, ctx, result):
        a = result.attributions
        assert a.shape == (len(result.units),) and a.dtype == np.float64 and np.isfinite(a).all(), (
            "attributions must be finite float64, one per unit")
        assert [result.prompt[s:e] for s, e in result.spans] == result.units, "spans do not cut the units"
        assert result.prompt == PROMPT and result.target == TARGET and np.isfinite(result.score)

    def check_completeness(self, ctx, result):
        gap = result.score - result.params["baseline_score"]
        expected = float(result.attributions.sum()) - gap
        assert result.convergence_delta is not None, "convergence_delta must be reported"
        assert abs(result.convergence_delta - expected) <= 1e-6 * (abs(gap) + 1), (
            "convergence_delta is misreported")
        bound = (ctx.completeness_rtol if ctx.info.tags.family == "gradient" else 1e-6) * (abs(gap) + 1e-3)
        assert abs(result.convergence_delta) <= bound, (
            f"completeness error {result.convergence_delta:.3g} exceeds {bound:.3g}")

    def bad_calls(self, ctx):
        e, lm = ctx.make(), self.model
        long = " ".join([PROMPT] * 4)  # past the model's 32 positions
        return [
            ("an empty prompt", ValueError, lambda: e.explain("", target=TARGET)),
            ("a prompt that is not a string", ValueError, lambda: e.explain(3, target=TARGET)),
            ("an empty continuation", ValueError, lambda: e.explain(PROMPT, target="")),
            ("a continuation of float ids", ValueError, lambda: e.explain(PROMPT, target=[0.5])),
            ("token ids out of the vocabulary", ValueError,
             lambda: e.explain(PROMPT, target=[lm.vocab_size])),
            ("a contrast without the contrastive scalariser", ValueError,
             lambda: e.explain(PROMPT, target=TARGET, contrast=" c")),
            ("a prompt longer than the model's positions", ValueError,
             lambda: e.explain(long, target=TARGET)),
            ("a prompt longer than the model's positions, continued greedily", ValueError,
             lambda: e.explain(long)),
            ("fit", TypeError, lambda: e.fit(np.zeros((2, 3)))),
        ]


@functools.cache
def reference_tuned_lens() -> TunedLens:
    """A tuned lens of :func:`reference_language_model`, fitted on 16 key prompts (seed 2)."""
    prompts, _ = make_key_prompts(16, random_state=2)
    return TunedLens.fit(reference_language_model(), prompts, n_steps=30, batch_size=8, random_state=0)


class LensProblem(Problem):
    """The logit lens of one prompt: ``target_probs`` (layers, positions)."""

    def __init__(self):
        self.model, self.inputs = reference_language_model(), PROMPT

    def values(self, result):
        return np.stack([result.target_probs, result.entropy, result.target_ranks])

    def check_result(self, ctx, result):
        n_layers = self.model.n_layers + bool(ctx.make().include_embeddings)
        assert result.target_probs.shape == (n_layers, len(result.tokens)), "one row per layer"
        p = result.top_probs
        assert ((p >= 0) & (p <= 1)).all() and (np.diff(p, axis=-1) <= 0).all(), (
            "top_probs must be probabilities, most probable first")
        rank, k = result.target_ranks, p.shape[-1]
        at = np.take_along_axis(p, np.minimum(rank, k - 1)[..., None], -1)[..., 0]
        assert np.allclose(at[rank < k], result.target_probs[rank < k], rtol=0, atol=1e-6), (
            "a target of rank r < k must have the r-th top probability")
        h = result.entropy
        assert ((h >= -1e-6) & (h <= np.log(self.model.vocab_size) + 1e-5)).all(), (
            "entropy must lie in [0, log V]")

    def bad_calls(self, ctx):
        e = ctx.make()
        return [("an empty prompt", ValueError, lambda: e.explain("")),
                ("a target that is not a string", TypeError, lambda: e.explain(PROMPT, 3))]


class TunedLensProblem(LensProblem):
    """The tuned lens of one prompt through :func:`reference_tuned_lens`."""

    def __init__(self):
        super().__init__()
        self.params = {"lens": reference_tuned_lens()}

    def check_result(self, ctx, result):
        super().check_result(ctx, result)
        assert result.lens == "tuned", "a tuned lens result must say lens='tuned'"
        plain = LogitLens(self.model, top_k=ctx.make().top_k).explain(PROMPT, result.target)
        np.testing.assert_allclose(result.target_probs[-1], plain.target_probs[-1], atol=1e-6,
                                   err_msg="the last layer keeps the identity: its lens is the output")

    def bad_calls(self, ctx):
        tok = make_tiny_tokenizer()
        deeper = LanguageModel(make_tiny_gpt2(len(tok), n_layer=3, random_state=0), tok, device="cpu")
        lens, name = self.params["lens"], ctx.info.qualified_name
        return [*super().bad_calls(ctx),
                ("no tuned lens", TypeError, lambda: create_explainer(name, self.model).explain(PROMPT)),
                ("a tuned lens of another model", ValueError,
                 lambda: create_explainer(name, deeper, lens=lens).explain(PROMPT))]


class PatchingProblem(Problem):
    """Patching a clean prompt's activations into a corrupted one: ``effects`` per site."""

    def __init__(self):
        self.model, self.inputs = reference_language_model(), (PROMPT, OTHER_PROMPT, " a", " b")

    def explain(self, explainer, **kwargs):
        return explainer.explain(*self.inputs, **kwargs)

    def values(self, result):
        return np.stack([result.effects[s] for s in result.sites])

    def check_result(self, ctx, result):
        shape = (self.model.n_layers, len(result.tokens))
        for site in result.sites:
            assert result.effects[site].shape == shape, "effects per layer and position"
            assert np.isfinite(result.patched[site]).all(), "patched logit differences must be finite"

    def bad_calls(self, ctx):
        e = ctx.make()
        return [("prompts of different lengths", ValueError,
                 lambda: e.explain(PROMPT, PROMPT + " red", " a", " b")),
                ("the same answer twice", ValueError, lambda: e.explain(PROMPT, OTHER_PROMPT, " a", " a"))]


class ProbeProblem(Problem):
    """Probing a planted label from every layer: ``accuracy`` per layer."""

    def __init__(self):
        prompts, answers = make_key_prompts(40, random_state=1)
        self.model, self.inputs = reference_language_model(), prompts
        self.labels = np.array([a.strip() in "abcd" for a in answers], dtype=np.int64)

    def explain(self, explainer, **kwargs):
        return explainer.explain(self.inputs, self.labels, **kwargs)

    def values(self, result):
        return result.accuracy

    def check_result(self, ctx, result):
        for name in ("accuracy", "control_accuracy"):
            v = getattr(result, name)
            assert v is None or ((v >= 0) & (v <= 1)).all(), f"{name} must be a proportion"
        assert ((result.low <= result.accuracy) & (result.accuracy <= result.high)).all()

    def bad_calls(self, ctx):
        e = ctx.make()
        return [("labels of another length", ValueError, lambda: e.explain(self.inputs, self.labels[:-1])),
                ("labels of one class", ValueError, lambda: e.explain(self.inputs, self.labels * 0))]


register_problem("text")(lambda info, modality, kind: [TextProblem()])
register_problem("native:logit_lens")(lambda info, modality, kind: [LensProblem()])
register_problem("native:tuned_lens")(lambda info, modality, kind: [TunedLensProblem()])
register_problem("native:activation_patching")(lambda info, modality, kind: [PatchingProblem()])
register_problem("native:linear_probe")(lambda info, modality, kind: [ProbeProblem()])


class HighlighterProblem(TextProblem):
    """Token Highlighter: a text explanation of the affirmation (here the reference target)."""

    def bad_calls(self, ctx):
        e = ctx.make()
        return [c for c in super().bad_calls(ctx) if "contrast" not in c[0]] + [
            ("fraction 0", ValueError, lambda: ctx.make().set_params(fraction=0.0).explain(PROMPT, TARGET)),
            ("beta 1", ValueError, lambda: ctx.make().set_params(beta=1.0).explain(PROMPT, TARGET)),
            ("a contrast", TypeError, lambda: e.explain(PROMPT, TARGET, contrast=" c")),
        ]


class CellProblem(Problem):
    """CELL-style edits of one prompt for a fixed response: ``objectives`` of the edited prompts."""

    def __init__(self):
        self.model, self.inputs = reference_language_model(), PROMPT

    def explain(self, explainer, **kwargs):
        return explainer.explain(self.inputs, **{"target": TARGET, **kwargs})

    def values(self, result):
        return result.objectives

    def check_result(self, ctx, result):
        import torch

        lm = self.model
        assert result.prompt == PROMPT and result.response == TARGET and len(result.edited_prompts) >= 1
        for text, edits, value in zip(result.edited_prompts, result.edits, result.objectives, strict=True):
            assert text != PROMPT and edits, "every reported prompt is edited"
            assert all(0 <= e["unit"] < len(result.units) and e["old"] == result.units[e["unit"]]
                       for e in edits), "edits name the units they replace"
            # the objective, recomputed: -log p(target | edited prompt) by teacher forcing
            ids = torch.cat([lm.encode(text).ids, lm.token_ids(TARGET)])[None]
            with torch.no_grad():
                logp = lm.logits(ids)[0, -2].double().log_softmax(-1)[int(ids[0, -1])]
            assert abs(-float(logp) - value) <= 1e-4 * (1 + abs(value)), "objective misreported"

    def bad_calls(self, ctx):
        e = ctx.make()
        return [("an empty prompt", ValueError, lambda: e.explain("", target=TARGET)),
                ("unknown replacements", ValueError,
                 lambda: ctx.make().set_params(replacements="nope").explain(PROMPT, TARGET)),
                ("a replacement of two tokens", ValueError,
                 lambda: ctx.make().set_params(replacements=["red blue"]).explain(PROMPT, TARGET)),
                ("a budget too small for one edit", ValueError,
                 lambda: ctx.make().set_params(budget=2).explain(PROMPT, TARGET)),
                ("fit", TypeError, lambda: e.fit(np.zeros((2, 3))))]


register_problem("native:token_highlighter")(lambda info, modality, kind: [HighlighterProblem()])
register_problem("native:cell")(lambda info, modality, kind: [CellProblem()])


class LogitAttributionProblem(Problem):
    """Direct logit attribution of ``logit(" a") - logit(" b")`` at the reference prompt's end:
    the components, the heads and the attention biases."""

    def __init__(self):
        self.model, self.inputs = reference_language_model(), (PROMPT, " a", " b")

    def explain(self, explainer, **kwargs):
        return explainer.explain(*self.inputs, **kwargs)

    def values(self, result):
        return np.concatenate([result.attributions, result.head_attributions.reshape(-1),
                               result.attn_bias_attributions])

    def check_result(self, ctx, result):
        import torch

        lm = self.model
        with torch.no_grad():  # the model's own logit difference, computed here
            last = lm.logits(lm.encode(PROMPT).ids[None])[0, -1].double()
        a, b = (int(lm.token_ids(t)[0]) for t in self.inputs[1:])
        diff = float(last[a] - last[b])
        assert abs(result.logit_diff - diff) <= 1e-5 * (1 + abs(diff)), "logit_diff misreported"
        assert abs(result.attributions.sum() - diff) <= 1e-4, "the terms must sum to the logit difference"
        attn = [result.attributions[result.labels.index(f"{layer}_attn_out")] for layer in range(lm.n_layers)]
        per_layer = result.head_attributions.sum(1) + result.attn_bias_attributions
        assert np.allclose(per_layer, attn, rtol=0, atol=1e-5), "heads + attention bias must give attn_out's"
        assert result.head_attributions.shape == (lm.n_layers, lm.n_heads)

    def bad_calls(self, ctx):
        e = ctx.make()
        return [("an empty prompt", ValueError, lambda: e.explain("", " a", " b")),
                ("a prompt that is not a string", ValueError, lambda: e.explain(3, " a", " b")),
                ("the same answer twice", ValueError, lambda: e.explain(PROMPT, " a", " a")),
                ("an answer that is not a string", TypeError, lambda: e.explain(PROMPT, 3, " b")),
                ("a position past the prompt", ValueError,
                 lambda: e.explain(PROMPT, " a", " b", position=99)),
                ("heads that is not a bool", TypeError,
                 lambda: ctx.make().set_params(heads="yes").explain(PROMPT, " a", " b"))]


class AttentionProblem(Problem):
    """Every head's attention pattern on the reference prompt."""

    def __init__(self):
        self.model, self.inputs = reference_language_model(), PROMPT

    def values(self, result):
        return result.pattern

    def check_result(self, ctx, result):
        import torch

        lm, n = self.model, len(result.tokens)
        assert result.pattern.shape == (lm.n_layers, lm.n_heads, n, n)
        assert np.allclose(result.pattern.sum(-1), 1.0, atol=1e-5), "each query's weights must sum to 1"
        assert (np.triu(result.pattern, 1) == 0).all(), "causal: no weight on later positions"
        # transformers' own eager attention weights, on a copy of the reference model
        eager = make_tiny_gpt2(lm.vocab_size, random_state=0)
        eager.set_attn_implementation("eager")
        ids = lm.encode(PROMPT).ids[None]
        with torch.no_grad():
            out = eager(ids, attention_mask=torch.ones_like(ids), output_attentions=True)
        ref = torch.stack(out.attentions)
        np.testing.assert_allclose(result.pattern, ref[:, 0].numpy(), atol=1e-6,
                                   err_msg="patterns differ from transformers' eager attention weights")

    def bad_calls(self, ctx):
        e = ctx.make()
        return [("an empty prompt", ValueError, lambda: e.explain("")),
                ("a prompt that is not a string", ValueError, lambda: e.explain(3)),
                ("a prompt longer than the model's positions", ValueError,
                 lambda: e.explain(" ".join([PROMPT] * 4)))]


register_problem("native:direct_logit_attribution")(lambda info, modality, kind: [LogitAttributionProblem()])
register_problem("native:attention_pattern")(lambda info, modality, kind: [AttentionProblem()])
