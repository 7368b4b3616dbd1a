"""The logit lens on every site, with entropy and the target's rank, and the tuned lens
(xai_suite_llm.lens, xai_suite_llm.tuned_lens) on the tiny key-task GPT-2 (and a LLaMA)."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import xai_suite as xs
import xai_suite_llm.tuned_lens as tuned_mod
from xai_suite_llm import (
    LanguageModel,
    LogitLens,
    TunedLens,
    TunedLensExplainer,
    kl_to_final,
    make_key_prompts,
    make_tiny_gpt2,
    make_tiny_tokenizer,
)
from xai_suite_llm.html import logit_lens_figure

pytestmark = pytest.mark.usefixtures("one_thread")


def other_model(**gpt2):
    tok = make_tiny_tokenizer()
    return LanguageModel(make_tiny_gpt2(len(tok), random_state=1, **gpt2), tok, device="cpu")


def prompts(n, seed):
    return make_key_prompts(n, random_state=seed)[0]


def ragged(texts):
    """The texts cut to lengths 3, 4, ... words: batches of them need padding."""
    return [" ".join(t.split()[: 3 + i % 14]) for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def tuned(key_lm):
    """A tuned lens of the key model fitted on 200 training prompts (seed 0), about 1.5 s."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures start before the one_thread fixture
    try:
        return TunedLens.fit(key_lm, prompts(200, 0), n_steps=200, random_state=0)
    finally:
        torch.set_num_threads(prev)


def identity_lens(lm):
    n, d = lm.n_layers, lm.d_model
    return TunedLens(torch.eye(d).repeat(n, 1, 1), torch.zeros(n, d), tuned_mod.model_identity(lm))


# -- the logit lens on every site ---------------------------------------------------------------
def test_site_is_a_parameter_and_resid_post_the_default(key_lm):
    prompt = prompts(1, 5)[0]
    ex = xs.create_explainer("logit_lens", key_lm, top_k=3)
    assert ex.get_params() == {"top_k": 3, "include_embeddings": True, "site": "resid_post"}
    default, explicit = ex.explain(prompt), LogitLens(key_lm, top_k=3, site="resid_post").explain(prompt)
    np.testing.assert_array_equal(default.target_probs, explicit.target_probs)
    assert default.params["site"] == "resid_post" and default.lens == "logit"
    assert default.hook_names == ("blocks.0.hook_resid_pre", "blocks.0.hook_resid_post",
                                  "blocks.1.hook_resid_post")


