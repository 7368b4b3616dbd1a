"""Sparse autoencoders on the tiny key model's activations: training (L1 and top-k),
reconstruction, SAELens's folder format, feature activations, top contexts and steering."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import xai_suite as xs
from xai_suite_llm import KEY_POSITION, make_key_prompts
from xai_suite_llm.sae import FeatureActivations, SparseAutoencoder, TopContexts, load_saelens
from xai_suite_llm.steering import hook_activations

#: The key sits in the embeddings at the key position: the SAE reads the stream entering layer 0.
HOOK = "blocks.0.hook_resid_pre"


@pytest.fixture(scope="module")
def data():
    train, _ = make_key_prompts(300, random_state=11)
    held, answers = make_key_prompts(80, random_state=12)
    return train, held, answers


@pytest.fixture(scope="module")
def sae(key_lm, data):
    """An L1 SAE (128 features) on every token of 300 key prompts, about 1 s."""
    return SparseAutoencoder(128, hook_name=HOOK, l1_coefficient=0.3, n_epochs=20, batch_size=128, lr=3e-3,
                             random_state=0).fit(data[0], lm=key_lm)


def _reference_encode(x, W_enc, b_enc, b_dec, arch, k=None, threshold=None, apply_b_dec=True):
    """SAELens's encode, written out: relu / top-k / JumpReLU of (x - b_dec) @ W_enc + b_enc."""
    pre = (x - b_dec if apply_b_dec else x) @ W_enc + b_enc
    if arch == "topk":
        out = torch.zeros_like(pre)
        v, i = pre.topk(k, dim=-1)
        return out.scatter(-1, i, v.relu())
    if arch == "jumprelu":
        return pre.relu() * (pre > threshold.relu())
    return pre.relu()


def test_the_sae_reconstructs_held_out_prompts(key_lm, sae, data):
    report = sae.evaluate(data[1], lm=key_lm)
    assert report["explained_variance"] > 0.9  # measured: 0.955
    assert report["l0"] < 4  # measured: 1.8 active features per token
    assert report["n_rows"] == 80 * 18 and 0 <= report["dead_fraction"] < 1
    # the report's numbers, by hand
    x = torch.cat(hook_activations(key_lm, data[1], HOOK))
    f = sae.encode(x)
    x_hat = f @ sae.W_dec + sae.b_dec
    torch.testing.assert_close(sae.reconstruct(x), x_hat)
    ev = 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert report["explained_variance"] == pytest.approx(float(ev), rel=1e-5)
    assert report["mse"] == pytest.approx(float((x - x_hat).pow(2).mean()), rel=1e-5)
    assert report["dead_features"] == int(((f > 0).sum(0) == 0).sum())
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(128))  # unit-norm decoder rows
    assert len(sae.history_) == 20 and sae.history_[-1] < sae.history_[0]


def test_a_key_feature_is_found_by_its_top_contexts_and_steering_by_it_changes_the_answer(key_lm, sae, data):
    _, held, answers = data
    with_d = [p for p, a in zip(held, answers, strict=True) if a == " d"]
    others = [p for p, a in zip(held, answers, strict=True) if a != " d"][:8]
    # the feature most active at the key position of a prompt whose key is d ...
    acts = sae.feature_activations(key_lm, with_d[0])
    feature = int(acts.activations[KEY_POSITION].argmax())
    # ... fires on the key d of every prompt holding it, at the key position, and nowhere else
    top = sae.top_contexts(key_lm, held, feature, k=20, window=3)
    n = len(with_d)
    assert isinstance(top, TopContexts) and len(top.activations) == n  # 9 of the 80 prompts
    assert list(top.token) == ["d"] * n and list(top.position) == [KEY_POSITION] * n
    assert sorted(top.prompt_index) == [i for i, a in enumerate(answers) if a == " d"]
    assert (np.diff(top.activations) <= 0).all()
    assert top.left[0] == "the key is" and top.right[0] == ". " + " ".join(
        key_lm.encode(held[top.prompt_index[0]]).tokens[KEY_POSITION + 2:KEY_POSITION + 4])
    # steering by its decoder row at the key position makes the model answer d
    d_id = int(key_lm.token_ids(" d")[0])
    fns = sae.steering_hooks(feature, 8 * float(top.activations[0]), lm=key_lm, positions=KEY_POSITION)
    before = [int(key_lm.generate(key_lm.encode(p).ids, 1)[0]) for p in others]
    after = [int(key_lm.generate(key_lm.encode(p).ids, 1, fns=fns)[0]) for p in others]
    assert d_id not in before and after == [d_id] * 8


