"""Token/word/sentence attribution of LLM continuations (xai_suite_llm.attribution)."""

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import xai_suite as xs
import xai_suite_llm.attribution as A  # registers the text entries
from xai_suite_llm import (
    KEY_POSITION,
    LanguageModel,
    make_key_prompts,
    make_tiny_gpt2,
    make_tiny_llama,
    make_tiny_tokenizer,
)
from xai_suite_llm.segments import refine, segment

PROMPTS, ANSWERS = make_key_prompts(3, random_state=123)
OTHER = [" a" if a != " a" else " b" for a in ANSWERS]
FAST = {  # small budgets: every method runs in well under a second per prompt
    A.TextAblation: {},
    A.TextShapleySampling: {"n_samples": 10, "random_state": 0},
    A.TextKernelShap: {"n_samples": 300, "random_state": 0},
    A.TextLime: {"n_samples": 300, "random_state": 0},
    A.TextIntegratedGradients: {},
    A.TextGradientXActivation: {},
}
LOCALISING = [c for c in FAST if c is not A.TextGradientXActivation]
NAMES = ["text_ablation", "text_shapley_sampling", "text_kernel_shap", "text_lime",
         "text_integrated_gradients", "text_gradient_x_activation"]


@pytest.fixture(scope="module")
def lm(key_lm):
    """The key-task GPT-2 (trained with corrupted fillers, so the answer depends on the key alone)."""
    return key_lm


pytestmark = pytest.mark.usefixtures("one_thread")


def _logprob(lm, prompt_ids, target_ids):
    """Independent reference: log p(target | prompt) by teacher forcing, float64."""
    seq = torch.cat([prompt_ids, target_ids])[None]
    with torch.no_grad():
        logp = lm.logits(seq)[0].double().log_softmax(-1)
    t = len(prompt_ids)
    return sum(float(logp[t - 1 + j, int(target_ids[j])]) for j in range(len(target_ids)))


# -- units ---------------------------------------------------------------------------------------
def _bpe_lm():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["Hello, world! This is it.", "New line here.", "the key is c", "caf\u00e9 na\u00efve"] * 5
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    return LanguageModel(make_tiny_gpt2(len(fast), n_embd=16, n_head=2, n_positions=64), fast,
                         device="cpu")


def _check_partition(units, n_tokens):
    toks = [t for u in units for t in u.tokens]
    assert sorted(toks) == list(range(n_tokens))  # every token in exactly one unit
    ends = [0] + [u.end for u in units]
    assert all(u.start >= e for u, e in zip(units, ends, strict=False))  # in order, disjoint


def test_units_word_level_tokenizer():
    tok = make_tiny_tokenizer()
    lm = LanguageModel(make_tiny_gpt2(len(tok), n_embd=16, n_head=2), tok, device="cpu")
    enc = lm.encode(PROMPTS[0])
    words = segment(enc, "word")
    assert [u.text for u in words] == PROMPTS[0].split()
    sentences = segment(enc, "sentence")
    assert [u.text for u in sentences] == [
        s.strip() + (" ." if i < 3 else "") for i, s in enumerate(PROMPTS[0].split(" ."))]
    assert sentences[1].tokens == (4, 5, 6, 7, 8) and KEY_POSITION in sentences[1].tokens
    for level in ("token", "word", "sentence"):
        _check_partition(segment(enc, level), len(enc.ids))


def test_units_byte_level_bpe():
    lm = _bpe_lm()
    text = "Hello, world! This is it.\nNew line here. caf\u00e9 \U0001F600."
    enc = lm.encode(text)
    assert any(t.startswith(" ") for t in enc.tokens)  # GPT-2 style: leading spaces in tokens
    words = segment(enc, "word")
    assert [u.text for u in words] == text.split()  # "Hello," and "world!" keep their punctuation
    sentences = segment(enc, "sentence")
    assert [u.text for u in sentences] == ["Hello, world!", "This is it.", "New line here.",
                                           "caf\u00e9 \U0001F600."]
    for level in ("token", "word", "sentence"):
        units = segment(enc, level)
        _check_partition(units, len(enc.ids))
        for u in units:
            assert u.text == text[u.start:u.end]