def test_resid_pre_of_the_next_layer_is_resid_post_of_this_one(key_lm):
    prompt = prompts(1, 6)[0]
    pre = LogitLens(key_lm, top_k=4, site="resid_pre", include_embeddings=False).explain(prompt, " c")
    post = LogitLens(key_lm, top_k=4, include_embeddings=False).explain(prompt, " c")
    embed = LogitLens(key_lm, top_k=4).explain(prompt, " c")
    assert pre.hook_names == ("blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre")
    for name in ("target_probs", "entropy", "top_probs"):
        np.testing.assert_allclose(getattr(pre, name)[1:], getattr(post, name)[:-1], rtol=0, atol=1e-6)
        np.testing.assert_allclose(getattr(pre, name)[0], getattr(embed, name)[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(pre.target_ranks[1:], post.target_ranks[:-1])
    np.testing.assert_array_equal(pre.top_ids[1:], post.top_ids[:-1])


@pytest.mark.parametrize("site", ["attn_out", "mlp_out"])
def test_sublayer_sites_decode_what_the_sublayer_adds(key_lm, site):
    prompt = prompts(1, 7)[0]
    lens = LogitLens(key_lm, top_k=2, site=site)
    ids = key_lm.encode(prompt).ids[None]
    _, cache = key_lm.run_with_cache(ids, [f"blocks.{layer}.hook_{site}" for layer in range(2)])
    for layer in range(key_lm.n_layers):
        with torch.no_grad():
            h = cache[f"blocks.{layer}.hook_{site}"][0]
            ref = torch.softmax(key_lm.unembed(key_lm.final_norm(h)), -1)
        np.testing.assert_allclose(lens.distribution(prompt, layer), ref.numpy(), rtol=0, atol=1e-6)
    res = lens.explain(prompt)
    assert res.hook_names[1:] == tuple(f"blocks.{layer}.hook_{site}" for layer in range(2))
    assert res.params["site"] == site
    post = LogitLens(key_lm, top_k=2).explain(prompt, res.target)
    assert not np.allclose(res.target_probs[1:], post.target_probs[1:], atol=1e-3)  # another reading


def test_resid_mid_is_resid_pre_plus_what_attention_adds(key_lm):
    """The lens at resid_mid decodes resid_pre + attn_out of the same layer (GPT-2 layout)."""
    prompt = prompts(1, 8)[0]
    lens = LogitLens(key_lm, top_k=3, site="resid_mid", include_embeddings=False)
    ids = key_lm.encode(prompt).ids[None]
    names = [f"blocks.{layer}.hook_{site}" for layer in range(2) for site in ("resid_pre", "attn_out")]
    _, cache = key_lm.run_with_cache(ids, names)
    for layer in range(key_lm.n_layers):
        with torch.no_grad():
            h = cache[f"blocks.{layer}.hook_resid_pre"][0] + cache[f"blocks.{layer}.hook_attn_out"][0]
            ref = torch.softmax(key_lm.unembed(key_lm.final_norm(h)), -1)
        np.testing.assert_allclose(lens.distribution(prompt, layer), ref.numpy(), rtol=0, atol=1e-5)
    res = lens.explain(prompt, " c")
    assert res.hook_names == ("blocks.0.hook_resid_mid", "blocks.1.hook_resid_mid")
    assert res.target_ranks.shape == res.entropy.shape == res.target_probs.shape


def test_bad_sites_are_refused(key_lm):
    with pytest.raises(ValueError, match="site must be one of 'resid_pre', 'resid_mid'"):
        LogitLens(key_lm, site="resid").explain("the key is c")
    with pytest.raises(ValueError, match="include_embeddings=False"):
        LogitLens(key_lm, site="resid_pre").explain("the key is c")


def test_entropy_and_rank_agree_with_the_full_distribution(key_lm):
    prompt, answer = (v[0] for v in make_key_prompts(1, random_state=8))
    lens = LogitLens(key_lm, top_k=3)
    for target in (answer, " the", " ."):
        res = lens.explain(prompt, target)
        for i, layer in enumerate(res.layers):
            p = lens.distribution(prompt, layer).astype(np.float64)  # (T, V)
            entropy = -(p * np.log(np.where(p > 0, p, 1))).sum(-1)
            np.testing.assert_allclose(res.entropy[i], entropy, rtol=0, atol=2e-5)
            order = np.argsort(-p, axis=-1, kind="stable")
            rank = np.argmax(order == res.target_id, axis=-1)
            np.testing.assert_array_equal(res.target_ranks[i], rank)
    res = lens.explain(prompt, answer)  # the trained model is sure of the answer at the end
    assert res.target_ranks[-1, -1] == 0 and res.entropy[-1, -1] < 0.05
    assert res.target_ranks.dtype == np.int64 and res.entropy.dtype == np.float32


def test_frame_plot_and_figure_show_rank_and_entropy(key_lm):
    import matplotlib.pyplot as plt

    res = LogitLens(key_lm, top_k=2).explain(prompts(1, 9)[0], " c")
    df = res.to_frame()
    assert list(df.columns[:8]) == ["layer", "hook", "position", "token", "target", "target_prob",
                                    "target_rank", "entropy"]
    np.testing.assert_array_equal(df.target_rank, res.target_ranks.reshape(-1))
    np.testing.assert_array_equal(df.entropy, res.entropy.reshape(-1))
    for value in ("target_prob", "target_rank", "entropy"):
        ax = res.plot(value=value)
        shown = {"target_prob": res.target_probs, "target_rank": np.log10(1 + res.target_ranks),
                 "entropy": res.entropy}[value]
        np.testing.assert_allclose(ax.images[0].get_array(), shown)
        plt.close(ax.figure)
    with pytest.raises(ValueError, match="value must be one of"):
        res.plot(value="rank")
    fig = logit_lens_figure(res)
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == [
        "target probability", "target rank", "entropy", "top-1 probability"]
    np.testing.assert_array_equal(fig.data[1].z, np.log10(1 + res.target_ranks))
    np.testing.assert_array_equal(fig.data[2].z, res.entropy)
    hover = fig.data[0].hovertext[-1][-1]
    assert f"rank {res.target_ranks[-1, -1]}" in hover and f"entropy {res.entropy[-1, -1]:.4g}" in hover


# -- the tuned lens -----------------------------------------------------------------------------
def test_tuned_lens_beats_the_logit_lens_on_held_out_prompts(key_lm, tuned):
    seen = set(prompts(200, 0))
    held = [p for p in prompts(120, 1) if p not in seen]
    assert len(held) > 100
    logit, tuned_kl = kl_to_final(key_lm, held), kl_to_final(key_lm, held, tuned)
    assert list(logit.index) == list(tuned_kl.index) == ["embed", "0", "1"]
    assert (tuned_kl.iloc[:-1] < logit.iloc[:-1]).all(), (logit, tuned_kl)
    assert abs(logit.iloc[-1]) < 1e-6 and abs(tuned_kl.iloc[-1]) < 1e-6  # the last layer is the output
    assert (tuned_kl.iloc[:-1] < 0.5 * logit.iloc[:-1]).all()  # measured: 0.15 vs 5.9, 0.001 vs 0.43
    assert tuned.config["fit"]["n_texts"] == 200 and len(tuned.config["fit"]["train_kl"]) == 2


def test_identity_translators_are_the_logit_lens(key_lm):
    texts, lens = ragged(prompts(12, 2)), identity_lens(key_lm)
    np.testing.assert_allclose(kl_to_final(key_lm, texts, lens), kl_to_final(key_lm, texts), atol=1e-9)
    prompt = prompts(1, 3)[0]
    a = TunedLensExplainer(key_lm, lens=lens).explain(prompt, " c")
    b = LogitLens(key_lm).explain(prompt, " c")
    assert a.lens == "tuned" and a.method == "native:tuned_lens"
    for name in ("target_probs", "entropy", "top_probs"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-6)


def test_tuned_explainer_decodes_the_translated_stream(key_lm, tuned):
    prompt = prompts(1, 4)[0]
    ex = xs.create_explainer("native:tuned_lens", key_lm, lens=tuned, top_k=3)
    res = ex.explain(prompt, " c")
    _, cache = key_lm.run_with_cache(key_lm.encode(prompt).ids[None], ["blocks.0.hook_resid_pre",
                                                                       "blocks.0.hook_resid_post"])
    for i, name in enumerate(("blocks.0.hook_resid_pre", "blocks.0.hook_resid_post")):
        h = cache[name][0]
        with torch.no_grad():
            p = torch.softmax(key_lm.unembed(key_lm.final_norm(h @ tuned.weight[i].T + tuned.bias[i])), -1)
        np.testing.assert_allclose(res.target_probs[i], p[:, res.target_id].numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(ex.distribution(prompt, res.layers[i]), p.numpy(), rtol=0, atol=1e-6)
    assert res.params["lens"]["path"] is None and res.params["lens"]["d_model"] == key_lm.d_model
    assert set(ex.get_params()) == {"top_k", "include_embeddings", "lens"}


def test_fit_is_seeded_and_token_ids_fit_like_strings(key_lm):
    texts = ragged(prompts(24, 5))
    a = TunedLens.fit(key_lm, texts, n_steps=12, batch_size=5, random_state=3)
    b = TunedLens.fit(key_lm, texts, n_steps=12, batch_size=5, random_state=3)
    ids = TunedLens.fit(key_lm, [key_lm.encode(t).ids for t in texts], n_steps=12, batch_size=5,
                        random_state=3)
    other = TunedLens.fit(key_lm, texts, n_steps=12, batch_size=5, random_state=4)
    for lens in (b, ids):
        torch.testing.assert_close(lens.weight, a.weight, rtol=0, atol=0)
        torch.testing.assert_close(lens.bias, a.bias, rtol=0, atol=0)
    assert not torch.allclose(other.weight, a.weight)
    assert not torch.allclose(a.weight, torch.eye(key_lm.d_model).expand_as(a.weight))  # it learned


def test_fit_leaves_the_model_alone_and_shows_progress(key_lm, record_progress):
    calls = record_progress(tuned_mod)
    before = {k: v.clone() for k, v in key_lm.model.state_dict().items()}
    flags = [p.requires_grad for p in key_lm.model.parameters()]
    grads = [None if p.grad is None else p.grad.clone() for p in key_lm.model.parameters()]
    TunedLens.fit(key_lm, prompts(8, 6), n_steps=7, batch_size=4, random_state=0)
    assert calls == [("tuned lens", 7)]
    assert all(torch.equal(v, before[k]) for k, v in key_lm.model.state_dict().items())
    assert [p.requires_grad for p in key_lm.model.parameters()] == flags
    for p, g in zip(key_lm.model.parameters(), grads, strict=True):  # no gradient reached the model
        assert (p.grad is None) if g is None else torch.equal(p.grad, g)


def test_kl_to_final_does_not_depend_on_padding(key_lm, tuned):
    texts = ragged(prompts(20, 7))
    for lens in (None, tuned):
        one = kl_to_final(key_lm, texts, lens, batch_size=1)  # no padding
        np.testing.assert_allclose(kl_to_final(key_lm, texts, lens, batch_size=8), one, rtol=1e-5, atol=1e-7)


def test_save_load_round_trip(key_lm, tuned, tmp_path):
    path = tuned.save(tmp_path / "lens.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lens.pt"]  # the temporary file is gone
    back = TunedLens.load(path, key_lm)
    torch.testing.assert_close(back.weight, tuned.weight, rtol=0, atol=0)
    torch.testing.assert_close(back.bias, tuned.bias, rtol=0, atol=0)
    assert back.config == tuned.config
    prompt = prompts(1, 8)[0]
    direct = TunedLensExplainer(key_lm, lens=tuned).explain(prompt, " b")
    by_path = TunedLensExplainer(key_lm, lens=str(path)).explain(prompt, " b")
    np.testing.assert_array_equal(by_path.target_probs, direct.target_probs)
    np.testing.assert_array_equal(by_path.entropy, direct.entropy)
    assert by_path.params["lens"]["path"] == str(path)
    saved = direct.save(tmp_path / "result.npz")
    loaded = xs.load_explanation(saved)
    assert loaded.lens == "tuned" and np.array_equal(loaded.target_ranks, direct.target_ranks)


def test_another_models_lens_is_refused(key_lm, tuned, tmp_path):
    path = tuned.save(tmp_path / "lens.pt")
    for lm, what in ((other_model(n_layer=3), "n_layers=2"), (other_model(n_embd=32), "d_model=64")):
        with pytest.raises(ValueError, match=f"fitted on another model: .*{what}"):
            TunedLens.load(path, lm)
        with pytest.raises(ValueError, match="fitted on another model"):
            TunedLensExplainer(lm, lens=tuned).explain("the key is c")
        with pytest.raises(ValueError, match="fitted on another model"):
            kl_to_final(lm, ["the key is c"], tuned)
    (tmp_path / "junk.pt").write_bytes(b"not a lens")
    with pytest.raises(ValueError, match="is not a saved tuned lens"):
        TunedLens.load(tmp_path / "junk.pt", key_lm)
    with pytest.raises(TypeError, match="needs lens="):
        TunedLensExplainer(key_lm).explain("the key is c")


def test_bad_texts_are_refused(key_lm):
    fit = TunedLens.fit
    with pytest.raises(TypeError, match="wrap it in a list"):
        fit(key_lm, "the key is c")
    with pytest.raises(ValueError, match="non-empty sequence"):
        fit(key_lm, [])
    with pytest.raises(ValueError, match=r"texts\[1\]: token ids must lie in"):
        fit(key_lm, ["the key is c", [3, key_lm.vocab_size]])
    with pytest.raises(ValueError, match="1-D integer"):
        fit(key_lm, [np.array([0.5, 1.0])])
    with pytest.raises(ValueError, match="more than the model's 32 positions"):
        fit(key_lm, [" ".join(["a"] * 33)])
    with pytest.raises(ValueError, match="lr"):
        fit(key_lm, ["the key is c"], lr=0)
    with pytest.raises(ValueError, match="random_state must be an int"):
        fit(key_lm, ["the key is c"], random_state=None)


def test_second_layout(tmp_path):
    """An untrained LLaMA: the tuned lens still beats the logit lens on held-out text."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tiny_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)).eval()
    llama = LanguageModel(model, tok, device="cpu")
    lens = TunedLens.fit(llama, ragged(prompts(64, 0)), n_steps=100, random_state=0)
    held = ragged(prompts(32, 1))
    logit, tuned_kl = kl_to_final(llama, held), kl_to_final(llama, held, lens)
    assert (tuned_kl.iloc[:-1] < logit.iloc[:-1]).all(), (logit, tuned_kl)
    assert abs(logit.iloc[-1]) < 1e-6
    gpt2 = other_model(n_embd=32)  # the LLaMA's layers, width and vocabulary, another architecture
    path = identity_lens(gpt2).save(tmp_path / "gpt2.pt")
    with pytest.raises(ValueError, match="model_type='gpt2' \\(the model has 'llama'\\)"):
        TunedLens.load(path, llama)
