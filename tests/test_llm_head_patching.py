"""Activation patching per attention head (output, q, k, v, pattern) and path patching between heads."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from conftest import _on_one_thread
from test_llm_mechanistic import key_pair

import xai_suite_llm.patching as patching_mod
from xai_suite_llm import (
    KEY_POSITION,
    LanguageModel,
    make_tiny_gpt2,
    make_tiny_tokenizer,
    train_key_model,
)
from xai_suite_llm.html import patching_figure

ActivationPatching = patching_mod.ActivationPatching
HEAD_SITES = patching_mod.HEAD_SITES
patch_all, path_patch, path_patch_senders = (patching_mod.patch_all, patching_mod.path_patch,
                                             patching_mod.path_patch_senders)
ALL_HEAD_SITES = tuple(HEAD_SITES)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def one_head_lm():
    """The key model with one head per layer: a single head has to move the key."""
    return _on_one_thread(train_key_model, n_head=1, random_state=2)


@pytest.fixture(scope="module")
def tiny_llama(key_llama):
    """The key-task LLaMA: rotary, RMSNorm, 4 query heads sharing 2 key/value heads."""
    return key_llama


def tiny_gpt2(random_state=0):
    tok = make_tiny_tokenizer()
    return LanguageModel(make_tiny_gpt2(len(tok), random_state=random_state), tok, device="cpu")


def logit_diff(lm, ids, fns, a, w):
    logits = lm.run_with_hooks(ids, fns)[:, -1].float()
    return (logits[:, a] - logits[:, w]).double().numpy()


def reference_patch(lm, clean, corrupted, answer, wrong, hook, head, position=None, axis=2):
    """One forward per patch, TransformerLens style: head ``head`` of ``hook`` (its head axis
    ``axis``) from the clean run, at every position or one."""
    ids_c, ids_k = lm.encode(clean).ids[None], lm.encode(corrupted).ids[None]
    _, cache = lm.run_with_cache(ids_c, [hook])
    a, w = (lm.token_ids(t)[0].item() for t in (answer, wrong))

    def fn(act):
        new, src = act.clone(), cache[hook]
        idx = [slice(None)] * act.ndim
        idx[axis] = head
        if position is not None:
            idx[1 if axis == 2 else 2] = position  # the (query) position axis
        new[tuple(idx)] = src[tuple(idx)]
        return new
    return logit_diff(lm, ids_k, {hook: fn}, a, w)[0]


# -- the key model: which heads move the key -------------------------------------------------
@pytest.mark.parametrize(("key", "other", "seed"), [("c", "d", 3), ("a", "g", 8), ("b", "h", 5)])
def test_head_patching_finds_the_heads_that_move_the_key(key_lm, key, other, seed):
    clean, corrupted = key_pair(key, other, seed)
    res = ActivationPatching(key_lm, sites=("attn_head_out", "attn_head_v")).explain(
        clean, corrupted, f" {key}", f" {other}")
    ids = key_lm.encode(clean).ids[None]
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(key_lm.n_layers)]
    _, cache = key_lm.run_with_cache(ids, names)
    # the heads that move the key: their last position attends to the key position
    to_key = np.stack([cache[n][0, :, -1, KEY_POSITION].numpy() for n in names])  # (L, H)
    movers = to_key > 0.5
    assert 1 <= movers.sum() < movers.size
    effects = res.effects["attn_head_out"]
    assert effects.shape == (key_lm.n_layers, key_lm.n_heads)
    # the key model shares the copy between several layer-0 heads: each carries part of it,
    # together they carry it all; no other head moves it
    assert np.all(effects[movers] > 0.1), (effects, to_key)
    assert effects[movers].sum() > 0.5
    assert np.all(np.abs(effects[~movers]) < 0.1), (effects, to_key)
    # what they move is the value read at the key (the pattern already points there)
    np.testing.assert_allclose(res.effects["attn_head_v"][movers], effects[movers], atol=0.05)
    # patched together (one hand-written run), the movers restore the clean answer
    heads = {layer: torch.as_tensor(np.flatnonzero(movers[layer])) for layer in range(key_lm.n_layers)}
    z_names = [f"blocks.{layer}.attn.hook_z" for layer in range(key_lm.n_layers)]
    _, z_clean = key_lm.run_with_cache(ids, z_names)

    def put(layer):
        def fn(act):
            new = act.clone()
            new[:, :, heads[layer]] = z_clean[z_names[layer]][:, :, heads[layer]]
            return new
        return fn
    a, w = key_lm.token_ids(f" {key}")[0].item(), key_lm.token_ids(f" {other}")[0].item()
    together = logit_diff(key_lm, key_lm.encode(corrupted).ids[None],
                          {z_names[layer]: put(layer) for layer in heads if len(heads[layer])}, a, w)[0]
    assert (together - res.corrupted_diff) / (res.clean_diff - res.corrupted_diff) > 0.9


def test_head_patching_finds_the_one_head_that_moves_the_key(one_head_lm):
    """The issue's criterion as written: the mover's effect > 0.5, no other head above 0.1.
    The default key model (4 heads a layer) shares the copy between heads (test above); with
    one head a layer, layer 0's head moves the key alone (effects 1.00 and <= 0.04 on 12 pairs)."""
    lm = one_head_lm
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(lm.n_layers)]
    rng = np.random.default_rng(0)
    for _ in range(6):
        key, other = rng.choice(list("abcdefgh"), 2, replace=False)
        clean, corrupted = key_pair(key, other, int(rng.integers(100)))
        effects = ActivationPatching(lm, sites=("attn_head_out",)).explain(
            clean, corrupted, f" {key}", f" {other}").effects["attn_head_out"]
        _, cache = lm.run_with_cache(lm.encode(clean).ids[None], names)
        to_key = np.stack([cache[n][0, :, -1, KEY_POSITION].numpy() for n in names])  # (L, 1)
        movers = to_key > 0.5
        assert movers.sum() == 1, to_key
        assert np.all(effects[movers] > 0.5), (key, other, effects)
        assert np.all(np.abs(effects[~movers]) < 0.1), (key, other, effects)


