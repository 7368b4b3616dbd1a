"""Captum's LLM wrappers as ``captum:llm_*`` entries (xai_suite_llm.captum_llm): each entry's
attributions are Captum's own direct call's, and agree with the native entry computing the
same method; on the key model the key token comes first."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("captum")

import captum.attr as captum_attr

import xai_suite as xs
from xai_suite_llm import KEY_POSITION, make_key_prompts
from xai_suite_llm.testing import PROMPT, reference_language_model

TARGET = " b c"  # two tokens: Captum's per-token matrix has two rows
#: entry -> (Captum class, its attribute() keyword arguments, our hyper-parameters)
ENTRIES = {
    "captum:llm_feature_ablation": ("FeatureAblation", {}, {}),
    "captum:llm_shapley_value_sampling": ("ShapleyValueSampling", {"n_samples": 3}, {"n_samples": 3}),
    "captum:llm_kernel_shap": ("KernelShap", {"n_samples": 40}, {"n_samples": 40}),
    "captum:llm_lime": ("Lime", {"n_samples": 40}, {"n_samples": 40}),
    "captum:llm_integrated_gradients": ("LayerIntegratedGradients", {"n_steps": 16}, {"n_steps": 16}),
    "captum:llm_gradient_x_activation": ("LayerGradientXActivation", {}, {}),
}
SEED = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _direct(lm, cls: str, kwargs: dict, prompt: str, target, *, level_mask=None):
    """Captum's own call, written out as its documentation shows: (seq_attr (T,), token_attr)."""
    a = captum_attr
    m, tok = lm.model, lm.tokenizer
    inp = a.TextTokenInput(prompt, tok, baselines=tok.pad_token_id)
    tgt = lm.token_ids(target) if isinstance(target, str) else target
    if cls.startswith("Layer"):
        res = a.LLMGradientAttribution(getattr(a, cls)(m, m.transformer.wte), tok).attribute(
            inp, target=tgt, **kwargs)
    else:
        if cls == "Lime":  # the entry's documented surrogate: ridge(1.0), cosine kernel of width 1
            from captum._utils.models.linear_model import SkLearnRidge
            from captum.attr._core.lime import get_exp_kernel_similarity_function

            algo = a.Lime(m, interpretable_model=SkLearnRidge(alpha=1.0),
                          similarity_func=get_exp_kernel_similarity_function("cosine", 1.0))
        else:
            algo = getattr(a, cls)(m)
        extra = {} if level_mask is None else {"feature_mask": level_mask}
        torch.manual_seed(SEED)
        res = a.LLMAttribution(algo, tok).attribute(inp, target=tgt, forward_in_tokens=False,
                                                    **kwargs, **extra)
    token_attr = None if res.token_attr is None else res.token_attr.double().numpy()
    return res.seq_attr.double().numpy(), token_attr


@pytest.mark.parametrize("name", list(ENTRIES))
def test_entry_equals_captums_direct_call(name):
    lm = reference_language_model()
    cls, kwargs, ours = ENTRIES[name]
    params = {**ours, **({"random_state": SEED} if "random_state" in xs.explainer_info(name).params else {})}
    exp = xs.create_explainer(name, lm, **params).explain(PROMPT, target=TARGET)
    seq, per_token = _direct(lm, cls, kwargs, PROMPT, TARGET)
    assert exp.method == name and exp.level == "token" and len(exp.units) == len(seq) == 18
    np.testing.assert_allclose(exp.attributions, seq, rtol=1e-6, atol=1e-9)
    if per_token is None:  # Lime and KernelShap: Captum computes no per-token matrix
        assert exp.token_attributions is None and exp.token_scores is None
    else:
        np.testing.assert_allclose(exp.token_attributions, per_token, rtol=1e-6, atol=1e-9)
        assert exp.token_scores.shape == (2,)
    assert exp.target_tokens == ["b", "c"]  # each token decoded alone


