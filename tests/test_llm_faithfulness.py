"""Faithfulness metrics over a text explanation's units (xai_suite.metrics on TextExplanation).

Every removal metric runs through the same removal view as the array modalities; here its
numbers are checked against prompts edited by hand (top units replaced by the baseline token)
and scored with ``lm.logits``, and a faithful attribution of the key model (whose answer is
one known prompt token) is checked to beat random attributions of the same units.
"""

import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import xai_suite_llm.attribution as A  # registers the text entries
from xai_suite.metrics import (
    comprehensiveness,
    compute_metric,
    deletion_auc,
    deletion_curve,
    infidelity,
    insertion_auc,
    insertion_curve,
    metric_info,
    sensitivity_max,
    sufficiency,
)
from xai_suite.metrics.faithfulness import ERASER_FRACTIONS
from xai_suite.metrics.statistics import instance_generators
from xai_suite.registry import explainer_info
from xai_suite_llm import make_key_prompts

PROMPTS, ANSWERS = make_key_prompts(4, random_state=7)
OTHER = [" a" if a != " a" else " b" for a in ANSWERS]


@pytest.fixture(scope="module")
def lm(key_lm):
    return key_lm


pytestmark = pytest.mark.usefixtures("one_thread")


# -- the reference: prompts edited by hand, scored by teacher forcing -------------------------
def _logprob(lm, prompt_ids: torch.Tensor, target: str) -> float:
    target_ids = lm.token_ids(target)
    seq = torch.cat([prompt_ids, target_ids])[None]
    with torch.no_grad():
        logp = lm.logits(seq)[0].double().log_softmax(-1)
    t = len(prompt_ids)
    return sum(float(logp[t - 1 + j, int(target_ids[j])]) for j in range(len(target_ids)))


def _scalariser(lm, exp, prompt_ids: torch.Tensor) -> float:
    """The explained scalariser of ``exp``'s continuation after ``prompt_ids``."""
    value = _logprob(lm, prompt_ids, exp.target)
    scalariser = exp.params["scalariser"]
    if scalariser == "prob":
        return float(np.exp(value))
    if scalariser == "contrastive":
        return value - _logprob(lm, prompt_ids, exp.contrast)
    return value


def _removed(lm, exp, units: np.ndarray, token_id: int) -> float:
    """The scalariser with the tokens of ``units`` replaced by ``token_id``."""
    ids = lm.encode(exp.prompt).ids.clone()
    for u in units:
        ids[list(exp.unit_tokens[u])] = token_id
    return _scalariser(lm, exp, ids)


def _order(exp) -> np.ndarray:
    return np.argsort(-exp.attributions, kind="stable")  # ties: text order


def _randomised(exp, seed: int):
    """The same units with seeded random attributions (the random control)."""
    return dataclasses.replace(exp, attributions=np.random.default_rng(seed).normal(size=len(exp.units)))


EXPLANATIONS = {
    "token": lambda lm, i: A.TextAblation(lm).explain(PROMPTS[i], ANSWERS[i]),
    "word/contrastive": lambda lm, i: A.TextAblation(lm, level="word", scalariser="contrastive").explain(
        PROMPTS[i], ANSWERS[i], contrast=OTHER[i]),
    "sentence/prob": lambda lm, i: A.TextKernelShap(lm, level="sentence", scalariser="prob",
                                                    n_samples="all").explain(PROMPTS[i], ANSWERS[i]),
    "hierarchical": lambda lm, i: A.TextAblation(lm).explain_hierarchical(PROMPTS[i], ANSWERS[i])[-1],
}