def test_refine_keeps_other_units_whole():
    tok = make_tiny_tokenizer()
    lm = LanguageModel(make_tiny_gpt2(len(tok), n_embd=16, n_head=2), tok, device="cpu")
    enc = lm.encode(PROMPTS[0])
    sentences = segment(enc, "sentence")
    mixed = refine(sentences, [1], segment(enc, "word"))
    expected = [sentences[0].text, *sentences[1].text.split(), sentences[2].text, sentences[3].text]
    assert [u.text for u in mixed] == expected
    assert [u.level for u in mixed] == ["sentence"] + ["word"] * 5 + ["sentence"] * 2


# -- registry ------------------------------------------------------------------------------------
def test_registered_as_text_explainers(lm):
    df = xs.list_explainers(modality="text")
    names = set(df.qualified_name)
    assert {f"native:{n}" for n in NAMES} <= names
    fam = dict(zip(df.qualified_name, df.family, strict=True))
    assert fam["native:text_lime"] == "surrogate" and fam["native:text_kernel_shap"] == "perturbation"
    assert fam["native:text_integrated_gradients"] == "gradient"
    ex = xs.create_explainer("native:text_ablation", lm, level="word")
    assert ex.get_params()["level"] == "word"
    with pytest.raises(TypeError, match="unknown parameter"):
        xs.create_explainer("native:text_ablation", lm, levle="word")
    one_call = xs.explain(lm, PROMPTS[0], method="text_ablation", target=ANSWERS[0], level="word")
    np.testing.assert_array_equal(one_call.attributions, ex.explain(PROMPTS[0], ANSWERS[0]).attributions)
    with pytest.raises(TypeError, match="learns nothing from data"):
        xs.explain(lm, PROMPTS[0], method="text_ablation", fit_data=np.zeros((2, 3)))


# -- the key token is found ----------------------------------------------------------------------
@pytest.mark.parametrize("cls", LOCALISING, ids=lambda c: c.__name__)
def test_key_token_word_and_sentence_get_the_largest_attribution(lm, cls):
    for prompt, answer in zip(PROMPTS, ANSWERS, strict=True):
        tok = cls(lm, **FAST[cls]).explain(prompt, answer)
        assert tok.attributions.shape == (18,)
        assert int(np.argmax(tok.attributions)) == KEY_POSITION, tok.attributions
        word = cls(lm, level="word", **FAST[cls]).explain(prompt, answer)
        assert word.units[int(np.argmax(word.attributions))] == answer.strip()
        sent = cls(lm, level="sentence", **FAST[cls]).explain(prompt, answer)
        assert len(sent.units) == 4 and int(np.argmax(sent.attributions)) == 1, sent.attributions
        assert tok.score == pytest.approx(_logprob(lm, lm.encode(prompt).ids, lm.token_ids(answer)),
                                          abs=1e-5)


def test_gradient_x_activation_finds_the_key_by_magnitude_on_the_contrast(lm):
    # a local linearisation: its sign is unreliable on this saturated model (the key's signed
    # value is the largest on 1 of 8 prompts measured), its magnitude on the contrast between
    # the answer and another key is not (8 of 8)
    prompts, answers = make_key_prompts(8, random_state=11)
    ex = A.TextGradientXActivation(lm, scalariser="contrastive")
    for prompt, answer in zip(prompts, answers, strict=True):
        other = " a" if answer != " a" else " b"
        a = ex.explain(prompt, answer, contrast=other).attributions
        assert int(np.argmax(np.abs(a))) == KEY_POSITION, a


def test_gradient_x_activation_is_one_step_ig_from_zeros(lm):
    # GxA has no reference: on this saturated model (p = 0.998) its logprob gradients are
    # ~1e-5 and it does not single out the key; what holds exactly is its definition
    gxa = A.TextGradientXActivation(lm).explain(PROMPTS[0], ANSWERS[0])
    ig1 = A.TextIntegratedGradients(lm, baseline="zero_embedding", n_steps=1,
                                    quadrature="riemann_right").explain(PROMPTS[0], ANSWERS[0])
    # (float32 sums of a 1-row and a 3-row call: equal to 1e-4 of the largest value)
    np.testing.assert_allclose(gxa.attributions, ig1.attributions, rtol=0,
                               atol=1e-4 * np.abs(gxa.attributions).max())
    assert gxa.convergence_delta is None and ig1.convergence_delta is not None