def test_sentence_level_is_captums_feature_mask_call():
    """Word/sentence units are Captum features grouping their tokens (one value per unit)."""
    lm = reference_language_model()
    exp = xs.create_explainer("captum:llm_feature_ablation", lm, level="sentence").explain(PROMPT,
                                                                                          target=TARGET)
    mask = torch.zeros(1, 18, dtype=torch.long)
    for i, toks in enumerate(exp.unit_tokens):
        mask[0, list(toks)] = i
    seq, per_token = _direct(lm, "FeatureAblation", {}, PROMPT, TARGET, level_mask=mask)
    assert len(exp.units) == 4 and exp.units[1] == "the key is g ."
    np.testing.assert_allclose(exp.attributions, seq[[t[0] for t in exp.unit_tokens]], rtol=1e-6)
    np.testing.assert_allclose(exp.token_attributions,
                               per_token[:, [t[0] for t in exp.unit_tokens]], rtol=1e-6)


@pytest.mark.parametrize("model", ["reference", "key"])
@pytest.mark.parametrize("level", ["token", "sentence"])
@pytest.mark.parametrize(("ours", "native", "params", "atol"), [
    ("llm_feature_ablation", "text_ablation", {}, 1e-6),
    ("llm_feature_ablation", "text_ablation", {"scalariser": "prob"}, 1e-6),
    # same path (baseline token's embedding -> prompt's), steps and Gauss-Legendre points: the
    # two differ by float32 rounding only (4e-8 measured on the reference prompt)
    ("llm_integrated_gradients", "text_integrated_gradients", {"n_steps": 16}, 1e-5),
    ("llm_gradient_x_activation", "text_gradient_x_activation", {}, 1e-5),
])
def test_agrees_with_the_native_entry(request, model, level, ours, native, params, atol):
    lm = reference_language_model() if model == "reference" else request.getfixturevalue("key_lm")
    prompt = PROMPT if model == "reference" else make_key_prompts(1, random_state=5)[0][0]
    target = TARGET if model == "reference" else None  # the key model's own greedy answer
    a = xs.create_explainer(f"captum:{ours}", lm, level=level, **params).explain(prompt, target)
    b = xs.create_explainer(f"native:{native}", lm, level=level, **params).explain(prompt, target)
    assert (a.units, a.target, a.score) == (b.units, b.target, pytest.approx(b.score, rel=1e-6))
    np.testing.assert_allclose(a.attributions, b.attributions, rtol=1e-4, atol=atol)
    if "baseline_score" in b.params:
        assert a.params["baseline_score"] == pytest.approx(b.params["baseline_score"], rel=1e-9)
    if a.convergence_delta is not None:
        assert a.convergence_delta == pytest.approx(b.convergence_delta, abs=1e-5)


def test_exact_shapley_values_equal_native_exact_kernel_shap():
    """At sentence level (4 units, 24 permutations) Captum's ShapleyValues and the native
    KernelSHAP over every coalition are both the exact Shapley values."""
    lm = reference_language_model()
    a = xs.create_explainer("captum:llm_shapley_values", lm, level="sentence").explain(PROMPT, TARGET)
    b = xs.create_explainer("native:text_kernel_shap", lm, level="sentence",
                            n_samples="all").explain(PROMPT, TARGET)
    np.testing.assert_allclose(a.attributions, b.attributions, rtol=1e-4, atol=1e-6)
    assert a.attributions.sum() == pytest.approx(a.score - a.params["baseline_score"], abs=1e-5)
    with pytest.raises(ValueError, match="max_units=8"):
        xs.create_explainer("captum:llm_shapley_values", lm, level="token").explain(PROMPT, TARGET)


def test_sampled_shapley_is_efficient_and_seeded():
    lm = reference_language_model()
    make = lambda seed: xs.create_explainer("captum:llm_shapley_value_sampling", lm, n_samples=3,  # noqa: E731
                                            random_state=seed).explain(PROMPT, TARGET)
    a, again, other = make(0), make(0), make(1)
    assert a.attributions.sum() == pytest.approx(a.score - a.params["baseline_score"], abs=1e-5)
    np.testing.assert_array_equal(a.attributions, again.attributions)
    assert not np.array_equal(a.attributions, other.attributions)
    assert a.params["model_calls"] == a.params["model_rows"]  # Captum: one row per model call


