"""Logit lens, activation patching and linear probes on the tiny key-task GPT-2 (and a LLaMA)."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import xai_suite as xs
import xai_suite_llm.lens as lens_mod  # importing the modules registers their entries
import xai_suite_llm.patching as patching_mod
import xai_suite_llm.probing as probing_mod
from xai_suite.base import clone
from xai_suite_llm import KEY_POSITION, LanguageModel, make_key_prompts, make_tiny_llama, make_tiny_tokenizer

LogitLens = lens_mod.LogitLens
ActivationPatching = patching_mod.ActivationPatching
LinearProbe = probing_mod.LinearProbe
patch_all = patching_mod.patch_all


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_llama():
    """An untrained 2-layer LLaMA from a config: the second layout (exactness needs no training)."""
    tok = make_tiny_tokenizer()
    model = make_tiny_llama(len(tok), n_embd=32, n_kv_head=4, n_positions=64, random_state=0)
    return LanguageModel(model, tok, device="cpu")


def key_pair(key="c", other="d", random_state=3):
    """A clean key-task prompt with key ``key`` and the same prompt with key ``other``."""
    prompt = make_key_prompts(1, random_state=random_state)[0][0].split()
    prompt[KEY_POSITION] = key
    clean = " ".join(prompt)
    prompt[KEY_POSITION] = other
    return clean, " ".join(prompt)


def model_probs(lm, prompt):
    with torch.no_grad():
        return torch.softmax(lm.logits(lm.encode(prompt).ids[None])[0].float(), -1).numpy()


# -- registry --------------------------------------------------------------------------------
def test_entries_are_listed_for_text():
    df = xs.list_explainers(modality="text")
    rows = df.set_index("qualified_name").loc[
        ["native:logit_lens", "native:activation_patching", "native:linear_probe"]]
    assert set(rows.family) == {"mechanistic"}
    assert set(rows.model_kinds) == {"hf_causal_lm"}


def test_create_by_name_and_clone(key_lm):
    ex = xs.create_explainer("logit_lens", key_lm, top_k=3)
    assert isinstance(ex, LogitLens) and ex.get_params() == {"top_k": 3, "include_embeddings": True,
                                                     "site": "resid_post"}
    probe = clone(LinearProbe(key_lm, cv=3, random_state=1))
    assert probe.get_params()["cv"] == 3 and probe.model is key_lm
    with pytest.raises(TypeError, match="unknown parameter"):
        xs.create_explainer("native:activation_patching", key_lm, site="resid_pre")


@pytest.mark.parametrize("cls", [LogitLens, ActivationPatching, LinearProbe])
def test_model_must_be_a_language_model(key_lm, cls):
    args = {LogitLens: ("a . b",), ActivationPatching: ("a b", "a c", " a", " b"),
            LinearProbe: (["a b", "a c"], [0, 1])}[cls]
    with pytest.raises(TypeError, match="LanguageModel"):
        cls(key_lm.model).explain(*args)


# -- logit lens ------------------------------------------------------------------------------
def test_lens_last_layer_is_the_model_output(key_lm):
    prompt = make_key_prompts(1, random_state=11)[0][0]
    ref = model_probs(key_lm, prompt)  # (T, V)
    lens = LogitLens(key_lm, top_k=4)
    full = lens.distribution(prompt, key_lm.n_layers - 1)
    np.testing.assert_allclose(full, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(lens.distribution(prompt, "embed").sum(-1), 1.0, atol=1e-5)
    for target in (" a", " c", " the", " ."):
        res = lens.explain(prompt, target)
        tid = key_lm.tokenizer(target, add_special_tokens=False)["input_ids"][0]
        assert res.target_id == tid
        np.testing.assert_allclose(res.target_probs[-1], ref[:, tid], rtol=0, atol=1e-6)
    order = np.argsort(-ref, axis=-1, kind="stable")[:, :4]
    np.testing.assert_array_equal(res.top_ids[-1], order)
    np.testing.assert_allclose(res.top_probs[-1], np.take_along_axis(ref, order, -1), atol=1e-6)


def test_lens_key_task_table_and_plot(key_lm):
    import matplotlib.pyplot as plt

    prompts, answers = make_key_prompts(2, random_state=4)
    res = LogitLens(key_lm, top_k=3).explain(prompts[0], answers[0])
    n_tok = len(key_lm.encode(prompts[0]).ids)
    assert res.layers == ("embed", "0", "1")
    assert res.hook_names[0] == "blocks.0.hook_resid_pre"
    assert res.top_tokens.shape == res.top_probs.shape == (3, n_tok, 3)
    assert res.target_probs.shape == (3, n_tok)
    assert res.target_probs[-1, -1] > 0.9 and res.top_tokens[-1, -1, 0].strip() == answers[0].strip()
    # the last token ("is") embeds alike in every prompt: the embedding layer cannot know the key
    other = LogitLens(key_lm, top_k=3).explain(prompts[1], answers[1])
    assert answers[1] != answers[0] and other.top_tokens[-1, -1, 0].strip() == answers[1].strip()
    np.testing.assert_array_equal(other.top_probs[0, -1], res.top_probs[0, -1])
    auto = LogitLens(key_lm, top_k=3, include_embeddings=False).explain(prompts[0])
    assert auto.target_id == res.target_id and auto.layers == ("0", "1")  # own prediction = answer
    df = res.to_frame()
    assert len(df) == 3 * n_tok and list(df.columns[:6]) == ["layer", "hook", "position", "token",
                                                              "target", "target_prob"]
    assert df.token.tolist()[:n_tok] == res.tokens
    ax = res.plot()
    assert len(ax.texts) == 3 * n_tok and ax.texts[-1].get_text() == answers[0].strip()
    plt.close(ax.figure)


def test_lens_second_layout(tiny_llama):
    prompt = make_key_prompts(1, random_state=0)[0][0]
    lens = LogitLens(tiny_llama, top_k=2)
    np.testing.assert_allclose(lens.distribution(prompt, "1"), model_probs(tiny_llama, prompt), atol=1e-6)
    res = lens.explain(prompt)
    assert res.target_id == int(model_probs(tiny_llama, prompt)[-1].argmax())


def test_lens_errors(key_lm):
    with pytest.raises(ValueError, match="top_k"):
        LogitLens(key_lm, top_k=0).explain("the key is c")
    with pytest.raises(ValueError, match="vocabulary"):
        LogitLens(key_lm, top_k=10_000).explain("the key is c")
    with pytest.raises(ValueError, match="layer must be one of"):
        LogitLens(key_lm).distribution("the key is c", 5)
    with pytest.raises(ValueError, match="non-empty"):
        LogitLens(key_lm).explain("   ")
    with pytest.raises(TypeError, match="continuation"):
        LogitLens(key_lm).explain("the key is c", 3)


# -- activation patching ---------------------------------------------------------------------
def test_patching_key_task(key_lm):
    import matplotlib.pyplot as plt

    clean, corrupted = key_pair("c", "d")
    res = ActivationPatching(key_lm).explain(clean, corrupted, " c", " d")
    assert res.clean_diff > 5 and res.corrupted_diff < -5  # the model copies each key
    pre = res.effects["resid_pre"]
    n_tok = pre.shape[1]
    assert pre.shape == (key_lm.n_layers, n_tok)
    assert abs(pre[0, KEY_POSITION] - 1) < 1e-5
    others = np.delete(np.arange(n_tok), KEY_POSITION)
    assert np.all(pre[0, others] == 0)  # identical activations: exactly the corrupted run
    for site in res.sites:  # positions before the key never see it, in any layer
        assert np.all(res.patched[site][:, :KEY_POSITION] == res.corrupted_diff)
    # after layer 0 the key has been moved to the last position (by layer 0's attention)
    assert int(np.argmax(pre[-1])) in (KEY_POSITION, n_tok - 1)
    assert pre[-1, -1] > 0.9 and res.effects["attn_out"][0, -1] > 0.9
    df = res.to_frame()
    assert len(df) == 3 * key_lm.n_layers * n_tok
    row = df[(df.site == "resid_pre") & (df.layer == 0) & (df.position == KEY_POSITION)].iloc[0]
    assert row.hook == "blocks.0.hook_resid_pre" and row.token == "c" and row.corrupted_token == "d"
    fig = res.plot()
    assert len(fig.axes) == 2 * len(res.sites)  # a heat map and its colour bar per site
    plt.close(fig)


def test_patch_all_restores_the_clean_run(key_lm):
    clean, corrupted = key_pair("c", "d")
    clean_logits = key_lm.run_with_hooks(key_lm.encode(clean).ids[None], {})
    corrupted_logits = key_lm.run_with_hooks(key_lm.encode(corrupted).ids[None], {})
    n = key_lm.n_layers
    for names in ([f"blocks.{layer}.hook_resid_post" for layer in range(n)],
                  [f"blocks.{layer}.hook_resid_pre" for layer in range(n)],
                  *([f"blocks.{layer}.hook_resid_pre"] for layer in range(n)),
                  ["hook_embed"]):
        torch.testing.assert_close(patch_all(key_lm, clean, corrupted, names), clean_logits,
                                   rtol=0, atol=1e-5)
    # attention and MLP outputs of every layer: the last position's stream is the clean one
    # (its embedding is the same), the key position's still holds the corrupted token
    sub = patch_all(key_lm, clean, corrupted, [f"blocks.{layer}.hook_{s}" for layer in range(n)
                                               for s in ("attn_out", "mlp_out")])
    torch.testing.assert_close(sub[0, -1], clean_logits[0, -1], rtol=0, atol=1e-5)
    assert (sub[0, KEY_POSITION] - clean_logits[0, KEY_POSITION]).abs().max() > 1e-2
    assert (corrupted_logits[0, -1] - clean_logits[0, -1]).abs().max() > 1
    with pytest.raises(ValueError, match="same shape"):
        patch_all(key_lm, clean, "the key is c", ["hook_embed"])


def test_patching_is_batch_size_invariant(key_lm):
    clean, corrupted = key_pair("a", "g", random_state=8)
    runs = [ActivationPatching(key_lm, sites=("resid_pre", "mlp_out", "resid_post"), batch_size=b)
            .explain(clean, corrupted, " a", " g") for b in ("auto", 1, 7)]
    assert runs[1].params["batch_size_used"] == 1
    for other in runs[1:]:
        for site in runs[0].sites:
            np.testing.assert_allclose(other.patched[site], runs[0].patched[site], rtol=0, atol=1e-5)
    # patching the last layer's output at the last position gives the clean answer back
    assert abs(runs[0].effects["resid_post"][-1, -1] - 1) < 1e-5


def test_patching_second_layout(tiny_llama):
    clean, corrupted = key_pair("c", "d", random_state=0)
    res = ActivationPatching(tiny_llama, sites=("resid_pre", "attn_out", "mlp_out", "resid_post"),
                             batch_size=5).explain(clean, corrupted, " c", " d")
    assert abs(res.patched["resid_pre"][0, KEY_POSITION] - res.clean_diff) < 1e-5
    others = np.delete(np.arange(res.patched["resid_pre"].shape[1]), KEY_POSITION)
    assert np.all(res.patched["resid_pre"][0, others] == res.corrupted_diff)
    assert abs(res.patched["resid_post"][-1, -1] - res.clean_diff) < 1e-5
    clean_logits = tiny_llama.run_with_hooks(tiny_llama.encode(clean).ids[None], {})
    for names in (["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"], ["blocks.1.hook_resid_post"]):
        torch.testing.assert_close(patch_all(tiny_llama, clean, corrupted, names), clean_logits,
                                   rtol=0, atol=1e-5)


def test_patching_errors(key_lm):
    clean, corrupted = key_pair("c", "d")
    ap = ActivationPatching(key_lm)
    with pytest.raises(ValueError, match="same number of tokens"):
        ap.explain(clean, corrupted + " so", " c", " d")
    with pytest.raises(ValueError, match="same token"):
        ap.explain(clean, corrupted, " c", " c")
    with pytest.raises(ValueError, match="undefined"):
        ap.explain(clean, clean, " c", " d")  # identical prompts: no effect to normalise
    with pytest.raises(ValueError, match="sites must be"):
        ActivationPatching(key_lm, sites=("resid_pre", "attn")).explain(clean, corrupted, " c", " d")
    with pytest.raises(ValueError, match="batch_size"):
        ActivationPatching(key_lm, batch_size=0).explain(clean, corrupted, " c", " d")


# -- linear probes ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def key_data():
    prompts, answers = make_key_prompts(200, random_state=5)
    keys = np.array(["abcdefgh".index(a.strip()) for a in answers])
    return prompts, (keys < 4).astype(int)  # the planted feature: key in a..d


def test_probe_recovers_the_key_feature(key_lm, key_data):
    import matplotlib.pyplot as plt

    prompts, y = key_data
    res = LinearProbe(key_lm, random_state=0).explain(prompts, y)
    df = res.to_frame().set_index("layer")
    assert list(df.columns) == ["hook", "accuracy", "low", "high", "control_accuracy", "control_low",
                                "control_high", "selectivity"]
    top = df.loc[str(key_lm.n_layers - 1)]
    assert top.accuracy >= 0.9 and top.control_accuracy <= 0.7 and top.selectivity >= 0.3
    assert top.low <= top.accuracy <= top.high
    # the last token ("is") has the same embedding in every prompt: nothing to probe there
    emb = df.loc["embed"]
    assert abs(emb.accuracy - res.chance) <= 0.1 and abs(emb.selectivity) <= 0.1
    # at the key's own position the embedding already holds it
    at_key = LinearProbe(key_lm, position=KEY_POSITION, control=None, random_state=0).explain(prompts, y)
    assert at_key.accuracy[0] >= 0.95 and at_key.selectivity is None
    assert "control_accuracy" not in at_key.to_frame()
    ax = res.plot()
    assert len(ax.lines) >= 1
    plt.close(ax.figure)


def test_probe_repeatable_and_batch_size_invariant(key_lm, key_data):
    prompts, y = key_data[0][:60], key_data[1][:60]
    a = LinearProbe(key_lm, cv=3, random_state=7).explain(prompts, y).to_frame()
    b = LinearProbe(key_lm, cv=3, random_state=7, batch_size=7).explain(prompts, y).to_frame()
    np.testing.assert_allclose(a.select_dtypes("number"), b.select_dtypes("number"))
    f1 = LinearProbe(key_lm, batch_size=1).features(prompts)
    f2 = LinearProbe(key_lm).features(prompts)
    for h in f1:
        np.testing.assert_allclose(f1[h], f2[h], rtol=0, atol=1e-6)


def test_probe_last_token_of_prompts_of_different_lengths(key_lm):
    prompts = ["the key is c", "red cat . the key is a . so the answer is", "so the answer"]
    feats = LinearProbe(key_lm, site="mlp_out").features(prompts)
    assert list(feats) == ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"]
    for i, p in enumerate(prompts):
        _, cache = key_lm.run_with_cache(key_lm.encode(p).ids[None], ["blocks.1.hook_mlp_out"])
        np.testing.assert_allclose(feats["blocks.1.hook_mlp_out"][i], cache["blocks.1.hook_mlp_out"][0, -1],
                                   rtol=0, atol=1e-6)


def test_probe_errors(key_lm, key_data):
    prompts, y = key_data[0][:20], key_data[1][:20]
    with pytest.raises(ValueError, match="one entry per prompt"):
        LinearProbe(key_lm).explain(prompts, y[:-1])
    with pytest.raises(ValueError, match="one class"):
        LinearProbe(key_lm).explain(prompts, np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match="out of range"):
        LinearProbe(key_lm, position=40).explain(prompts, y)
    with pytest.raises(ValueError, match="one token length"):
        LinearProbe(key_lm, position=0).explain([*prompts[:-1], "the key is c"], y)
    with pytest.raises(ValueError, match="at least cv"):
        LinearProbe(key_lm, cv=5).explain(prompts, np.r_[np.ones(17, int), np.zeros(3, int)])
    with pytest.raises(TypeError, match="int class labels"):
        LinearProbe(key_lm).explain(prompts, y.astype(float))
    with pytest.raises(ValueError, match="cv must be"):
        LinearProbe(key_lm, cv=1).explain(prompts, y)
    with pytest.raises(ValueError, match="control"):
        LinearProbe(key_lm, control="shuffle").explain(prompts, y)
    with pytest.raises(ValueError, match="site"):
        LinearProbe(key_lm, site="resid").explain(prompts, y)
    with pytest.raises(TypeError, match="sequence"):
        LinearProbe(key_lm).explain("the key is c", [0])