def test_hierarchical_refinement_ends_at_the_key_with_fewer_rows(lm):
    for prompt, answer in zip(PROMPTS, ANSWERS, strict=True):
        ex = A.TextShapleySampling(lm, n_samples=10, random_state=0)
        levels = ex.explain_hierarchical(prompt, answer)
        assert [r.level for r in levels] == ["sentence", "word", "token"]
        sentence, word, token = levels
        assert int(np.argmax(sentence.attributions)) == 1
        # the key sentence is split into its 5 words; the 3 other sentences stay whole
        assert word.units == [sentence.units[0], *sentence.units[1].split(), *sentence.units[2:]]
        assert word.params["unit_levels"].count("sentence") == 3
        assert token.units[int(np.argmax(token.attributions))] == answer.strip()
        assert token.params["model_rows"] == 0  # a one-token word refines into itself
        hier_rows = sum(r.params["model_rows"] for r in levels)
        flat = ex.explain(prompt, answer)
        assert hier_rows < flat.params["model_rows"] / 2, (hier_rows, flat.params["model_rows"])
    # KernelSHAP, every coalition enumerated: 14 + 254 coalitions instead of 2^18 - 2
    ks = A.TextKernelShap(lm, n_samples="all").explain_hierarchical(PROMPTS[0], ANSWERS[0],
                                                                    levels=("sentence", "token"))
    assert ks[-1].units[int(np.argmax(ks[-1].attributions))] == ANSWERS[0].strip()
    assert sum(r.params["model_rows"] for r in ks) <= 14 + 254 + 2 < 2**18 - 2
    assert all(r.params["exact"] for r in ks)


# -- agreement with Captum -----------------------------------------------------------------------
@pytest.mark.parametrize("multi", [False, True], ids=["one_token", "three_tokens"])
def test_ablation_matches_captum_feature_ablation(lm, multi):
    from captum.attr import FeatureAblation, LLMAttribution, TextTokenInput

    prompt = PROMPTS[1]
    target = ANSWERS[1] + (" . so" if multi else "")
    inp = TextTokenInput(prompt, lm.tokenizer, baselines=lm.tokenizer.pad_token_id)
    ref = LLMAttribution(FeatureAblation(lm.model), lm.tokenizer).attribute(
        inp, target=target, forward_in_tokens=not multi)  # captum's cached decoding fails on 5.x
    ours = A.TextAblation(lm).explain(prompt, target)
    np.testing.assert_allclose(ours.attributions, ref.seq_attr.numpy(), atol=1e-5)
    assert np.abs(ours.attributions).max() > 1.0


def _with_call_sizes(lm, explainer, prompt, target):
    """``explainer.explain(prompt, target)`` and the rows of each model call it made."""
    calls = []
    handle = lm.model.register_forward_hook(lambda _m, _args, out: calls.append(len(out.logits)))
    try:
        return explainer.explain(prompt, target), calls
    finally:
        handle.remove()


def test_ablation_runs_the_full_empty_and_ablated_prompts_in_one_call(lm):
    """One model call for all 2 + U prompts (a batch size that holds them: no probe), and the
    values equal those of a call that runs the full and empty prompts apart (batch_size=1)."""
    ours, calls = _with_call_sizes(lm, A.TextAblation(lm, batch_size=1000), PROMPTS[1], ANSWERS[1])
    n_units = len(ours.units)
    assert calls == [n_units + 2], calls
    one_by_one = A.TextAblation(lm, batch_size=1).explain(PROMPTS[1], ANSWERS[1])
    np.testing.assert_allclose(ours.attributions, one_by_one.attributions, atol=1e-5)


def test_integrated_gradients_score_the_prompt_and_baseline_in_the_path_call(lm):
    """One call (a batch size that holds them: no probe) for the 50 path points and the two end points;
    the same attributions and scores in chunks of 7 (the first takes 5 points and the ends)."""
    ours, calls = _with_call_sizes(lm, A.TextIntegratedGradients(lm, batch_size=1000), PROMPTS[1], ANSWERS[1])
    assert calls == [52], calls
    chunked = A.TextIntegratedGradients(lm, batch_size=7).explain(PROMPTS[1], ANSWERS[1])
    np.testing.assert_allclose(ours.attributions, chunked.attributions, atol=1e-5)
    assert ours.score == pytest.approx(chunked.score, abs=1e-5)
    assert ours.params["baseline_score"] == pytest.approx(chunked.params["baseline_score"], abs=1e-5)
    reference = _logprob(lm, lm.encode(PROMPTS[1]).ids, torch.as_tensor(ours.target_ids))
    assert ours.score == pytest.approx(reference, abs=1e-5)


