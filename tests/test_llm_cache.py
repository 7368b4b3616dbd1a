"""Cache analysis (xai_suite_llm.cache): the residual stream's decomposition, direct logit
attribution per component and per head, attention patterns and their views.

The sums are checked on the trained key models (GPT-2: LayerNorm, position embeddings, biases;
LLaMA: RMSNorm, rotary, grouped-query attention, no biases), where logit differences are large.
"""

import re

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import xai_suite as xs
from xai_suite_llm import (
    KEY_POSITION,
    ActivationCache,
    AttentionPattern,
    AttentionResult,
    DirectLogitAttribution,
    DirectLogitAttributionExplainer,
    LanguageModel,
    make_key_prompts,
    make_tiny_tokenizer,
    plot_attention,
)
from xai_suite_llm.html import attention_figure

#: A tag loading something from outside the page (the check xai_suite.testing.check_html makes).
_EXTERNAL = re.compile(
    r"""<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)

PROMPTS, ANSWERS = make_key_prompts(12, random_state=5)
#: a wrong key per prompt: the next key letter
WRONGS = [" " + "abcdefgh"[("abcdefgh".index(a.strip()) + 1) % 8] for a in ANSWERS]


@pytest.fixture(params=["gpt2", "llama"])
def lm(request, key_lm, key_llama):
    return {"gpt2": key_lm, "llama": key_llama}[request.param]


def _tiny(model_cls: str, config_cls: str, **kwargs) -> LanguageModel:
    import transformers

    tok = make_tiny_tokenizer()
    config = getattr(transformers, config_cls)(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=2, num_attention_heads=4,
                                               max_position_embeddings=32, bos_token_id=2, eos_token_id=2,
                                               pad_token_id=0, **kwargs)
    torch.manual_seed(0)
    return LanguageModel(getattr(transformers, model_cls)(config).eval(), tok, device="cpu")


def _logit_diff(lm, prompts, answers, wrongs) -> np.ndarray:
    """The model's own logit(answer) - logit(wrong) at the last position, per prompt (float64)."""
    ids = torch.tensor(lm.tokenizer(prompts, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        last = lm.logits(ids)[:, -1].double()
    a = [int(lm.token_ids(t)[0]) for t in answers]
    w = [int(lm.token_ids(t)[0]) for t in wrongs]
    return (last[range(len(a)), a] - last[range(len(w)), w]).numpy()


# -- decompositions ------------------------------------------------------------------------------
def test_decompose_resid_sums_to_the_stream(lm):
    """embed (+ pos_embed) + every attn_out and mlp_out is the final norm's input, at every
    position of a batch, and the stream entering any block; embed is hook_embed itself."""
    cache = ActivationCache.run(lm, PROMPTS[:3], names=["hook_embed", "blocks.1.hook_resid_pre"])
    final = cache[f"blocks.{lm.n_layers - 1}.hook_resid_post"]
    comps, labels = cache.decompose_resid()
    expected = ["embed", *(["pos_embed"] if lm.pos_embed is not None else [])]
    expected += [f"{layer}_{part}" for layer in range(lm.n_layers) for part in ("attn_out", "mlp_out")]
    assert labels == expected and comps.shape == (len(labels), *final.shape)
    torch.testing.assert_close(comps.sum(0), final, rtol=0, atol=1e-5)
    torch.testing.assert_close(comps[0], cache["hook_embed"], rtol=0, atol=1e-6)
    at_pos, _ = cache.decompose_resid(pos=-1)
    torch.testing.assert_close(at_pos.sum(0), final[:, -1], rtol=0, atol=1e-5)
    before_1, labels_1 = cache.decompose_resid(layer=1)
    assert labels_1 == expected[:len(expected) - 2]
    torch.testing.assert_close(before_1.sum(0), cache["blocks.1.hook_resid_pre"], rtol=0, atol=1e-5)


def test_heads_and_attention_biases_sum_to_the_stream(lm):
    """Per layer, the heads' results plus the attention bias are attn_out; with them in place of
    attn_out the components still sum to the stream. GPT-2's bias is c_proj's, LLaMA has none."""
    cache = ActivationCache.run(lm, PROMPTS[:2])
    heads, labels = cache.stack_head_results()
    n_heads = lm.n_heads
    assert labels[: n_heads + 1] == [f"L0H{h}" for h in range(n_heads)] + ["0_attn_bias"]
    assert heads.shape[0] == lm.n_layers * (n_heads + 1)
    for layer in range(lm.n_layers):
        block = heads[layer * (n_heads + 1):(layer + 1) * (n_heads + 1)]
        torch.testing.assert_close(block.sum(0), cache[f"blocks.{layer}.hook_attn_out"], rtol=0, atol=1e-5)
        bias = block[-1, 0, 0]
        o_proj = lm.blocks[layer].attn.c_proj if lm.pos_embed is not None else lm.attn[layer].o_proj
        assert torch.equal(bias, torch.zeros_like(bias) if o_proj.bias is None else o_proj.bias.detach())
    split, split_labels = cache.decompose_resid(heads=True)
    assert "0_attn_out" not in split_labels and "L1H0" in split_labels
    torch.testing.assert_close(split.sum(0), cache.resid(), rtol=0, atol=1e-5)
    assert cache.stack_head_results(layer=0)[0].shape[0] == 0  # no block before block 0


def test_accumulated_resid_matches_the_hook_points(lm):
    """The growing stream is resid_pre of block 0, then resid_mid and resid_post of each block, as
    the hook points themselves give them."""
    mids = [f"blocks.{layer}.hook_resid_mid" for layer in range(lm.n_layers)]
    cache = ActivationCache.run(lm, PROMPTS[0], names=mids)
    streams, labels = cache.accumulated_resid(incl_mid=True)
    assert labels == ["embed", "0_mid", "0_post", "1_mid", "1_post"]
    for i, layer in enumerate(range(lm.n_layers)):
        torch.testing.assert_close(streams[1 + 2 * i], cache[mids[layer]], rtol=0, atol=1e-5)
        post = cache[f"blocks.{layer}.hook_resid_post"]
        torch.testing.assert_close(streams[2 + 2 * i], post, rtol=0, atol=0)
    last, last_labels = cache.accumulated_resid(pos=-1)
    assert last_labels == ["embed", "0_post", "1_post"]
    torch.testing.assert_close(last[-1], cache.resid(pos=-1), rtol=0, atol=0)


# -- direct logit attribution --------------------------------------------------------------------
def test_direct_logit_attribution_sums_to_the_logit_difference(lm):
    """Per component and per head (with the biases and non-head terms), on a batch with one
    answer and one wrong key per row: the terms sum to the model's logit difference to 1e-4."""
    cache = ActivationCache.run(lm, PROMPTS)
    real = _logit_diff(lm, PROMPTS, ANSWERS, WRONGS)
    assert (real > 2).all()  # the trained model prefers the key
    for heads in (False, True):
        attrs, labels = cache.logit_attribution(ANSWERS, WRONGS, heads=heads)
        assert labels[-2:] == ["ln_final_bias", "unembed_bias"] and attrs.shape == (len(labels), len(PROMPTS))
        np.testing.assert_allclose(attrs.sum(0).numpy(), real, rtol=0, atol=1e-4)
    # logit_attrs of the stack plus the two bias terms is the same decomposition
    stack, _ = cache.decompose_resid(pos=-1)
    direct = cache.logit_attrs(stack, ANSWERS, WRONGS)
    np.testing.assert_allclose(direct.numpy(), cache.logit_attribution(ANSWERS, WRONGS)[0][:-2].numpy(),
                               rtol=0, atol=1e-10)


def test_frozen_norm_reproduces_the_model_s_normalised_stream(lm):
    """apply_ln_to_stack of every component, summed, times the norm's weight plus its bias, is
    the model's own final-norm output (ln_final.hook_normalized): the scale is the real one."""
    cache = ActivationCache.run(lm, PROMPTS[:3])
    stack, _ = cache.decompose_resid(pos=-1)
    norm = lm.final_norm
    out = cache.apply_ln_to_stack(stack, pos=-1).sum(0) * norm.weight.detach().double()
    out = out if getattr(norm, "bias", None) is None else out + norm.bias.detach().double()
    np.testing.assert_allclose(out.numpy(), cache["ln_final.hook_normalized"][:, -1].double().numpy(),
                               rtol=0, atol=1e-5)


def test_the_entry_matches_the_cache_and_its_identities(key_lm, tmp_path):
    """native:direct_logit_attribution: its terms sum to the logit difference, each layer's heads
    plus bias give its attn_out term, and it equals the cache's numbers; heads=False leaves the
    per-head fields empty; the result saves and loads."""
    e = xs.create_explainer("native:direct_logit_attribution", key_lm)
    r = e.explain(PROMPTS[0], ANSWERS[0], WRONGS[0])
    assert isinstance(r, DirectLogitAttribution) and r.position == len(r.tokens) - 1
    assert abs(r.logit_diff - _logit_diff(key_lm, PROMPTS[:1], ANSWERS[:1], WRONGS[:1])[0]) < 1e-5
    assert abs(r.attributions.sum() - r.logit_diff) < 1e-4
    per_layer = r.head_attributions.sum(1) + r.attn_bias_attributions
    np.testing.assert_allclose(per_layer, [r.attributions[r.labels.index(f"{i}_attn_out")] for i in range(2)],
                               atol=1e-6)
    cache = ActivationCache.run(key_lm, PROMPTS[0])
    from_cache = cache.logit_attribution(ANSWERS[0], WRONGS[0])[0][:, 0].numpy()
    np.testing.assert_allclose(r.attributions, from_cache, rtol=0, atol=1e-12)
    frame = r.to_frame()
    assert len(frame) == len(r.labels) + r.head_attributions.size + key_lm.n_layers
    assert abs(frame.attribution[frame.level == "component"].sum() - r.logit_diff) < 1e-4
    # the answer's logit alone, at an earlier position
    alone = DirectLogitAttributionExplainer(key_lm, heads=False).explain(PROMPTS[0], ANSWERS[0], position=5)
    with torch.no_grad():
        logit = key_lm.logits(key_lm.encode(PROMPTS[0]).ids[None])[0, 5, r.answer_id].item()
    assert alone.head_attributions is None and alone.wrong is None and alone.position == 5
    assert abs(alone.attributions.sum() - logit) < 1e-4
    back = xs.load(alone.save(tmp_path / "alone.npz"))
    assert back.head_attributions is None and back.labels == alone.labels and back.wrong is None
    np.testing.assert_array_equal(back.attributions, alone.attributions)


def test_heads_reading_the_key_carry_the_direct_effect_of_their_layer(key_lm):
    """Planted signal: on the key task, layer 0's heads that attend from the last position to
    the key token (weight > 0.5) carry nearly all of that layer's direct effect on logit(answer)
    - logit(wrong key), the layer's top head attends to the key with weight > 0.9, and those
    heads favour the answer on every prompt. (Layer 1's heads read the key from the stream,
    where layer 0 copied it, not from the key position: their attention to it is 0.15-0.3.)"""
    cache = ActivationCache.run(key_lm, PROMPTS, patterns=True)
    attrs, labels = cache.logit_attribution(ANSWERS, WRONGS, heads=True)
    rows = [i for i, lab in enumerate(labels) if re.fullmatch(r"L\d+H\d+", lab)]
    per_prompt = attrs[rows].numpy().reshape(key_lm.n_layers, key_lm.n_heads, len(PROMPTS))
    to_key = torch.stack([cache[f"blocks.{layer}.attn.hook_pattern"][:, :, -1, KEY_POSITION].mean(0)
                          for layer in range(key_lm.n_layers)]).numpy()  # (L, H), mean over prompts
    layer0, reading = per_prompt[0].mean(1), to_key[0] > 0.5
    assert to_key[0, layer0.argmax()] > 0.9, (layer0, to_key)
    assert 1 <= reading.sum() < key_lm.n_heads, to_key
    assert layer0[reading].sum() > 0.9 * layer0.sum() > 0, (layer0, to_key)
    assert (per_prompt[0][reading].sum(0) > 0).all(), "the key heads must favour the answer on every prompt"


# -- attention -----------------------------------------------------------------------------------
def test_attention_entry_and_plots(key_lm):
    """native:attention_pattern equals the cache's hook_pattern; plot_attention draws one heat map
    per head and refuses a layer that does not exist."""
    import matplotlib

    matplotlib.use("Agg")
    r = xs.create_explainer("native:attention_pattern", key_lm).explain(PROMPTS[0])
    assert isinstance(r, AttentionResult) and r.pattern.shape == (2, 4, len(r.tokens), len(r.tokens))
    cache = ActivationCache.run(key_lm, PROMPTS[0], heads=False, patterns=True)
    np.testing.assert_allclose(r.pattern[1], cache["blocks.1.attn.hook_pattern"][0].numpy(), atol=0)
    fig = r.plot(layer=1)
    assert len([ax for ax in fig.axes if ax.get_title().startswith("layer 1, head")]) == 4
    fig = plot_attention(r.pattern, r.tokens, layer=0, heads=[2])
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["layer 0, head 2"]
    with pytest.raises(ValueError, match="layer must be"):
        plot_attention(r.pattern, r.tokens, layer=2)
    with pytest.raises(ValueError, match="pattern must have shape"):
        plot_attention(r.pattern[0], r.tokens)
    frame = r.to_frame()
    assert len(frame) == r.pattern.size and frame.weight.sum() == pytest.approx(2 * 4 * len(r.tokens), 1e-4)


def test_html_views_are_whole_offline_pages_with_every_head(key_lm, tmp_path):
    """The head view lists every layer and head in its dropdown, tokens on both axes; the DLA page
    holds its bars and the head heat map; both are whole documents referring to nothing outside."""
    att = AttentionPattern(key_lm).explain(PROMPTS[0])
    fig = attention_figure(att)
    buttons = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert buttons == [f"layer {layer}, head {h}" for layer in range(2) for h in range(4)]
    assert len(fig.data) == 8 and [t.visible for t in fig.data].count(True) == 1
    assert list(fig.layout.xaxis.ticktext) == att.tokens
    dla = DirectLogitAttributionExplainer(key_lm).explain(PROMPTS[0], ANSWERS[0], WRONGS[0])
    for result, marker in ((att, "layer 1, head 3"), (dla, "direct effect on")):
        text = result.to_html(tmp_path / f"{type(result).__name__}.html").read_text(encoding="utf-8")
        assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
        assert marker in text and result.method in text
        found = _EXTERNAL.search(text)  # plotly.js, inlined, names URLs in its code: tags only
        assert found is None, f"an external reference: {found.group()!r}"


# -- refusals ------------------------------------------------------------------------------------
def test_bad_input_and_layouts_without_a_decomposition(key_lm):
    """Clear errors: positions, layers and token lists out of range, the same token twice, batches
    of unequal prompts; no per-head split where a norm follows attention (Gemma-2), no DLA with
    soft-capped logits, no resid_mid in parallel attention (GPT-J)."""
    cache = ActivationCache.run(key_lm, PROMPTS[:2])
    n = cache.ids.shape[1]
    with pytest.raises(ValueError, match=rf"pos must be None or an int in \[-{n}, {n}\)"):
        cache.decompose_resid(pos=n)
    with pytest.raises(ValueError, match=r"layer must be None or an int in \[0, 2\]"):
        cache.accumulated_resid(layer=3)
    with pytest.raises(ValueError, match="one per row"):
        cache.logit_attribution(ANSWERS[:3], WRONGS[:2])
    with pytest.raises(ValueError, match="same token"):
        cache.logit_attribution(" a", " a")
    with pytest.raises(ValueError, match="stack must have shape"):
        cache.logit_attrs(cache.decompose_resid(pos=0)[0][:, :1], " a", " b")
    with pytest.raises(KeyError, match="pass names="):
        cache["blocks.0.attn.hook_q"]
    with pytest.raises(ValueError, match="same number of tokens"):
        ActivationCache.run(key_lm, [PROMPTS[0], PROMPTS[0] + " red"])
    with pytest.raises(TypeError, match="integer token ids"):
        ActivationCache.run(key_lm, torch.zeros(1, 3))
    with pytest.raises(KeyError, match="heads=True"):
        ActivationCache.run(key_lm, PROMPTS[0], heads=False).stack_head_results()

    gemma2 = _tiny("Gemma2ForCausalLM", "Gemma2Config", num_key_value_heads=2, head_dim=8,
                   final_logit_softcapping=30.0)
    g = ActivationCache.run(gemma2, PROMPTS[0], heads=False)
    torch.testing.assert_close(g.decompose_resid()[0].sum(0), g.resid(), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="post_attention_layernorm"):
        g.stack_head_results()
    with pytest.raises(ValueError, match="soft-caps its logits"):
        g.logit_attribution(" a", " b")
    gptj = _tiny("GPTJForCausalLM", "GPTJConfig", rotary_dim=4)
    with torch.no_grad():  # initialised to zero: make the unembedding's bias count
        gptj.unembed.bias.normal_(generator=torch.Generator().manual_seed(0))
    j = ActivationCache.run(gptj, PROMPTS[0])
    with pytest.raises(ValueError, match="no resid_mid"):
        j.accumulated_resid(incl_mid=True)
    real = _logit_diff(gptj, PROMPTS[:1], [" a"], [" b"])[0]  # GPT-J: parallel attention, an unembedding bias
    attrs, labels = j.logit_attribution(" a", " b", heads=True)
    assert abs(float(attrs.sum()) - real) < 1e-4 and attrs[labels.index("unembed_bias"), 0] != 0