@pytest.mark.parametrize("kind", list(EXPLANATIONS))
def test_curves_and_eraser_equal_prompts_edited_by_hand(lm, kind):
    """Deletion/insertion curves, their areas, comprehensiveness and sufficiency at every level
    (mixed-level units of a hierarchical explanation included) equal the scalariser of the
    prompt with the top-k units replaced by the baseline token (or all but them), for a real
    and a random order of the units."""
    exp = EXPLANATIONS[kind](lm, 0)
    n_units, token_id = len(exp.units), exp.params["baseline_token_id"]
    assert n_units > 1
    for e in (exp, _randomised(exp, 0)):
        order = _order(e)
        dele = [_removed(lm, e, order[:k], token_id) for k in range(n_units + 1)]
        ins = [_removed(lm, e, order[k:], token_id) for k in range(n_units + 1)]
        fractions, curve = deletion_curve(e, lm, n_steps=n_units)
        np.testing.assert_allclose(fractions, np.arange(n_units + 1) / n_units)
        np.testing.assert_allclose(curve, [dele], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(insertion_curve(e, lm, n_steps=n_units)[1], [ins], rtol=1e-4, atol=1e-4)
        # fewer steps than units: the top round(f U) units, rounded half up
        counts = np.floor(np.arange(5) / 4 * n_units + 0.5).astype(int)
        area = np.trapezoid([dele[k] for k in counts], np.arange(5) / 4)
        np.testing.assert_allclose(deletion_auc(e, model=lm, n_steps=4), [area], rtol=1e-4, atol=1e-4)
        area = np.trapezoid([ins[k] for k in counts], np.arange(5) / 4)
        np.testing.assert_allclose(insertion_auc(e, model=lm, n_steps=4), [area], rtol=1e-4, atol=1e-4)
        # ERASER: the top ceil(k U) units (at least one), averaged over k
        top = [max(1, int(np.ceil(f * n_units - 1e-9))) for f in ERASER_FRACTIONS]
        np.testing.assert_allclose(comprehensiveness(e, model=lm),
                                   [np.mean([dele[0] - dele[k] for k in top])], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(sufficiency(e, model=lm),
                                   [np.mean([dele[0] - ins[k] for k in top])], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dele[0], exp.score, rtol=1e-5, atol=1e-6)  # nothing removed: the score


def test_a_shared_replacement_token_replaces_every_unit(lm):
    """``replacement=`` a text baseline removes units towards that token instead of the
    explanation's own, for the curves and ERASER alike."""
    exp = A.TextAblation(lm, level="word").explain(PROMPTS[1], ANSWERS[1])
    unk = lm.tokenizer.unk_token_id
    assert unk != exp.params["baseline_token_id"]
    order, n_units = _order(exp), len(exp.units)
    dele = [_removed(lm, exp, order[:k], unk) for k in range(n_units + 1)]
    np.testing.assert_allclose(deletion_curve(exp, lm, n_steps=n_units, replacement="unk_token")[1], [dele],
                               rtol=1e-4, atol=1e-4)
    top = [max(1, int(np.ceil(f * n_units - 1e-9))) for f in ERASER_FRACTIONS]
    np.testing.assert_allclose(comprehensiveness(exp, model=lm, replacement={"name": "unk_token"}),
                               [np.mean([dele[0] - dele[k] for k in top])], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", [A.TextAblation, A.TextIntegratedGradients])
@pytest.mark.parametrize("level", ["token", "word", "sentence"])
def test_a_faithful_attribution_beats_random_ones_of_the_same_units(lm, method, level):
    """On the key model (the answer is the key token) ablation and IG rank the key's unit first:
    their deletion AUC is lower, their comprehensiveness higher and their sufficiency lower than
    those of seeded random attributions of the same units, on every prompt."""
    for i in range(3):
        exp = method(lm, level=level).explain(PROMPTS[i], ANSWERS[i])
        rand = [_randomised(exp, seed) for seed in range(6)]
        gap = exp.score - exp.params["baseline_score"]
        assert gap > 5  # the baseline prompt loses the answer
        dele = deletion_auc(exp, model=lm)[0]
        assert dele < np.mean([deletion_auc(r, model=lm)[0] for r in rand]) - 0.1 * gap
        comp = comprehensiveness(exp, model=lm)[0]
        assert comp > 0.9 * gap  # the top unit alone carries the answer
        assert comp > np.mean([comprehensiveness(r, model=lm)[0] for r in rand]) + 0.1 * gap
        assert sufficiency(exp, model=lm)[0] < np.mean([sufficiency(r, model=lm)[0] for r in rand])
        assert insertion_auc(exp, model=lm)[0] > np.mean([insertion_auc(r, model=lm)[0] for r in rand])


# -- infidelity over units ----------------------------------------------------------------------
def test_infidelity_over_units_equals_its_hand_computation(lm):
    """Text infidelity removes random unit subsets (probability 1/2 each, seeded by random_state
    and the prompt) towards the explanation's baseline token: the mean squared gap between the
    removed units' attribution total and the scalariser's drop, as computed by hand."""
    shapley = A.TextShapleySampling(lm, level="word", n_samples=10, random_state=0)
    exp = shapley.explain(PROMPTS[2], ANSWERS[2])
    n_units, s = len(exp.units), 7
    ids = lm.encode(exp.prompt).ids
    removed = instance_generators(ids.numpy()[None], 3)[0].random((s, n_units)) < 0.5
    drops = np.array([exp.score - _removed(lm, exp, np.flatnonzero(r), exp.params["baseline_token_id"])
                      for r in removed])
    totals = removed @ exp.attributions
    ours = infidelity(exp, model=lm, n_perturb_samples=s, random_state=3)
    np.testing.assert_allclose(ours, [np.mean((totals - drops) ** 2)], rtol=1e-4, atol=1e-6)
    beta = (totals @ drops) / (totals @ totals)
    np.testing.assert_allclose(infidelity(exp, model=lm, n_perturb_samples=s, random_state=3, normalize=True),
                               [np.mean((beta * totals - drops) ** 2)], rtol=1e-4, atol=1e-6)
    again = compute_metric("infidelity", exp, model=lm, n_perturb_samples=s, random_state=3)
    np.testing.assert_allclose(again, ours)
    assert infidelity(exp, model=lm, n_perturb_samples=s, random_state=4)[0] != ours[0]


def test_infidelity_of_a_faithful_attribution_is_below_random_ones(lm):
    """Shapley values of the units (efficient, and the key model is nearly additive in its key)
    have a far lower infidelity than random attributions of the same units."""
    exp = A.TextShapleySampling(lm, n_samples=10, random_state=0).explain(PROMPTS[0], ANSWERS[0])
    ours = infidelity(exp, model=lm, n_perturb_samples=32)[0]
    rand = [infidelity(_randomised(exp, seed), model=lm, n_perturb_samples=32)[0] for seed in range(4)]
    assert ours < 0.05 * min(rand)


# -- what applies, and clear errors -------------------------------------------------------------
def test_the_registry_applies_the_unit_metrics_to_text_explainers():
    """The benchmark computes the removal metrics and infidelity for every text explainer,
    completeness_error for those with a completeness property, and marks sensitivity_max
    (small input perturbations) not applicable to language models."""
    text = ["native:text_ablation", "native:text_shapley_sampling", "native:text_kernel_shap",
            "native:text_lime", "native:text_integrated_gradients", "native:text_gradient_x_activation"]
    complete = {"native:text_shapley_sampling", "native:text_kernel_shap", "native:text_integrated_gradients"}
    for name in text:
        tags = explainer_info(name).tags
        for metric in ("deletion_auc", "insertion_auc", "comprehensiveness", "sufficiency", "infidelity"):
            assert metric_info(metric).not_applicable(tags, "hf_causal_lm") is None
        reason = metric_info("completeness_error").not_applicable(tags, "hf_causal_lm")
        assert (reason is None) == (name in complete)
        assert "not hf_causal_lm" in metric_info("sensitivity_max").not_applicable(tags, "hf_causal_lm")
    assert metric_info("sensitivity_max").not_applicable(explainer_info("saliency").tags, "torch") is None


def test_completeness_error_of_complete_text_methods(lm):
    """completeness_error reads what the text methods record: exact KernelSHAP is efficient."""
    exp = A.TextKernelShap(lm, level="sentence", n_samples="all").explain(PROMPTS[3], ANSWERS[3])
    err = compute_metric("completeness_error", exp, model=lm)
    assert err.shape == (1,) and err[0] < 1e-6
    np.testing.assert_allclose(exp.attributions.sum(), exp.output_gap()[0], atol=1e-6)


def test_bad_input_raises_clearly(lm):
    exp = A.TextAblation(lm, level="word").explain(PROMPTS[0], ANSWERS[0])
    with pytest.raises(ValueError, match="perturbation='removal'"):
        infidelity(exp, model=lm, perturbation="noise")
    with pytest.raises(ValueError, match="perturb_fn gives 'noise' perturbations"):
        infidelity(exp, model=lm, perturb_fn=lambda x: (x, x))
    with pytest.raises(ValueError, match="perturbation must be one of"):
        infidelity(exp, model=lm, perturbation="gaussian")
    with pytest.raises(ValueError, match="take no small perturbations"):
        sensitivity_max(exp, explainer=A.TextAblation(lm, level="word"))
    # an embedding baseline is no token to remove units towards: say which replacement works
    ig = A.TextIntegratedGradients(lm, baseline="zero_embedding", n_steps=8).explain(PROMPTS[0], ANSWERS[0])
    with pytest.raises(ValueError, match="replacement='pad_token'"):
        deletion_auc(ig, model=lm)
    assert np.isfinite(deletion_auc(ig, model=lm, replacement="pad_token")).all()
    # a token in two units has no removal order; tokens outside the prompt are refused
    broken = dataclasses.replace(exp, unit_tokens=[(0,)] * len(exp.units))
    with pytest.raises(ValueError, match="in one unit only"):
        deletion_curve(broken, lm)
    outside = dataclasses.replace(exp, unit_tokens=[(t + 100,) for t in range(len(exp.units))])
    with pytest.raises(ValueError, match="outside the prompt"):
        deletion_curve(outside, lm)


def test_tokens_of_no_unit_are_never_removed(lm):
    """Units that cover part of the prompt (say user-given phrases): removing every unit
    replaces their tokens only, the other tokens stay as they are."""
    exp = A.TextAblation(lm, level="word").explain(PROMPTS[1], ANSWERS[1])
    part = dataclasses.replace(exp, units=exp.units[:3], spans=exp.spans[:3], unit_tokens=exp.unit_tokens[:3],
                               attributions=exp.attributions[:3])
    order = _order(part)
    curve = deletion_curve(part, lm, n_steps=3)[1]
    hand = [_removed(lm, part, order[:k], exp.params["baseline_token_id"]) for k in range(4)]
    np.testing.assert_allclose(curve, [hand], rtol=1e-4, atol=1e-4)