def test_feature_activations_are_the_encoded_cache_and_inspectable(key_lm, sae, data, tmp_path):
    prompt = data[1][0]
    acts = sae.feature_activations(key_lm, prompt)
    assert isinstance(acts, FeatureActivations) and acts.activations.shape == (18, 128)
    _, cache = key_lm.run_with_cache(key_lm.encode(prompt).ids[None], [HOOK])
    np.testing.assert_allclose(acts.activations, sae.encode(cache[HOOK][0]).numpy(), atol=1e-6)
    frame = acts.to_frame()
    assert len(frame) == int((acts.activations > 0).sum())
    assert set(frame.columns) == {"position", "token", "feature", "activation"}
    assert acts.plot() is not None
    loaded = xs.load_explanation(acts.save(tmp_path / "acts.npz"))
    np.testing.assert_array_equal(loaded.activations, acts.activations)
    assert list(loaded.tokens) == list(acts.tokens)
    top = sae.top_contexts(key_lm, data[1][:20], int(acts.top_features(1)[0]), k=5)
    assert top.plot() is not None and list(top.to_frame().columns) == [
        "prompt_index", "position", "left", "token", "right", "activation"]
    loaded = xs.load_explanation(top.save(tmp_path / "top.npz"))
    assert loaded.labels() == top.labels()
    for result, name in ((acts, "acts.html"), (top, "top.html")):
        html = result.to_html(tmp_path / name).read_text()
        assert "native:sparse_autoencoder" in html and "plotly" in html


def test_sae_pages_load_in_a_browser_without_errors(key_lm, sae, data, tmp_path, browser_page):
    acts = sae.feature_activations(key_lm, data[1][0])
    top = sae.top_contexts(key_lm, data[1], int(acts.activations[KEY_POSITION].argmax()), k=5)
    for result, name in ((acts, "acts.html"), (top, "top.html")):
        browser_page.clear()
        page = browser_page.open(result.to_html(tmp_path / name))
        assert browser_page.errors == [] and browser_page.network() == []
        assert page.locator(".js-plotly-plot").count() == 1


def test_same_seed_same_sae_and_topk_keeps_k_features(key_lm, data):
    x = torch.cat(hook_activations(key_lm, data[0][:60], HOOK))
    kw = dict(activation="topk", k=4, n_epochs=15, batch_size=64, lr=3e-3)
    a, b = (SparseAutoencoder(64, random_state=3, **kw).fit(x) for _ in range(2))
    c = SparseAutoencoder(64, random_state=4, **kw).fit(x)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.W_dec, c.W_dec)
    assert a.history_ == b.history_
    f = a.encode(x)
    assert ((f > 0).sum(1) <= 4).all() and (f >= 0).all()
    held = torch.cat(hook_activations(key_lm, data[1], HOOK))
    assert a.evaluate(held)["explained_variance"] > 0.9


@pytest.mark.parametrize("activation, k", [("relu", None), ("topk", 3)])
def test_save_writes_saelens_format_and_load_reads_it_back(sae, key_lm, data, tmp_path, activation, k):
    x = torch.cat(hook_activations(key_lm, data[1][:10], HOOK))
    model = sae if activation == "relu" else SparseAutoencoder(
        32, activation="topk", k=k, hook_name=HOOK, n_epochs=2, random_state=0).fit(x)
    folder = model.save(tmp_path / "sae")
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["architecture"] == ("standard" if activation == "relu" else "topk")
    assert (cfg["d_in"], cfg["d_sae"], cfg["metadata"]["hook_name"]) == (64, model.d_sae, HOOK)
    assert cfg.get("k") == k
    from safetensors.torch import load_file

    assert set(load_file(str(folder / "sae_weights.safetensors"))) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    loaded = load_saelens(folder)
    assert (loaded.activation, loaded.k, loaded.hook_name) == (activation, k, HOOK)
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))


def _write_folder(folder, cfg, tensors):
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "sae_weights.safetensors"))