@pytest.mark.parametrize("multi", [False, True], ids=["one_token", "three_tokens"])
def test_integrated_gradients_match_captum_layer_ig(lm, multi):
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    prompt = PROMPTS[2]
    target = ANSWERS[2] + (" . so" if multi else "")
    inp = TextTokenInput(prompt, lm.tokenizer, baselines=lm.tokenizer.pad_token_id)
    ref = LLMGradientAttribution(LayerIntegratedGradients(lm.model, lm.embed), lm.tokenizer)
    ref = ref.attribute(inp, target=target, n_steps=50, method="gausslegendre")
    ours = A.TextIntegratedGradients(lm, n_steps=50).explain(prompt, target)
    np.testing.assert_allclose(ours.attributions, ref.seq_attr.numpy(), atol=1e-4)
    # completeness: sum(attr) = f(x) - f(baseline prompt), up to the quadrature's error
    gap = ours.score - ours.params["baseline_score"]
    assert abs(ours.convergence_delta) < 0.01 * abs(gap)
    assert abs(ours.attributions.sum() - gap - ours.convergence_delta) < 1e-9


def test_gradient_x_activation_matches_captum(lm):
    from captum.attr import LayerGradientXActivation, LLMGradientAttribution, TextTokenInput

    inp = TextTokenInput(PROMPTS[0], lm.tokenizer)
    ref = LLMGradientAttribution(LayerGradientXActivation(lm.model, lm.embed), lm.tokenizer)
    ref = ref.attribute(inp, target=ANSWERS[0])
    ours = A.TextGradientXActivation(lm).explain(PROMPTS[0], ANSWERS[0])
    scale = np.abs(ours.attributions).max()
    np.testing.assert_allclose(ours.attributions, ref.seq_attr.numpy(), atol=1e-4 * scale)


# -- Shapley values ------------------------------------------------------------------------------
def _brute_force_shapley(lm, prompt, target, baseline_id):
    ids, tgt = lm.encode(prompt).ids, lm.token_ids(target)
    n = len(ids)
    subsets = np.array(list(itertools.product([False, True], repeat=n)))
    rows = torch.where(torch.as_tensor(subsets), ids, torch.full_like(ids, baseline_id))
    seq = torch.cat([rows, tgt.expand(len(rows), -1)], dim=1)
    with torch.no_grad():
        logp = lm.logits(seq).double().log_softmax(-1)[:, n - 1 :]
    v = sum(logp[:, j, int(tgt[j])] for j in range(len(tgt))).numpy()
    value = {tuple(s): x for s, x in zip(subsets.tolist(), v, strict=True)}
    phi = np.zeros(n)
    for s in subsets.tolist():
        k = sum(s)
        for i in range(n):
            if not s[i]:
                w = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
                phi[i] += w * (value[tuple([*s[:i], True, *s[i + 1:]])] - value[tuple(s)])
    return phi


def test_kernel_shap_all_coalitions_is_exact_and_sampling_converges(lm):
    prompt = " ".join(PROMPTS[0].split()[:9])  # "w w w . the key is k ." : 9 tokens, 512 subsets
    exact = _brute_force_shapley(lm, prompt, ANSWERS[0], lm.tokenizer.pad_token_id)
    ks = A.TextKernelShap(lm, n_samples="all").explain(prompt, ANSWERS[0])
    assert ks.params["exact"] and ks.params["n_samples_used"] == 2**9 - 2
    np.testing.assert_allclose(ks.attributions, exact, atol=1e-5)
    assert abs(ks.convergence_delta) < 1e-6
    assert int(np.argmax(exact)) == KEY_POSITION
    errors = []
    for n in (20, 2000):  # coalitions repeat, so 2000 permutations cost at most 512 rows
        sv = A.TextShapleySampling(lm, n_samples=n, random_state=1).explain(prompt, ANSWERS[0])
        errors.append(np.abs(sv.attributions - exact).max())
        assert abs(sv.convergence_delta) < 1e-6  # efficient for every permutation set
        assert sv.params["model_rows"] <= 2**9
    assert errors[1] < errors[0] and errors[1] < 0.02 * np.abs(exact).max(), errors


