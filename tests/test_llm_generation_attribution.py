"""Attribution for generation (xai_suite_llm.attribution, segments): the target token x unit
matrix, registered and user scalarisers, aggregation of tokens into units, span and phrase
units, and integrated gradients' completeness warning."""

import re
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import xai_suite_llm.attribution as A
from xai_suite.explanation import load
from xai_suite_llm import KEY_POSITION, CompletenessWarning, make_key_prompts, register_scalariser
from xai_suite_llm.models import Encoding
from xai_suite_llm.segments import segment, segment_spans

PROMPTS, ANSWERS = make_key_prompts(3, random_state=123)
TARGET = ANSWERS[0] + " . so"  # three tokens: the answer, then two more
PERTURBATION = {
    A.TextAblation: {},
    A.TextShapleySampling: {"n_samples": 6, "random_state": 0},
    A.TextKernelShap: {"n_samples": 60, "random_state": 0},
    A.TextLime: {"n_samples": 60, "random_state": 0},
}


@pytest.fixture(scope="module")
def lm(key_lm):
    return key_lm


pytestmark = pytest.mark.usefixtures("one_thread")


def _rows(lm, ids_rows, target_ids):
    """Independent reference: log-softmax (R, J, V) float64 at the positions predicting the target."""
    t = ids_rows.shape[1]
    seq = torch.cat([ids_rows, target_ids.expand(len(ids_rows), -1)], dim=1)
    with torch.no_grad():
        return lm.logits(seq).double().log_softmax(-1)[:, t - 1 : t - 1 + len(target_ids)]


def _token_logprobs(lm, ids_rows, target_ids):
    """log p(target_j | row, target_<j) (R, J)."""
    logp = _rows(lm, ids_rows, target_ids)
    return logp.gather(2, target_ids.expand(len(ids_rows), -1).unsqueeze(2))[..., 0].numpy()


# -- the target token x unit matrix ----------------------------------------------------------------
@pytest.mark.parametrize("cls", list(PERTURBATION), ids=lambda c: c.__name__)
def test_perturbation_matrix_rows_sum_to_the_vector_at_no_extra_rows(lm, cls):
    plain = cls(lm, level="word", **PERTURBATION[cls]).explain(PROMPTS[0], TARGET)
    ex = cls(lm, level="word", per_token=True, **PERTURBATION[cls]).explain(PROMPTS[0], TARGET)
    n_target = len(ex.target_ids)
    assert n_target == 3 and ex.token_attributions.shape == (3, len(ex.units))
    assert ex.target_tokens == [lm.decode([t]) for t in ex.target_ids]
    np.testing.assert_allclose(ex.attributions, plain.attributions, rtol=0, atol=1e-12)  # unchanged
    assert ex.params["model_rows"] == plain.params["model_rows"]  # the rows come from the same forwards
    np.testing.assert_allclose(ex.token_attributions.sum(0), ex.attributions, rtol=0, atol=1e-9)
    ref = _token_logprobs(lm, lm.encode(PROMPTS[0]).ids[None], torch.as_tensor(ex.target_ids))[0]
    np.testing.assert_allclose(ex.token_scores, ref, atol=1e-5)
    assert ex.token_scores.sum() == pytest.approx(ex.score, abs=1e-9)


def test_ablation_matrix_row_is_each_tokens_own_drop(lm):
    ex = A.TextAblation(lm, per_token=True).explain(PROMPTS[1], TARGET)
    ids, tgt = lm.encode(PROMPTS[1]).ids, torch.as_tensor(ex.target_ids)
    units = [0, KEY_POSITION, len(ids) - 1]
    rows = ids.repeat(len(units) + 1, 1)
    for r, u in enumerate(units, start=1):
        rows[r, u] = lm.tokenizer.pad_token_id
    lp = _token_logprobs(lm, rows, tgt)  # (1 + 3, J)
    np.testing.assert_allclose(ex.token_attributions[:, units], (lp[0] - lp[1:]).T, atol=1e-5)
    # the key moves the answer token most; the matrix says which generated token depends on it
    assert int(np.argmax(ex.token_attributions[0])) == KEY_POSITION


@pytest.mark.parametrize("cls", [A.TextIntegratedGradients, A.TextGradientXActivation],
                         ids=lambda c: c.__name__)