@pytest.mark.parametrize("name", ["captum:llm_feature_ablation", "captum:llm_integrated_gradients"])
def test_token_matrix_rows_sum_to_the_sequence_attribution(name):
    """Ablation and IG are linear in the explained function: the per-token rows (J, U) sum to
    the whole continuation's log-probability attributions."""
    lm = reference_language_model()
    exp = xs.create_explainer(name, lm, level="sentence").explain(PROMPT, TARGET)
    rows = exp.token_attributions
    assert rows.shape == (2, 4)
    np.testing.assert_allclose(rows.sum(0), exp.attributions, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("name", "params"), [
    ("captum:llm_feature_ablation", {}),
    ("captum:llm_shapley_value_sampling", {"n_samples": 5, "random_state": 0}),
    ("captum:llm_kernel_shap", {"n_samples": 150, "random_state": 0}),
    ("captum:llm_lime", {"n_samples": 150, "random_state": 0}),
    ("captum:llm_integrated_gradients", {"n_steps": 16}),
])
def test_key_token_gets_the_top_attribution(key_lm, name, params):
    prompts, answers = make_key_prompts(2, random_state=11)
    for prompt, answer in zip(prompts, answers, strict=True):
        exp = xs.create_explainer(name, key_lm, **params).explain(prompt)
        assert exp.target_ids.tolist() == key_lm.token_ids(answer).tolist()
        assert int(np.argmax(exp.attributions)) == KEY_POSITION, (name, exp.top(3))


@pytest.mark.parametrize("scalariser", ["logprob", "prob"])
def test_token_matrix_equals_the_native_per_token_matrix(scalariser):
    """Captum's token_attr and the native ``per_token=True`` matrix attribute the same per-token
    scores: equal rows, equal per-token scores."""
    lm = reference_language_model()
    a = xs.create_explainer("captum:llm_feature_ablation", lm, level="word",
                            scalariser=scalariser).explain(PROMPT, TARGET)
    b = xs.create_explainer("native:text_ablation", lm, level="word", scalariser=scalariser,
                            per_token=True).explain(PROMPT, TARGET)
    assert a.target_tokens == b.target_tokens
    np.testing.assert_allclose(a.token_scores, b.token_scores, rtol=1e-6)
    np.testing.assert_allclose(a.token_attributions, b.token_attributions, rtol=1e-4, atol=1e-6)


def test_multi_token_greedy_continuation(key_lm):
    prompt = make_key_prompts(1, random_state=2)[0][0]
    exp = xs.create_explainer("captum:llm_feature_ablation", key_lm, max_new_tokens=3).explain(prompt)
    rows = exp.token_attributions
    assert len(exp.target_ids) == 3 and rows.shape == (3, len(exp.units))
    np.testing.assert_allclose(rows.sum(0), exp.attributions, rtol=1e-5, atol=1e-7)


def test_bad_input_is_refused():
    lm = reference_language_model()
    fa = xs.create_explainer("captum:llm_feature_ablation", lm)
    with pytest.raises(ValueError, match="one continuation"):
        fa.explain(PROMPT, TARGET, contrast=" a")
    with pytest.raises(ValueError, match="scalariser"):
        xs.create_explainer("captum:llm_feature_ablation", lm,
                            scalariser="contrastive").explain(PROMPT, TARGET)
    with pytest.raises(ValueError, match="token baseline"):
        xs.create_explainer("captum:llm_integrated_gradients", lm,
                            baseline="zero_embedding").explain(PROMPT, TARGET)
    with pytest.raises(TypeError, match="unknown parameter"):
        xs.create_explainer("captum:llm_feature_ablation", lm, batch_size=4)
    with pytest.raises(TypeError, match="LanguageModel"):
        xs.create_explainer("captum:llm_feature_ablation", lm.model).explain(PROMPT, TARGET)


def test_html_and_faithfulness_view(tmp_path):
    lm = reference_language_model()
    exp = xs.create_explainer("captum:llm_feature_ablation", lm).explain(PROMPT, TARGET)
    text = exp.to_html(tmp_path / "page.html").read_text()
    assert "captum:llm_feature_ablation" in text
    view = exp.faithfulness_view(lm)  # the removal metrics see the same prompt and score
    assert view.fx[0] == pytest.approx(exp.score)