def test_head_patching_per_position(key_lm):
    clean, corrupted = key_pair("c", "d")
    res = ActivationPatching(key_lm, sites=ALL_HEAD_SITES, head_positions="each", batch_size=50).explain(
        clean, corrupted, " c", " d")
    n_tok = len(res.tokens)
    for site in res.sites:
        n_heads = key_lm.n_kv_heads if site in ("attn_head_k", "attn_head_v") else key_lm.n_heads
        assert res.effects[site].shape == (key_lm.n_layers, n_heads, n_tok)
        # positions before the key have the same activations in both runs: no effect at all
        assert np.all(res.patched[site][:, :, :KEY_POSITION] == res.corrupted_diff)
    # layer 0's key heads write the key at the last position: that is where their output matters
    out = res.effects["attn_head_out"][0]
    assert out[:, -1].max() > 0.4 and np.abs(out[:, :-1]).max() < 0.05


# -- a second layout: identities, batching, a one-run-per-patch reference ----------------------
def test_head_patching_matches_one_run_per_patch(tiny_llama):
    lm = tiny_llama
    clean, corrupted = key_pair("c", "d", random_state=0)
    res = ActivationPatching(lm, sites=ALL_HEAD_SITES, batch_size=3).explain(clean, corrupted, " c", " d")
    assert (lm.n_heads, lm.n_kv_heads) == (4, 2)
    shapes = {s: res.effects[s].shape for s in res.sites}
    assert shapes == {"attn_head_out": (2, 4), "attn_head_q": (2, 4), "attn_head_k": (2, 2),
                      "attn_head_v": (2, 2), "attn_head_pattern": (2, 4)}
    for layer in range(lm.n_layers):
        for h in range(lm.n_heads):  # the head's output through hook_result, not hook_z
            ref = reference_patch(lm, clean, corrupted, " c", " d", f"blocks.{layer}.attn.hook_result", h)
            assert abs(res.patched["attn_head_out"][layer, h] - ref) < 1e-5
            ref = reference_patch(lm, clean, corrupted, " c", " d", f"blocks.{layer}.attn.hook_pattern", h,
                                  axis=1)
            assert abs(res.patched["attn_head_pattern"][layer, h] - ref) < 1e-5
        for h in range(lm.n_kv_heads):
            for site, name in (("attn_head_k", "k"), ("attn_head_v", "v")):
                ref = reference_patch(lm, clean, corrupted, " c", " d", f"blocks.{layer}.attn.hook_{name}", h)
                assert abs(res.patched[site][layer, h] - ref) < 1e-5
    assert np.abs(res.effects["attn_head_out"]).max() > 1e-3  # the comparison is not of zeros
    each = ActivationPatching(lm, sites=("attn_head_q", "attn_head_pattern"), head_positions="each",
                              batch_size=7).explain(clean, corrupted, " c", " d")
    t = KEY_POSITION + 2
    for site, name, axis in (("attn_head_q", "q", 2), ("attn_head_pattern", "pattern", 1)):
        ref = reference_patch(lm, clean, corrupted, " c", " d", f"blocks.1.attn.hook_{name}", 3, t, axis)
        assert abs(each.patched[site][1, 3, t] - ref) < 1e-5