def test_gradient_matrix_rows_are_each_tokens_own_attribution(lm, cls):
    ex = cls(lm, per_token=True).explain(PROMPTS[2], TARGET)
    plain = cls(lm).explain(PROMPTS[2], TARGET)
    np.testing.assert_allclose(ex.attributions, plain.attributions, rtol=0, atol=1e-12)
    scale = np.abs(ex.token_attributions).max()
    np.testing.assert_allclose(ex.token_attributions.sum(0), ex.attributions, atol=1e-5 * scale)
    for j in range(len(ex.target_ids)):  # row j: the same method on log p(target_j) alone
        def own(logits, ids, j=j):
            return A._token_logprobs(logits, ids)[:, j].double()

        one = cls(lm, scalariser=own).explain(PROMPTS[2], TARGET)
        np.testing.assert_allclose(ex.token_attributions[j], one.attributions, atol=1e-5 * scale)
        assert ex.token_scores[j] == pytest.approx(one.score, abs=1e-6)
    if cls is A.TextIntegratedGradients:
        assert ex.convergence_delta == pytest.approx(plain.convergence_delta, abs=1e-9)
        assert ex.params["model_rows"] == plain.params["model_rows"]


def test_matrix_with_hierarchy_views_and_files(lm, tmp_path):
    import matplotlib.pyplot as plt

    levels = A.TextAblation(lm, per_token=True).explain_hierarchical(PROMPTS[0], TARGET)
    for r in levels:
        assert r.token_attributions.shape == (3, len(r.units))
        np.testing.assert_allclose(r.token_attributions.sum(0), r.attributions, atol=1e-9)
    ex = levels[1]
    frame = ex.token_frame()
    assert list(frame.columns) == ["position", "token", "token_score", "unit_index", "unit", "start", "end",
                                   "attribution"]
    assert len(frame) == 3 * len(ex.units)
    np.testing.assert_array_equal(frame.attribution.to_numpy().reshape(3, -1), ex.token_attributions)
    assert frame.token.tolist()[:: len(ex.units)] == ex.target_tokens
    ax = ex.plot()
    assert len(ax.images) == 1 and ax.images[0].get_array().shape == (3, len(ex.units))
    plt.close("all")
    page = ex.to_html(tmp_path / "matrix.html").read_text()
    assert "attribution of each target token" in page and "target token 2:" in page
    plain = A.TextAblation(lm).explain(PROMPTS[0], TARGET).to_html(tmp_path / "plain.html").read_text()
    assert "attribution of each target token" not in plain
    loaded = load(ex.save(tmp_path / "ex.npz"))
    np.testing.assert_array_equal(loaded.token_attributions, ex.token_attributions)
    np.testing.assert_array_equal(loaded.token_scores, ex.token_scores)
    assert loaded.target_tokens == ex.target_tokens
    with pytest.raises(ValueError, match="explain with per_token=True"):
        A.TextAblation(lm).explain(PROMPTS[0], TARGET).token_frame()
    with pytest.raises(ValueError, match=r"must be \(target tokens, units\) = \(3, "):
        type(ex)(**{**ex.__dict__, "token_attributions": ex.token_attributions[:2]})
    with pytest.raises(ValueError, match="come together"):
        type(ex)(**{**ex.__dict__, "token_scores": None})
    with pytest.raises(ValueError, match="contrastive scalariser compares two continuations"):
        A.TextAblation(lm, scalariser="contrastive", per_token=True).explain(PROMPTS[0], TARGET,
                                                                           contrast=" b")
    with pytest.raises(TypeError, match="per_token must be True or False"):
        A.TextAblation(lm, per_token="yes").explain(PROMPTS[0], TARGET)