# -- conformance points --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [A.TextShapleySampling, A.TextKernelShap, A.TextLime],
                         ids=lambda c: c.__name__)
def test_random_state_repeatable(lm, cls):
    params = {**FAST[cls], "n_samples": 40 if cls is not A.TextKernelShap else 60}
    a = cls(lm, **{**params, "random_state": 3}).explain(PROMPTS[0], ANSWERS[0])
    b = cls(lm, **{**params, "random_state": 3}).explain(PROMPTS[0], ANSWERS[0])
    c = cls(lm, **{**params, "random_state": 4}).explain(PROMPTS[0], ANSWERS[0])
    np.testing.assert_array_equal(a.attributions, b.attributions)
    assert not np.allclose(a.attributions, c.attributions)


@pytest.mark.parametrize("cls", list(FAST), ids=lambda c: c.__name__)
def test_batch_size_invariance(lm, cls):
    params = {**FAST[cls], "scalariser": "contrastive"}
    if cls in (A.TextShapleySampling, A.TextKernelShap, A.TextLime):
        params["n_samples"] = 8 if cls is not A.TextKernelShap else 60
    a = cls(lm, batch_size=1, **params).explain(PROMPTS[0], ANSWERS[0], contrast=" b . so")
    b = cls(lm, batch_size=7, **params).explain(PROMPTS[0], ANSWERS[0], contrast=" b . so")
    c = cls(lm, **params).explain(PROMPTS[0], ANSWERS[0], contrast=" b . so")
    assert a.params["batch_size_used"] == 1 and b.params["batch_size_used"] == 7
    np.testing.assert_allclose(a.attributions, b.attributions, atol=1e-6)
    np.testing.assert_allclose(a.attributions, c.attributions, atol=1e-6)
    assert a.score == pytest.approx(b.score, abs=1e-6)


# -- scalarisers and targets ---------------------------------------------------------------------
def test_prob_is_exp_logprob_and_contrastive_is_the_difference(lm):
    lp = A.TextAblation(lm).explain(PROMPTS[0], ANSWERS[0])
    p = A.TextAblation(lm, scalariser="prob").explain(PROMPTS[0], ANSWERS[0])
    assert p.score == pytest.approx(math.exp(lp.score), rel=1e-6)
    # ablation of prob: exp(f(x)) - exp(f(x without unit)), unit by unit
    np.testing.assert_allclose(p.attributions, np.exp(lp.score) - np.exp(lp.score - lp.attributions),
                               atol=1e-6)
    other = A.TextAblation(lm).explain(PROMPTS[0], OTHER[0])
    con = A.TextAblation(lm, scalariser="contrastive").explain(PROMPTS[0], ANSWERS[0], contrast=OTHER[0])
    assert con.score == pytest.approx(lp.score - other.score, abs=1e-5)
    np.testing.assert_allclose(con.attributions, lp.attributions - other.attributions, atol=1e-5)
    assert con.contrast == OTHER[0] and "contrast" not in con.params


@pytest.mark.parametrize("cls", [A.TextAblation, A.TextIntegratedGradients, A.TextKernelShap],
                         ids=lambda c: c.__name__)
def test_contrastive_answer_vs_another_key_points_at_the_key(lm, cls):
    for prompt, answer, other in zip(PROMPTS, ANSWERS, OTHER, strict=True):
        ex = cls(lm, scalariser="contrastive", **FAST[cls]).explain(prompt, answer, contrast=other)
        assert ex.score > 5  # the true key is far more likely than another one
        assert int(np.argmax(ex.attributions)) == KEY_POSITION, ex.attributions


def test_target_none_explains_the_greedy_continuation(lm):
    ex = A.TextAblation(lm).explain(PROMPTS[0])
    assert ex.target.strip() == ANSWERS[0].strip() and len(ex.target_ids) == 1
    two = A.TextIntegratedGradients(lm, max_new_tokens=2).explain(PROMPTS[0])
    assert len(two.target_ids) == 2
    ids = lm.generate(lm.encode(PROMPTS[0]).ids, 2)
    assert two.score == pytest.approx(_logprob(lm, lm.encode(PROMPTS[0]).ids, ids), abs=1e-5)