def test_all_heads_are_the_attention_output(tiny_llama):
    lm = tiny_llama
    clean, corrupted = key_pair("c", "d", random_state=0)
    for layers in ([0], [1], [0, 1]):
        by_layer = patch_all(lm, clean, corrupted, [f"blocks.{layer}.hook_attn_out" for layer in layers])
        for hook in ("z", "result"):
            names = [f"blocks.{layer}.attn.hook_{hook}" for layer in layers]
            by_head = patch_all(lm, clean, corrupted, names)
            torch.testing.assert_close(by_head, by_layer, rtol=0, atol=1e-5)
    # and the head grid's patch of one head is a patch of attn_out by that head's difference alone
    res = ActivationPatching(lm, sites=("attn_head_out",)).explain(clean, corrupted, " c", " d")
    ids_c, ids_k = lm.encode(clean).ids[None], lm.encode(corrupted).ids[None]
    a, w = lm.token_ids(" c")[0].item(), lm.token_ids(" d")[0].item()
    for layer, h in [(0, 1), (1, 3)]:
        name, out = f"blocks.{layer}.attn.hook_result", f"blocks.{layer}.hook_attn_out"
        _, c = lm.run_with_cache(ids_c, [name])
        _, k = lm.run_with_cache(ids_k, [name])
        delta = c[name][:, :, h] - k[name][:, :, h]
        diff = logit_diff(lm, ids_k, {out: lambda act, d=delta: act + d}, a, w)[0]
        assert abs(res.patched["attn_head_out"][layer, h] - diff) < 1e-5


def test_head_patching_is_batch_size_invariant(tiny_llama):
    clean, corrupted = key_pair("a", "g", random_state=8)
    runs = [ActivationPatching(tiny_llama, sites=("attn_head_out", "attn_head_k"), head_positions=hp,
                               batch_size=b).explain(clean, corrupted, " a", " g")
            for hp in ("all", "each") for b in ("auto", 1, 5)]
    for group in (runs[:3], runs[3:]):
        for other in group[1:]:
            for site in group[0].sites:
                np.testing.assert_allclose(other.patched[site], group[0].patched[site], rtol=0, atol=1e-5)
    assert runs[1].params["batch_size_used"] == 1 and runs[3].params["head_positions"] == "each"


def test_head_results_frame_plot_and_figure(key_lm):
    import matplotlib.pyplot as plt

    clean, corrupted = key_pair("c", "d")
    res = ActivationPatching(key_lm, sites=("resid_pre", "attn_head_out")).explain(
        clean, corrupted, " c", " d")
    each = ActivationPatching(key_lm, sites=("attn_head_v",), head_positions="each").explain(
        clean, corrupted, " c", " d")
    n_tok, n_l, n_h = len(res.tokens), key_lm.n_layers, key_lm.n_heads
    df = res.to_frame()
    assert list(df.columns) == ["site", "layer", "head", "hook", "position", "token", "corrupted_token",
                                "patched_diff", "effect"]
    heads = df[df.site == "attn_head_out"]
    assert len(heads) == n_l * n_h and heads.position.isna().all() and heads.token.isna().all()
    row = heads[(heads.layer == 1) & (heads["head"] == 2)].iloc[0]
    assert row.hook == "blocks.1.attn.hook_z" and row.effect == res.effects["attn_head_out"][1, 2]
    assert df[df.site == "resid_pre"]["head"].isna().all()
    de = each.to_frame()
    row = de[(de.layer == 0) & (de["head"] == 1) & (de.position == KEY_POSITION)].iloc[0]
    assert row.token == "c" and row.corrupted_token == "d" and row.hook == "blocks.0.attn.hook_v"
    assert row.patched_diff == each.patched["attn_head_v"][0, 1, KEY_POSITION]
    fig = res.plot()
    assert len(fig.axes) == 4
    plt.close(fig)
    fig = patching_figure(res)
    assert [t.name for t in fig.data] == ["hook_resid_pre", "attn_head_out"]
    np.testing.assert_array_equal(fig.data[1].z, res.effects["attn_head_out"])
    assert "blocks.1.attn.hook_z, head 2, every position" in fig.data[1].hovertext[1][2]
    button = fig.layout.updatemenus[0].buttons[1]
    assert list(button.args[1]["xaxis.ticktext"]) == [str(h) for h in range(n_h)]
    fig = patching_figure(each)
    assert fig.data[0].z.shape == (n_l * key_lm.n_kv_heads, n_tok)
    assert list(fig.layout.yaxis.ticktext)[:2] == ["L0H0", "L0H1"]
    assert f"effect: {each.effects['attn_head_v'][0, 1, 3]:.4g}" in fig.data[0].hovertext[1][3]