# -- scalarisers -------------------------------------------------------------------------------------
def test_entropy_ablation_equals_a_hand_computation(lm):
    ex = A.TextAblation(lm, scalariser="entropy", per_token=True).explain(PROMPTS[0], TARGET)
    ids, tgt = lm.encode(PROMPTS[0]).ids, torch.as_tensor(ex.target_ids)
    units = [1, KEY_POSITION, len(ids) - 2]
    rows = ids.repeat(len(units) + 1, 1)
    for r, u in enumerate(units, start=1):
        rows[r, u] = lm.tokenizer.pad_token_id
    logp = _rows(lm, rows, tgt)
    h = -(logp.exp() * logp).sum(-1).numpy()  # (1 + 3, J) entropy in nats per position
    assert ex.score == pytest.approx(h[0].sum(), abs=1e-5)
    np.testing.assert_allclose(ex.attributions[units], h[0].sum() - h[1:].sum(1), atol=1e-5)
    np.testing.assert_allclose(ex.token_attributions[:, units], (h[0] - h[1:]).T, atol=1e-5)
    assert np.abs(ex.attributions).max() > 0.05  # removing the key changes how sure the model is


def test_user_callable_equal_to_logprob_gives_logprob_attributions(lm):
    def mine(logits, ids):
        logp = torch.log_softmax(logits, dim=-1)
        return logp[:, torch.arange(len(ids)), ids].sum(1)  # float32: checked and made float64

    for cls in (A.TextAblation, A.TextKernelShap, A.TextIntegratedGradients):
        kwargs = {"n_samples": 60, "random_state": 0} if cls is A.TextKernelShap else {}
        ref = cls(lm, level="word", **kwargs).explain(PROMPTS[1], TARGET)
        ours = cls(lm, level="word", scalariser=mine, per_token=True, **kwargs).explain(PROMPTS[1], TARGET)
        scale = np.abs(ref.attributions).max()
        np.testing.assert_allclose(ours.attributions, ref.attributions, atol=1e-5 * scale)
        assert ours.score == pytest.approx(ref.score, abs=1e-5)
        assert ours.params["scalariser"].endswith("mine")
    with pytest.raises(ValueError, match="is not registered, so the metrics cannot recompute it"):
        ours.faithfulness_view(lm)
    # registered under a name, it is chosen by name and the metrics recompute it
    register_scalariser("test_logprob_again")(mine)
    try:
        named = A.TextAblation(lm, scalariser="test_logprob_again").explain(PROMPTS[1], TARGET)
        assert named.params["scalariser"] == "test_logprob_again"
        assert named.faithfulness_view(lm).fx[0] == pytest.approx(named.score, abs=1e-6)
        with pytest.raises(ValueError, match="already registered"):
            register_scalariser("test_logprob_again")(mine)
    finally:
        A.SCALARISERS.pop("test_logprob_again")
    with pytest.raises(ValueError, match="already registered"):
        register_scalariser("contrastive")
    with pytest.raises(ValueError, match="scalariser must be one of 'logprob', 'prob', 'entropy'"):
        A.TextAblation(lm, scalariser="surprise").explain(PROMPTS[0], TARGET)


@pytest.mark.parametrize("bad, error, match", [
    (lambda logits, ids: logits[:, 0, 0].detach().numpy(), TypeError, "must return a torch.Tensor of shape"),
    (lambda logits, ids: logits[:, :, 0].sum(), ValueError, r"tensor of shape \(\d+,\).*got shape \(\)"),
    (lambda logits, ids: logits[:, :, :2].sum(1), ValueError, r"got shape \(\d+, 2\)"),
    (lambda logits, ids: ids.expand(len(logits), -1)[:, 0], ValueError, "dtype torch.int64"),
    (lambda logits, ids: logits[:, 0, 0] * float("nan"), ValueError, "non-finite scores"),
], ids=["numpy", "scalar", "two_columns", "integer", "nan"])
def test_bad_user_scalariser_raises_a_clear_error(lm, bad, error, match):
    for cls in (A.TextAblation, A.TextGradientXActivation):
        with pytest.raises(error, match=match):
            cls(lm, scalariser=bad).explain(PROMPTS[0], TARGET)