def test_result_frame_top_html_plot(lm):
    import matplotlib.pyplot as plt

    ex = A.TextAblation(lm, level="word").explain(PROMPTS[0], ANSWERS[0])
    df = ex.to_frame()
    assert list(df.columns) == ["unit", "start", "end", "tokens", "attribution"] and len(df) == 18
    assert ex.top(1).unit.tolist() == [ANSWERS[0].strip()]
    html = ex.html_fragment()
    assert "native:text_ablation" in html and "<span" in html
    ax = ex.plot()
    assert len(ax.patches) == 18
    plt.close("all")
    assert ex.params["baseline_token_id"] == 0 and ex.params["model_rows"] == 18 + 2


# -- errors --------------------------------------------------------------------------------------
def test_errors(lm):
    ab = A.TextAblation(lm)
    with pytest.raises(ValueError, match="non-empty string"):
        ab.explain("", ANSWERS[0])
    with pytest.raises(ValueError, match="non-empty string"):
        ab.explain("   ", ANSWERS[0])
    with pytest.raises(ValueError, match="level must be one of"):
        A.TextAblation(lm, level="paragraph").explain(PROMPTS[0], ANSWERS[0])
    with pytest.raises(ValueError, match="scalariser must be one of"):
        A.TextIntegratedGradients(lm, scalariser="logit").explain(PROMPTS[0], ANSWERS[0])
    with pytest.raises(ValueError, match="pass contrast="):
        A.TextAblation(lm, scalariser="contrastive").explain(PROMPTS[0], ANSWERS[0])
    with pytest.raises(ValueError, match="only used with scalariser='contrastive'"):
        ab.explain(PROMPTS[0], ANSWERS[0], contrast=OTHER[0])
    with pytest.raises(TypeError, match="LanguageModel"):
        A.TextAblation(lm.model).explain(PROMPTS[0], ANSWERS[0])
    with pytest.raises(ValueError, match="token 'zebra' is not a token of the tokenizer"):
        A.TextAblation(lm, baseline={"name": "token", "token": "zebra"}).explain(PROMPTS[0], ANSWERS[0])
    with pytest.raises(TypeError, match="'baseline_token' \\(did you mean 'baseline'\\?\\)"):
        xs.create_explainer("native:text_ablation", lm, baseline_token="[UNK]")
    with pytest.raises(TypeError, match="must be a text baseline \\(pad_token, token, unk_token"):
        A.TextAblation(lm, baseline="training_mean").explain(PROMPTS[0], ANSWERS[0])
    with pytest.raises(ValueError, match="'zero_embedding' replaces token embeddings"):
        A.TextAblation(lm, baseline="zero_embedding").explain(PROMPTS[0], ANSWERS[0])
    with pytest.raises(ValueError, match="continuation must be a non-empty string"):
        ab.explain(PROMPTS[0], "")
    with pytest.raises(ValueError, match="token ids must lie in"):
        ab.explain(PROMPTS[0], [10**6])
    with pytest.raises(ValueError, match="coarse to fine"):
        ab.explain_hierarchical(PROMPTS[0], ANSWERS[0], levels=("token", "sentence"))
    with pytest.raises(ValueError, match="top_k"):
        ab.explain_hierarchical(PROMPTS[0], ANSWERS[0], top_k=0)
    with pytest.raises(ValueError, match="batch_size"):
        A.TextAblation(lm, batch_size=0).explain(PROMPTS[0], ANSWERS[0])
    with pytest.raises(ValueError, match="quadrature"):
        A.TextIntegratedGradients(lm, quadrature="simpson").explain(PROMPTS[0], ANSWERS[0])
    with pytest.raises(ValueError, match="exceed the model's"):
        ab.explain(" ".join([PROMPTS[0]] * 2), ANSWERS[0])