def test_head_patching_errors(key_lm):
    clean, corrupted = key_pair("c", "d")
    with pytest.raises(ValueError, match="head_positions"):
        ActivationPatching(key_lm, sites=("attn_head_out",), head_positions="last").explain(
            clean, corrupted, " c", " d")
    with pytest.raises(ValueError, match="sites must be"):
        ActivationPatching(key_lm, sites=("attn_head_z",)).explain(clean, corrupted, " c", " d")


# -- path patching ---------------------------------------------------------------------------
def direct_by_hand(lm, clean, corrupted, answer, wrong, sender):
    """The sender's direct effect: its result difference added to the corrupted final stream,
    through the final norm and the unembedding, normalised."""
    layer, h = sender
    last, res = f"blocks.{lm.n_layers - 1}.hook_resid_post", f"blocks.{layer}.attn.hook_result"
    clean_logits, c = lm.run_with_cache(lm.encode(clean).ids[None], [res])
    corrupted_logits, k = lm.run_with_cache(lm.encode(corrupted).ids[None], [res, last])
    a, w = lm.token_ids(answer)[0].item(), lm.token_ids(wrong)[0].item()
    with torch.no_grad():
        logits = lm.unembed(lm.final_norm(k[last] + c[res][:, :, h] - k[res][:, :, h]))

    def diff(x):
        return (x[0, -1, a] - x[0, -1, w]).item()
    return (diff(logits) - diff(corrupted_logits)) / (diff(clean_logits) - diff(corrupted_logits))


def test_path_to_the_logits_is_the_direct_effect(key_lm):
    clean, corrupted = key_pair("c", "d")
    grid = path_patch_senders(key_lm, clean, corrupted, " c", " d", receiver="logits", batch_size=3)
    assert grid.shape == (key_lm.n_layers, key_lm.n_heads)
    for layer, h in [(0, 0), (0, 1), (1, 2)]:
        ref = direct_by_hand(key_lm, clean, corrupted, " c", " d", (layer, h))
        assert abs(grid[layer, h] - ref) < 1e-5
        assert abs(path_patch(key_lm, clean, corrupted, " c", " d", sender=(layer, h), receiver="logits")
                   - ref) < 1e-5
    assert np.abs(grid).max() > 0.05


def test_path_to_the_logits_from_the_last_layer_is_head_patching():
    # with the last layer's MLP silenced, a last-layer head reaches the logits by the direct path only
    lm = tiny_gpt2(random_state=1)
    mlp = lm.blocks[-1].mlp.c_proj
    with torch.no_grad():
        mlp.weight.zero_()
        mlp.bias.zero_()
    clean, corrupted = key_pair("c", "d")
    paths = path_patch_senders(lm, clean, corrupted, " c", " d", receiver="logits")
    heads = ActivationPatching(lm, sites=("attn_head_out",)).explain(clean, corrupted, " c", " d")
    np.testing.assert_allclose(paths[-1], heads.effects["attn_head_out"][-1], rtol=0, atol=1e-5)
    assert np.abs(paths[-1]).max() > 1e-3