# -- aggregation of tokens into units -------------------------------------------------------------
def test_gradient_units_aggregate_their_tokens(lm):
    prompt = PROMPTS[0]
    tok = A.TextIntegratedGradients(lm, per_token=True).explain(prompt, TARGET)
    how = {"sum": np.sum, "mean": np.mean, "max": np.max,
           "absmax": lambda v: v[np.argmax(np.abs(v))]}
    for name, fn in how.items():
        ex = A.TextIntegratedGradients(lm, level="sentence", aggregate=name, per_token=True).explain(
            prompt, TARGET)
        assert len(ex.units) == 4 and ex.params["aggregate"] == name
        expected = [fn(tok.attributions[list(t)]) for t in ex.unit_tokens]
        np.testing.assert_allclose(ex.attributions, expected, rtol=1e-12, atol=1e-15)
        rows = [[fn(tok.token_attributions[j, list(t)]) for t in ex.unit_tokens] for j in range(3)]
        np.testing.assert_allclose(ex.token_attributions, rows, rtol=1e-12, atol=1e-15)
        # completeness is the token attributions' whatever the aggregation
        assert ex.convergence_delta == pytest.approx(tok.convergence_delta, abs=1e-12)
    assert abs(how["absmax"](np.array([0.5, -2.0, 1.0]))) == 2.0
    with pytest.raises(ValueError, match="aggregate must be one of 'sum', 'mean', 'max', 'absmax'"):
        A.TextGradientXActivation(lm, aggregate="median").explain(prompt, TARGET)
    with pytest.raises(TypeError, match="'aggregate'"):  # perturbation explainers remove units whole
        A.TextAblation(lm, aggregate="mean")


# -- span and phrase units ----------------------------------------------------------------------------
def _encoding(text, offsets):
    return Encoding(text, torch.arange(len(offsets)), [text[s:e] for s, e in offsets], offsets)


BPE = _encoding("Hello world, New York!  ok",  # GPT-2 style: tokens carry their leading space
                [(0, 5), (5, 11), (11, 12), (12, 16), (16, 21), (21, 22), (22, 23), (23, 26)])


def test_segment_spans_units_and_gaps():
    units = segment_spans(BPE, ["New York"])
    assert [(u.text, u.tokens, u.level) for u in units] == [
        ("Hello", (0,), "token"), ("world", (1,), "token"), (",", (2,), "token"),
        ("New York", (3, 4), "span"), ("!", (5,), "token"),
        ("ok", (6, 7), "token")]  # a whitespace token joins the next unit
    words = segment_spans(BPE, [(6, 11), "York"], level="word")
    assert [(u.text, u.tokens, u.level) for u in words] == [
        ("Hello", (0,), "word"), ("world", (1,), "span"), (",", (2,), "word"), ("New", (3,), "word"),
        ("York", (4,), "span"), ("!", (5,), "word"), ("ok", (6, 7), "word")]
    whole = segment_spans(BPE, ["Hello world, New York!"], level="sentence")
    assert [(u.text, u.level) for u in whole] == [("Hello world, New York!", "span"), ("ok", "sentence")]
    for us in (units, words, whole):  # a partition of the tokens, in text order
        assert sorted(t for u in us for t in u.tokens) == list(range(8))
        assert all(BPE.text[u.start : u.end] == u.text for u in us)
    # no spans but the level's own: the level's units
    same = segment_spans(BPE, [(0, 5)], level="word")
    assert [u.tokens for u in same] == [u.tokens for u in segment(BPE, "word")]


@pytest.mark.parametrize("spans, error, match", [
    ("New York", TypeError, "wrap one phrase in a list"),
    ([], ValueError, "at least one span"),
    ([(3, 40)], ValueError, r"0 <= start < end <= 26"),
    ([(5, 5)], ValueError, r"0 <= start < end"),
    ([(1.0, 5)], TypeError, "a \\(start, end\\) pair of ints or a phrase"),
    (["Boston"], ValueError, "phrase 'Boston' is not in the prompt"),
    (["o"], ValueError, r"phrase 'o' occurs 4 times in the prompt \(at characters \[4, 7, 18, 24\]\)"),
    ([(0, 11), "world,"], ValueError,
     r"spans \(0, 11\) \('Hello world'\) and \(6, 12\) \('world,'\) overlap"),
    (["Hel"], ValueError, r"cuts token 0 \('Hello', characters 0..5\)"),
    ([(22, 23)], ValueError, "holds only whitespace"),
], ids=["a_string", "empty", "out_of_range", "empty_span", "float", "missing", "repeated", "overlap",
        "cuts_a_token", "whitespace"])
def test_segment_spans_errors(spans, error, match):
    with pytest.raises(error, match=match):
        segment_spans(BPE, spans)


