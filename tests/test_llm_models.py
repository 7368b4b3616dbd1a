"""The LLM adapter's foundation: LanguageModel, its hook points, and the tiny key-task model."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import xai_suite as xs
from xai_suite.modeling import model_kind
from xai_suite_llm import (
    KEY_POSITION,
    LanguageModel,
    make_key_prompts,
    make_tiny_gpt2,
    make_tiny_llama,
    make_tiny_tokenizer,
)
from xai_suite_llm.models import SITES


def _ids(lm, prompts):
    return torch.tensor(lm.tokenizer(prompts, add_special_tokens=False)["input_ids"])


@pytest.fixture(scope="module")
def tiny_llama():
    tok = make_tiny_tokenizer()
    model = make_tiny_llama(len(tok), n_embd=32, n_kv_head=4, n_positions=64, random_state=0)
    return LanguageModel(model, tok, device="cpu")


@pytest.fixture(scope="module")
def tiny_phi():
    """Phi (parallel attention and MLP, a final_layernorm): hook points verified below."""
    from transformers import PhiConfig, PhiForCausalLM

    tok = make_tiny_tokenizer()
    config = PhiConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=64)
    torch.manual_seed(0)
    return LanguageModel(PhiForCausalLM(config).eval(), tok, device="cpu")


def test_architectures_whose_hook_points_would_lie_are_refused_up_front():
    """BLOOM (residual added inside attention and MLP) and Falcon (MLP output summed with the
    attention's in place) are refused at construction, by name and reason, not by a crash in
    the first hook."""
    from transformers import BloomConfig, BloomForCausalLM, FalconConfig, FalconForCausalLM

    tok = make_tiny_tokenizer()
    bloom = BloomForCausalLM(BloomConfig(vocab_size=len(tok), hidden_size=32, n_layer=1, n_head=4))
    falcon = FalconForCausalLM(FalconConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                            num_attention_heads=4))
    with pytest.raises(TypeError, match=r"\(bloom\) is not supported: its attention and MLP modules add"):
        LanguageModel(bloom, tok, device="cpu")
    with pytest.raises(TypeError, match=r"\(falcon\) is not supported: .*in place"):
        LanguageModel(falcon, tok, device="cpu")
    gpt2 = make_tiny_gpt2(len(tok))
    gpt2.transformer.ln_f = None  # a layout with a part missing: named, not a NoneType crash
    with pytest.raises(TypeError, match="no final norm module"):
        LanguageModel(gpt2, tok, device="cpu")


def test_the_key_task_is_learnt_and_its_answer_is_the_key_token(key_lm):
    prompts, answers = make_key_prompts(100, random_state=1)
    ids = _ids(key_lm, prompts)
    with torch.no_grad():
        probs = key_lm.logits(ids)[:, -1].softmax(-1)
    want = torch.stack([key_lm.token_ids(a)[0] for a in answers])
    assert (probs.argmax(-1) == want).all()
    assert probs[torch.arange(100), want].min() > 0.9
    # the answer is the prompt's token at KEY_POSITION, which is in the second sentence
    enc = key_lm.encode(prompts[0])
    assert enc.tokens[KEY_POSITION] == answers[0].strip()
    assert enc.text[enc.offsets[KEY_POSITION][0]:enc.offsets[KEY_POSITION][1]] == answers[0].strip()
    assert key_lm.decode(key_lm.generate(enc.ids, 1)).strip() == answers[0].strip()


def test_prompts_are_seeded():
    assert make_key_prompts(5, random_state=3) == make_key_prompts(5, random_state=3)
    assert make_key_prompts(5, random_state=3) != make_key_prompts(5, random_state=4)


@pytest.mark.parametrize("which", ["gpt2", "llama", "phi"])
def test_hook_points_decompose_the_residual_stream(which, key_lm, tiny_llama, tiny_phi):
    lm = {"gpt2": key_lm, "llama": tiny_llama, "phi": tiny_phi}[which]
    ids = _ids(lm, make_key_prompts(3, random_state=0)[0])
    logits, cache = lm.run_with_cache(ids)
    assert list(cache) == lm.hook_names()
    whole = [n for n in cache if n.rsplit(".", 1)[-1].removeprefix("hook_") in SITES]  # and the finer ones
    assert whole == [f"blocks.{layer}.hook_{s}" for layer in range(lm.n_layers) for s in SITES]
    for layer in range(lm.n_layers):
        pre, post = cache[f"blocks.{layer}.hook_resid_pre"], cache[f"blocks.{layer}.hook_resid_post"]
        added = cache[f"blocks.{layer}.hook_attn_out"] + cache[f"blocks.{layer}.hook_mlp_out"]
        torch.testing.assert_close(pre + added, post, atol=1e-5, rtol=1e-5)
        if layer + 1 < lm.n_layers:
            torch.testing.assert_close(post, cache[f"blocks.{layer + 1}.hook_resid_pre"])
    # what the unembedding reads is the final norm of the last residual stream
    last = cache[f"blocks.{lm.n_layers - 1}.hook_resid_post"]
    torch.testing.assert_close(lm.final_norm(last), cache["ln_final.hook_normalized"])
    torch.testing.assert_close(lm.unembed(cache["ln_final.hook_normalized"]), logits)


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_replacing_an_activation_changes_what_follows_and_only_inside_the_block(which, key_lm, tiny_llama):
    lm = key_lm if which == "gpt2" else tiny_llama
    ids = _ids(lm, make_key_prompts(2, random_state=0)[0])
    before = lm.logits(ids).detach()
    clean, cache = lm.run_with_cache(ids)
    # writing back the activation it had leaves every logit unchanged
    same = lm.run_with_hooks(ids, {n: (lambda a, n=n: cache[n].clone()) for n in lm.hook_names()})
    torch.testing.assert_close(same, clean)
    # zeroing the last block's MLP output changes the logits by exactly unembed(norm(...)) terms
    name = f"blocks.{lm.n_layers - 1}.hook_mlp_out"
    patched = lm.run_with_hooks(ids, {name: torch.zeros_like})
    resid = cache[f"blocks.{lm.n_layers - 1}.hook_resid_post"] - cache[name]
    torch.testing.assert_close(patched, lm.unembed(lm.final_norm(resid)), atol=1e-5, rtol=1e-5)
    # resid_pre replacement: a block input written in
    patched = lm.run_with_hooks(ids, {"blocks.0.hook_resid_pre": torch.zeros_like})
    assert not torch.allclose(patched, clean)
    assert torch.equal(lm.logits(ids.to(lm.device)).detach(), before)  # hooks removed afterwards


def test_hook_errors_name_what_was_expected(key_lm):
    ids = _ids(key_lm, make_key_prompts(1, random_state=0)[0])
    with pytest.raises(ValueError, match="unknown hook point 'blocks.0.resid'"):
        key_lm.run_with_cache(ids, ["blocks.0.resid"])
    with pytest.raises(ValueError, match=r"layers 0\.\.1"):
        key_lm.run_with_cache(ids, ["blocks.5.hook_resid_pre"])
    with pytest.raises(ValueError, match="must return None or a tensor of shape"):
        key_lm.run_with_hooks(ids, {"blocks.0.hook_mlp_out": lambda a: a[:, :1]})
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        key_lm.logits(ids[0])
    with pytest.raises(ValueError, match="non-empty string"):
        key_lm.encode("  ")


def test_language_model_validation_and_kind(key_lm):
    assert model_kind(key_lm) == "hf_causal_lm"
    with pytest.raises(TypeError, match="causal LM"):
        LanguageModel(torch.nn.Linear(2, 2), key_lm.tokenizer)
    with pytest.raises(TypeError, match="fast tokenizer"):
        LanguageModel(key_lm.model, object())
    assert "layers=2" in repr(key_lm)


def test_from_pretrained_loads_a_local_folder_without_downloading(key_lm, tmp_path):
    key_lm.model.save_pretrained(tmp_path)
    key_lm.tokenizer.save_pretrained(tmp_path)
    lm = LanguageModel.from_pretrained(str(tmp_path), device="cpu")
    ids = _ids(lm, make_key_prompts(2, random_state=0)[0])
    np.testing.assert_allclose(lm.logits(ids).detach().numpy(), key_lm.logits(ids).detach().numpy(),
                               atol=1e-6)
    with pytest.raises(OSError):
        LanguageModel.from_pretrained(str(tmp_path / "missing"))


def test_text_and_image_modalities_list_their_explainers():
    listed = xs.list_explainers(modality="text")
    assert len(listed) > 0
    assert all("text" in m for m in listed.modalities)
    assert set(listed.model_kinds) == {"hf_causal_lm"}
    image = xs.list_explainers(modality="image")
    assert {"native:integrated_gradients", "native:lrp", "captum:grad_cam"} <= set(image.qualified_name)