def test_planted_path_carries_the_signal_alone():
    """Layer 1's heads other than ``h2`` read no values (their value weights are zero), and
    ``h2``'s pattern is fixed (its query and key weights are zero): of every sender -> layer-1
    head path, only the ones into ``h2``'s value carry a change."""
    lm, h2 = tiny_gpt2(random_state=2), 1
    attn = lm.attn[1].c_attn  # Conv1D (d_model, 3 d_model): [q | k | v], head h at h*d:(h+1)*d
    d, dm = lm.d_head, lm.d_model
    with torch.no_grad():
        for h in range(lm.n_heads):
            if h != h2:
                attn.weight[:, 2 * dm + h * d:2 * dm + (h + 1) * d] = 0
        for part in (0, 1):
            attn.weight[:, part * dm + h2 * d:part * dm + (h2 + 1) * d] = 0
    clean, corrupted = key_pair("c", "d")
    effects = {(h, x): path_patch_senders(lm, clean, corrupted, " c", " d", receiver=(1, h), receiver_input=x)
               for h in range(lm.n_heads) for x in ("q", "k", "v")}
    for (h, x), e in effects.items():
        assert e.shape == (1, lm.n_heads)
        if (h, x) == (h2, "v"):
            assert np.abs(e).min() > 1e-3, e
        else:
            assert np.abs(e).max() < 1e-5, ((h, x), e)
    one = path_patch(lm, clean, corrupted, " c", " d", sender=(0, 3), receiver=(1, h2), receiver_input="v")
    assert abs(one - effects[h2, "v"][0, 3]) < 1e-5


def test_path_patching_recomputes_only_the_receiver(tiny_llama):
    # a sender into a receiver whose input it fully determines: patching the sender's path into
    # every q/k/v at once is the receiver's input from the run with the sender's result patched
    lm = tiny_llama
    clean, corrupted = key_pair("c", "d", random_state=0)
    grid = path_patch_senders(lm, clean, corrupted, " c", " d", receiver=(1, 1), receiver_input="k",
                              batch_size=2)
    assert grid.shape == (1, lm.n_heads)
    # by hand: the corrupted run with sender (0, h)'s result patched from clean changes layer 1's
    # resid_pre by exactly the result difference (layer 0's MLP frozen at the corrupted run)
    a, w = lm.token_ids(" c")[0].item(), lm.token_ids(" d")[0].item()
    ids_c, ids_k = lm.encode(clean).ids[None], lm.encode(corrupted).ids[None]
    names = ["blocks.0.attn.hook_result", "blocks.1.hook_resid_pre", "blocks.1.attn.hook_k"]
    clean_logits, c = lm.run_with_cache(ids_c, names)
    corrupted_logits, k = lm.run_with_cache(ids_k, names)
    span = [(x[0, -1, a] - x[0, -1, w]).item() for x in (clean_logits, corrupted_logits)]
    for h in range(lm.n_heads):
        stream = k["blocks.1.hook_resid_pre"] + c["blocks.0.attn.hook_result"][:, :, h] \
            - k["blocks.0.attn.hook_result"][:, :, h]
        _, new = lm.run_with_cache(ids_k, ["blocks.1.attn.hook_k"],
                                   {"blocks.1.hook_resid_pre": lambda x, s=stream: s})

        def put(act, src=new["blocks.1.attn.hook_k"]):
            out = act.clone()
            out[:, :, 1] = src[:, :, 1]
            return out
        diff = logit_diff(lm, ids_k, {"blocks.1.attn.hook_k": put}, a, w)[0]
        assert abs(grid[0, h] - (diff - span[1]) / (span[0] - span[1])) < 1e-5
    assert np.abs(grid).max() > 1e-4


def test_path_patching_errors(key_lm):
    clean, corrupted = key_pair("c", "d")
    args = (key_lm, clean, corrupted, " c", " d")
    with pytest.raises(ValueError, match="receiver layer"):
        path_patch_senders(*args, receiver=(0, 1), receiver_input="q")
    with pytest.raises(ValueError, match="receiver_input must be one of"):
        path_patch_senders(*args, receiver=(1, 1), receiver_input="z")
    with pytest.raises(ValueError, match="receiver_input must be None"):
        path_patch_senders(*args, receiver="logits", receiver_input="q")
    with pytest.raises(ValueError, match="receiver must be"):
        path_patch_senders(*args, receiver="unembed")
    with pytest.raises(ValueError, match="before the receiver"):
        path_patch(*args, sender=(1, 0), receiver=(1, 2), receiver_input="v")
    with pytest.raises(ValueError, match="receiver head"):
        path_patch(*args, sender=(0, 0), receiver=(1, 9), receiver_input="v")
    with pytest.raises(TypeError, match="sender"):
        path_patch(*args, sender=0, receiver="logits")
    with pytest.raises(ValueError, match="undefined"):
        path_patch(key_lm, clean, clean, " c", " d", sender=(0, 0), receiver="logits")