def test_explain_with_phrases(lm):
    prompt = PROMPTS[0]  # "red hill cat . the key is a . dog green sun green . so the answer is"
    ex = A.TextKernelShap(lm, n_samples="all", level="sentence").explain(
        prompt, ANSWERS[0], spans=["the key is a", "so the answer is"])
    assert ex.level == "span"
    assert ex.units == ["red hill cat .", "the key is a", ".", "dog green sun green .", "so the answer is"]
    assert ex.params["unit_levels"] == ["sentence", "span", "sentence", "sentence", "span"]
    assert int(np.argmax(ex.attributions)) == 1  # the phrase holding the key
    assert abs(ex.convergence_delta) < 1e-6  # exact Shapley values over the 6 units
    # ablation of a phrase is the drop when all its tokens become the baseline token
    start = prompt.index("the key is a")
    ab = A.TextAblation(lm).explain(prompt, ANSWERS[0], spans=[(start, start + 12)])
    ids = lm.encode(prompt).ids
    key = ab.units.index("the key is a")
    rows = torch.stack([ids, ids.clone()])
    rows[1, list(ab.unit_tokens[key])] = lm.tokenizer.pad_token_id
    lp = _token_logprobs(lm, rows, lm.token_ids(ANSWERS[0]))[:, 0]
    assert ab.attributions[key] == pytest.approx(lp[0] - lp[1], abs=1e-5)
    assert len(ab.units) == len(ids) - 4 + 1  # the other tokens stay token units
    with pytest.raises(ValueError, match="phrase 'the key is z' is not in the prompt"):
        A.TextAblation(lm).explain(prompt, ANSWERS[0], spans=["the key is z"])


# -- integrated gradients' completeness warning ----------------------------------------------------------
def test_integrated_gradients_warns_and_names_the_steps_that_fix_it(lm):
    # the case: a contrastive score whose completeness error at 50 steps is ~2.5 of ~13
    prompts, answers = make_key_prompts(12, random_state=0)
    prompt, answer, other = prompts[11], answers[11], " d"
    ig = A.TextIntegratedGradients(lm, scalariser="contrastive")
    with pytest.warns(CompletenessWarning, match=r"completeness error 2\.\d+ is 1\d\.\d% of the score "
                      r"change f\(x\) - f\(baseline\) = 13\.\d at n_steps=50") as caught:
        ex = ig.explain(prompt, answer, contrast=other)
    gap = ex.score - ex.params["baseline_score"]
    assert abs(ex.convergence_delta) > 0.05 * abs(gap)
    assert ex.params["model_rows"] > (50 + 2) * 2  # the doubled counts tried are counted
    steps = int(re.search(r"n_steps=(\d+) brings it to", str(caught[0].message)).group(1))
    assert 50 < steps <= 512
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompletenessWarning)
        fixed = A.TextIntegratedGradients(lm, scalariser="contrastive", n_steps=steps).explain(
            prompt, answer, contrast=other)
    assert abs(fixed.convergence_delta) <= 0.05 * abs(fixed.score - fixed.params["baseline_score"])
    assert fixed.params["model_rows"] == (steps + 2) * 2
    with pytest.warns(CompletenessWarning, match=r"at n_steps=1 \(more than 5%\)"):
        A.TextIntegratedGradients(lm, scalariser="contrastive", n_steps=1).explain(prompt, answer,
                                                                                  contrast=other)


def test_matrix_page_loads_offline_in_a_browser(lm, browser_page, tmp_path):
    ex = A.TextIntegratedGradients(lm, level="word", per_token=True).explain(PROMPTS[0], TARGET)
    view = browser_page.open(ex.to_html(tmp_path / "matrix.html"), wait_ms=500)
    traces = view.evaluate("[...document.querySelectorAll('.js-plotly-plot')]"
                           ".map(g => g._fullData.map(t => [t.type, t.z.length, t.z[0].length]))")
    assert traces == [[["heatmap", 3, len(ex.units)]]]
    assert view.locator(".heatmaplayer image").count() == 1  # drawn, not only declared
    browser_page.screenshot("llm_token_matrix")
    assert browser_page.errors == [] and browser_page.network() == []