LAYOUTS = ["v6_standard", "v6_topk", "pre6_topk", "v6_jumprelu", "pre6_relu_no_bdec"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_saelens_reads_a_hand_written_folder(tmp_path, layout):
    """Folders written by hand in SAELens's two cfg layouts encode as SAELens's formulas do."""
    g = torch.Generator().manual_seed(0)
    d_in, d_sae = 6, 10
    w = {"W_enc": torch.randn(d_in, d_sae, generator=g), "b_enc": torch.randn(d_sae, generator=g) * 0.1,
         "W_dec": torch.randn(d_sae, d_in, generator=g), "b_dec": torch.randn(d_in, generator=g)}
    arch, k, threshold, apply_b_dec = "standard", None, None, True
    if layout.startswith("v6"):
        arch = layout[3:]
        cfg = {"architecture": arch, "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
               "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
               "metadata": {"hook_name": "blocks.3.hook_resid_pre", "sae_lens_version": "6.21.0"}}
        if arch == "topk":
            k = cfg["k"] = 3
        if arch == "jumprelu":
            threshold = w["threshold"] = torch.rand(d_sae, generator=g)
            cfg["apply_b_dec_to_input"] = apply_b_dec = False
    else:  # SAELens < 6: flat, hook_point / activation_fn_str / activation_fn_kwargs
        cfg = {"d_in": d_in, "d_sae": d_sae, "hook_point": "blocks.3.hook_resid_pre", "hook_point_layer": 3,
               "dtype": "float32", "device": "cpu", "normalize_activations": False,
               "finetuning_scaling_factor": False}
        if layout == "pre6_topk":
            arch, k = "topk", 2
            cfg.update(activation_fn_str="topk", activation_fn_kwargs={"k": 2})
        else:
            cfg.update(activation_fn_str="relu", apply_b_dec_to_input=False)
            apply_b_dec = False
    _write_folder(tmp_path / "sae", cfg, w)
    sae = load_saelens(tmp_path / "sae")
    assert (sae.d_in, sae.d_sae, sae.hook_name) == (d_in, d_sae, "blocks.3.hook_resid_pre")
    x = torch.randn(5, 4, d_in, generator=g)
    expected = _reference_encode(x, w["W_enc"], w["b_enc"], w["b_dec"], arch, k, threshold, apply_b_dec)
    assert (expected > 0).any() and (expected == 0).any()
    torch.testing.assert_close(sae.encode(x), expected)
    torch.testing.assert_close(sae.reconstruct(x), expected @ w["W_dec"] + w["b_dec"])
    # and it writes the same SAE back
    again = load_saelens(sae.save(tmp_path / "again"))
    assert torch.equal(again.encode(x), sae.encode(x))


def test_load_saelens_refuses_what_it_cannot_reproduce(tmp_path):
    w = {"W_enc": torch.ones(4, 8), "b_enc": torch.zeros(8), "W_dec": torch.ones(8, 4),
         "b_dec": torch.zeros(4)}
    base = {"architecture": "standard", "d_in": 4, "d_sae": 8, "metadata": {"hook_name": "hook_embed"}}
    _write_folder(tmp_path / "gated", {**base, "architecture": "gated"}, w)
    with pytest.raises(ValueError, match="architecture 'gated' is not supported"):
        load_saelens(tmp_path / "gated")
    _write_folder(tmp_path / "norm", {**base, "normalize_activations": "expected_average_only_in"}, w)
    with pytest.raises(ValueError, match="normalize_activations='expected_average_only_in'"):
        load_saelens(tmp_path / "norm")
    _write_folder(tmp_path / "shape", {**base, "d_sae": 9}, w)
    with pytest.raises(ValueError, match=r"W_enc of shape \(4, 9\)"):
        load_saelens(tmp_path / "shape")
    with pytest.raises(FileNotFoundError, match="no cfg.json"):
        load_saelens(tmp_path)


def test_bad_input_raises_clear_errors(key_lm, sae, data):
    with pytest.raises(ValueError, match=r"shape \(\.\.\., d_in\) = \(\.\.\., 64\)"):
        sae.encode(torch.ones(3, 5))
    with pytest.raises(RuntimeError, match="no weights yet"):
        SparseAutoencoder(8).encode(torch.ones(2, 4))
    with pytest.raises(TypeError, match="pass the model too"):
        SparseAutoencoder(8, hook_name=HOOK).fit(data[0][:3])
    with pytest.raises(ValueError, match="hook_name is needed"):
        SparseAutoencoder(8).fit(data[0][:3], lm=key_lm)
    with pytest.raises(ValueError, match="k is for activation='topk' only"):
        SparseAutoencoder(8, k=2)
    with pytest.raises(ValueError, match="k must be a positive int"):
        SparseAutoencoder(8, activation="topk")
    with pytest.raises(ValueError, match="activation"):
        SparseAutoencoder(8, activation="gelu")
    with pytest.raises(ValueError, match="feature must be an int in 0..127"):
        sae.top_contexts(key_lm, data[1][:2], 128)
    with pytest.raises(ValueError, match="NaN|finite"):
        sae.encode(torch.full((2, 64), float("nan")))
    with pytest.raises(ValueError, match="loaded .* but not trained"):
        SparseAutoencoder(8, activation="jumprelu").fit(torch.ones(4, 2))