# -- a second layout -----------------------------------------------------------------------------
def test_llama_layout_exactness():
    from captum.attr import (
        FeatureAblation,
        LayerIntegratedGradients,
        LLMAttribution,
        LLMGradientAttribution,
        TextTokenInput,
    )
    tok = make_tiny_tokenizer()
    lm = LanguageModel(make_tiny_llama(len(tok), n_embd=32, n_kv_head=4, n_positions=64, random_state=0),
                       tok, device="cpu")
    prompt = " ".join(PROMPTS[0].split()[:9])
    ks = A.TextKernelShap(lm, n_samples="all").explain(prompt, ANSWERS[0])
    ref = _brute_force_shapley(lm, prompt, ANSWERS[0], 0)
    np.testing.assert_allclose(ks.attributions, ref, atol=1e-5)
    inp = TextTokenInput(prompt, tok, baselines=0)
    ig = A.TextIntegratedGradients(lm).explain(prompt, ANSWERS[0])
    ref_ig = LLMGradientAttribution(LayerIntegratedGradients(lm.model, lm.embed), tok)
    np.testing.assert_allclose(ig.attributions, ref_ig.attribute(inp, target=ANSWERS[0]).seq_attr.numpy(),
                               atol=1e-5)
    fa = LLMAttribution(FeatureAblation(lm.model), tok).attribute(inp, target=ANSWERS[0])
    np.testing.assert_allclose(A.TextAblation(lm).explain(prompt, ANSWERS[0]).attributions,
                               fa.seq_attr.numpy(), atol=1e-5)


# -- faithfulness metrics over units -------------------------------------------------------------
def test_deletion_and_eraser_metrics_over_units(lm):
    """Text explanations take the removal metrics: units replaced by the baseline token."""
    from xai_suite.metrics import (
        comprehensiveness,
        deletion_auc,
        deletion_curve,
        insertion_curve,
        sufficiency,
    )
    from xai_suite.metrics.registry import compute_metric

    for level in ("token", "word", "sentence"):
        exp = A.TextAblation(lm, level=level).explain(PROMPTS[0], ANSWERS[0])
        fractions, dele = deletion_curve(exp, lm, n_steps=len(exp.units))
        _, ins = insertion_curve(exp, lm, n_steps=len(exp.units))
        assert dele.shape == ins.shape == (1, len(exp.units) + 1)
        # nothing removed: the score; everything removed: the all-baseline prompt's score
        np.testing.assert_allclose([dele[0, 0], ins[0, -1]], exp.score, rtol=1e-6)
        np.testing.assert_allclose([dele[0, -1], ins[0, 0]], exp.params["baseline_score"], rtol=1e-6)
        # ablation ranks units by their one-at-a-time drop: removing the first one is that drop
        np.testing.assert_allclose(exp.score - dele[0, 1], exp.attributions.max(), rtol=1e-6)
        auc = compute_metric("deletion_auc", exp, model=lm, n_steps=len(exp.units))
        np.testing.assert_allclose(auc, np.trapezoid(dele, fractions, axis=1))
        assert comprehensiveness(exp, model=lm)[0] > sufficiency(exp, model=lm)[0]
    # the key first: a faithful order drops faster than the reversed one
    exp = A.TextAblation(lm).explain(PROMPTS[1], ANSWERS[1])
    flipped = dataclasses.replace(exp, attributions=-exp.attributions)
    assert deletion_auc(exp, model=lm)[0] < deletion_auc(flipped, model=lm)[0]
    # another replacement token changes the curve; the same model is required
    other = deletion_curve(exp, lm, replacement="unk_token")[1]
    assert not np.allclose(other, deletion_curve(exp, lm)[1])
    # a replacement spec means what the same baseline means to an explainer
    unk = A.TextAblation(lm, baseline={"name": "token", "token": "[UNK]"}).explain(PROMPTS[1], ANSWERS[1])
    assert unk.params["baseline"] == {"name": "token", "token": "[UNK]"}
    np.testing.assert_allclose(other[0, -1], unk.params["baseline_score"], rtol=1e-6)
    np.testing.assert_allclose(deletion_curve(unk, lm)[1][0, -1], unk.params["baseline_score"], rtol=1e-6)
    with pytest.raises(ValueError, match="softmax applies to class outputs"):
        deletion_curve(exp, lm, softmax=True)
    tok = make_tiny_tokenizer()
    untrained = LanguageModel(make_tiny_gpt2(len(tok), random_state=1), tok, device="cpu")
    with pytest.raises(ValueError, match="pass the model that was explained"):
        deletion_curve(exp, untrained)
