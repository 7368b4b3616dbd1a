"""Hook points at TransformerLens granularity (xai_suite_llm.models), on every supported layout.

Each layout is a tiny random model built from its config class (2 layers, d_model 32, 4 heads,
2 key/value heads where the architecture has grouped-query attention). The prompts are 18
tokens long, longer than the sliding windows (4) of Mistral, Gemma-2/3 and GPT-Neo's local layer.
"""

import functools

import pytest
import torch

pytest.importorskip("transformers")

from xai_suite_llm import LanguageModel, make_key_prompts, make_tiny_llama, make_tiny_tokenizer
from xai_suite_llm.models import ATTENTION, BLOCK_HOOKS, SITES

TOK = make_tiny_tokenizer()
_COMMON = dict(vocab_size=len(TOK), bos_token_id=2, eos_token_id=2, pad_token_id=0)
_DECODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=32, **_COMMON)
#: layout -> (model class, config class, config kwargs)
LAYOUTS = {
    "gpt2": ("GPT2LMHeadModel", "GPT2Config",
             dict(n_embd=32, n_layer=2, n_head=4, n_positions=32, **_COMMON)),
    "gpt_neo": ("GPTNeoForCausalLM", "GPTNeoConfig",
                dict(hidden_size=32, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
                     window_size=4, max_position_embeddings=32, **_COMMON)),
    "gptj": ("GPTJForCausalLM", "GPTJConfig",
             dict(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=32, **_COMMON)),
    "llama": ("LlamaForCausalLM", "LlamaConfig", dict(num_key_value_heads=2, **_DECODER)),
    "mistral": ("MistralForCausalLM", "MistralConfig",
                dict(num_key_value_heads=2, sliding_window=4, **_DECODER)),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", dict(num_key_value_heads=2, **_DECODER)),
    "qwen3": ("Qwen3ForCausalLM", "Qwen3Config", dict(num_key_value_heads=2, head_dim=8, **_DECODER)),
    "neox_parallel": ("GPTNeoXForCausalLM", "GPTNeoXConfig", dict(use_parallel_residual=True, rotary_pct=0.5,
                                                                  **_DECODER)),
    "neox_sequential": ("GPTNeoXForCausalLM", "GPTNeoXConfig", dict(use_parallel_residual=False, **_DECODER)),
    "gemma": ("GemmaForCausalLM", "GemmaConfig", dict(num_key_value_heads=2, head_dim=8, **_DECODER)),
    "gemma2": ("Gemma2ForCausalLM", "Gemma2Config",
               dict(num_key_value_heads=2, head_dim=8, sliding_window=4, attn_logit_softcapping=5.0,
                    **_DECODER)),
    "gemma3": ("Gemma3ForCausalLM", "Gemma3TextConfig",
               dict(num_key_value_heads=2, head_dim=8, sliding_window=4,
                    layer_types=["sliding_attention", "full_attention"], **_DECODER)),
    "phi": ("PhiForCausalLM", "PhiConfig", dict(**_DECODER)),
    "phi3": ("Phi3ForCausalLM", "Phi3Config", dict(num_key_value_heads=2, **_DECODER)),
    "olmo": ("OlmoForCausalLM", "OlmoConfig", dict(num_key_value_heads=2, **_DECODER)),
    "olmo2": ("Olmo2ForCausalLM", "Olmo2Config", dict(num_key_value_heads=2, **_DECODER)),
}
ROTARY = set(LAYOUTS) - {"gpt2", "gpt_neo"}
PARALLEL = {"gptj", "phi", "neox_parallel"}
GATED = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "olmo", "olmo2"}
KV_HEADS = {name: 2 if "num_key_value_heads" in cfg else 4 for name, (_, _, cfg) in LAYOUTS.items()}
#: (layout, layer) -> sliding window
WINDOWS = {("mistral", 0): 4, ("mistral", 1): 4, ("gemma2", 0): 4, ("gemma3", 0): 4, ("gpt_neo", 1): 4}


@functools.cache
def build(layout: str) -> LanguageModel:
    import transformers

    model_cls, config_cls, kwargs = LAYOUTS[layout]
    config = getattr(transformers, config_cls)(**kwargs)
    torch.manual_seed(0)
    return LanguageModel(getattr(transformers, model_cls)(config).eval(), TOK, device="cpu")


IDS = torch.tensor(TOK(make_key_prompts(2, random_state=0)[0], add_special_tokens=False)["input_ids"])
B, T = IDS.shape


def _refused(layout: str) -> set[str]:
    out = {"hook_pos_embed"} if layout in ROTARY else {"attn.hook_rot_q", "attn.hook_rot_k"}
    out |= {"hook_resid_mid"} if layout in PARALLEL else set()
    return out | (set() if layout in GATED else {"mlp.hook_pre_linear"})


def _head_zeroed(h: int, dim: int):
    """A hook function zeroing head ``h`` along dimension ``dim``."""
    def fn(act):
        act = act.clone()
        act.select(dim, h).zero_()
        return act
    return fn


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request):
    return request.param


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny models run fastest on one thread."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def test_every_hook_point_has_the_documented_shape(layout):
    lm = build(layout)
    logits, cache = lm.run_with_cache(IDS)
    assert list(cache) == lm.hook_names()
    blocks = [s for s in BLOCK_HOOKS if s not in _refused(layout)]
    top = ["hook_embed"] + ([] if layout in ROTARY else ["hook_pos_embed"])
    assert lm.hook_names() == [*top, *(f"blocks.{i}.{s}" for i in range(2) for s in blocks),
                               "ln_final.hook_normalized"]
    h, k, d, m = 4, KV_HEADS[layout], 8, cache["blocks.0.mlp.hook_post"].shape[-1]
    assert (lm.n_heads, lm.n_kv_heads, lm.d_head) == (h, k, d)
    assert m == {"gpt2": 128, "gpt_neo": 128, "gptj": 128}.get(layout, 64)
    shapes = {"attn.hook_q": (B, T, h, d), "attn.hook_k": (B, T, k, d), "attn.hook_v": (B, T, k, d),
              "attn.hook_rot_q": (B, T, h, d), "attn.hook_rot_k": (B, T, k, d),
              "attn.hook_attn_scores": (B, h, T, T), "attn.hook_pattern": (B, h, T, T),
              "attn.hook_z": (B, T, h, d), "attn.hook_result": (B, T, h, 32),
              "mlp.hook_pre": (B, T, m), "mlp.hook_pre_linear": (B, T, m), "mlp.hook_post": (B, T, m)}
    for name, act in cache.items():
        assert tuple(act.shape) == shapes.get(name.split(".", 2)[-1], (B, T, 32)), name
    torch.testing.assert_close(logits, lm.logits(IDS), atol=1e-5, rtol=0)


def test_writing_back_each_cached_value_leaves_the_logits_unchanged(layout):
    lm = build(layout)
    clean = lm.logits(IDS).detach()
    _, cache = lm.run_with_cache(IDS)
    for name in (n for n in lm.hook_names() if not n.startswith("blocks.0.")):  # block 0 is block 1's twin
        same = lm.run_with_hooks(IDS, {name: lambda act, name=name: cache[name].clone()})
        torch.testing.assert_close(same, clean, atol=1e-5, rtol=0, msg=name)
    # all at once, given in reverse order (they run in execution order all the same)
    every = {n: (lambda act, n=n: cache[n].clone()) for n in reversed(lm.hook_names())}
    torch.testing.assert_close(lm.run_with_hooks(IDS, every), clean, atol=1e-5, rtol=0)


def test_the_attention_function_equals_the_default_path_and_is_switched_in_only_while_needed(layout):
    lm = build(layout)
    before = lm.model.config._attn_implementation
    seen = []

    def spy(act):
        seen.append(lm.model.config._attn_implementation)

    clean = lm.logits(IDS).detach()
    for name in ("attn.hook_attn_scores", "attn.hook_pattern"):
        got = lm.run_with_hooks(IDS, {f"blocks.0.{name}": spy})
        torch.testing.assert_close(got, clean, atol=1e-5, rtol=0)
    assert lm.model.config._attn_implementation == before != ATTENTION
    assert seen == [before if layout == "gpt_neo" else ATTENTION] * 2  # GPT-Neo: its _attn is replaced
    assert "_attn" not in vars(lm._cores[0])
    with pytest.raises(ZeroDivisionError):  # an error inside a hook restores the model too
        lm.run_with_hooks(IDS, {"blocks.1.attn.hook_pattern": lambda act: 1 / 0})
    assert lm.model.config._attn_implementation == before


def test_heads_results_and_patterns_add_up(layout):
    lm = build(layout)
    proj_out = {}
    handles = [lm._sites[i]["attn.hook_result"].module.register_forward_hook(
        lambda mod, args, out, i=i: proj_out.__setitem__(i, out.detach())) for i in range(2)]
    try:
        _, cache = lm.run_with_cache(IDS)
    finally:
        for h in handles:
            h.remove()
    groups = 4 // KV_HEADS[layout]
    for i in range(2):
        c = {n.split(".", 2)[-1]: v for n, v in cache.items() if n.startswith(f"blocks.{i}.")}
        o_proj = lm._sites[i]["attn.hook_result"].module
        bias = 0 if o_proj.bias is None else o_proj.bias
        # b_O is in no head: the heads' results plus b_O are the output projection's output ...
        heads_sum = c["attn.hook_result"].sum(2) + bias
        torch.testing.assert_close(heads_sum, proj_out[i], atol=1e-5, rtol=0)
        if layout not in ("gemma2", "gemma3", "olmo2"):  # ... which is attn_out but where a norm follows
            torch.testing.assert_close(heads_sum, c["hook_attn_out"], atol=1e-5, rtol=0)
        pattern, scores = c["attn.hook_pattern"], c["attn.hook_attn_scores"]
        torch.testing.assert_close(pattern.sum(-1), torch.ones(B, 4, T), atol=1e-5, rtol=0)
        t, s = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
        allowed = (s <= t) & (t - s < WINDOWS.get((layout, i), T))
        assert torch.equal(scores.isneginf(), ~allowed.expand_as(scores))
        assert torch.equal(pattern == 0, ~allowed.expand_as(pattern))
        v = c["attn.hook_v"].repeat_interleave(groups, 2)  # query head h reads kv head h // groups
        torch.testing.assert_close(c["attn.hook_z"], torch.einsum("bhts,bshd->bthd", pattern, v),
                                   atol=1e-5, rtol=0)
        # the scores are the model's scaled q.k (after rotary where the model has it)
        q, k = (c["attn.hook_rot_q"], c["attn.hook_rot_k"]) if layout in ROTARY else \
            (c["attn.hook_q"], c["attn.hook_k"])
        qk = torch.einsum("bthd,bshd->bhts", q, k.repeat_interleave(groups, 2))
        qk = qk * getattr(lm._cores[i], "scaling", 1.0)
        if layout == "gemma2":
            qk = torch.tanh(qk / 5.0) * 5.0
        torch.testing.assert_close(scores[:, :, allowed], qk[:, :, allowed], atol=1e-5, rtol=0)
        if layout not in PARALLEL:  # resid_mid is the stream between the sub-layers
            torch.testing.assert_close(c["hook_resid_mid"], c["hook_resid_pre"] + c["hook_attn_out"])
            torch.testing.assert_close(c["hook_resid_mid"], c["hook_resid_post"] - c["hook_mlp_out"],
                                       atol=1e-5, rtol=0)
        if layout not in ROTARY:  # the token and position embeddings make the first stream
            torch.testing.assert_close(cache["hook_embed"] + cache["hook_pos_embed"],
                                       cache["blocks.0.hook_resid_pre"])


def test_overwriting_each_hook_point_changes_what_follows(layout):
    lm = build(layout)
    clean, cache = lm.run_with_cache(IDS)
    groups = 4 // KV_HEADS[layout]

    def run(fns, names=("blocks.1.attn.hook_pattern", "blocks.1.attn.hook_z", "blocks.1.mlp.hook_post",
                        "blocks.1.hook_mlp_out", "blocks.0.hook_resid_pre")):
        return lm.run_with_cache(IDS, names, fns)

    def uniform(pattern):  # each allowed key weighted equally
        return pattern > 0, torch.where(pattern > 0, 1.0 / (pattern > 0).sum(-1, keepdim=True), 0.0)

    # one head's pattern or z zeroed, or its result: the same logits, and not the clean ones
    by_pattern, c = run({"blocks.1.attn.hook_pattern": _head_zeroed(1, 1)})
    assert torch.equal(c["blocks.1.attn.hook_z"][:, :, 1], torch.zeros(B, T, 8))
    by_z = lm.run_with_hooks(IDS, {"blocks.1.attn.hook_z": _head_zeroed(1, 2)})
    by_result = lm.run_with_hooks(IDS, {"blocks.1.attn.hook_result": _head_zeroed(1, 2)})
    torch.testing.assert_close(by_pattern, by_z, atol=1e-5, rtol=0)
    torch.testing.assert_close(by_z, by_result, atol=1e-5, rtol=0)
    assert (by_z - clean).abs().max() > 1e-3
    # a zero query (or key, for its group of query heads) gives a uniform pattern over the allowed keys
    for name, head, heads in (("attn.hook_q", 1, [1]), ("attn.hook_k", 0, list(range(groups)))):
        _, c = run({f"blocks.1.{name}": _head_zeroed(head, 2)})
        got = c["blocks.1.attn.hook_pattern"][:, heads]
        torch.testing.assert_close(got, uniform(cache["blocks.1.attn.hook_pattern"][:, heads])[1],
                                   atol=1e-6, rtol=0)
    if layout in ROTARY:
        _, c = run({"blocks.1.attn.hook_rot_q": _head_zeroed(1, 2)})
        torch.testing.assert_close(c["blocks.1.attn.hook_pattern"][:, 1],
                                   uniform(cache["blocks.1.attn.hook_pattern"][:, 1])[1], atol=1e-6, rtol=0)
    flat = lambda s: torch.where(s.isneginf(), s, torch.zeros_like(s))  # noqa: E731
    _, c = run({"blocks.1.attn.hook_attn_scores": flat})
    torch.testing.assert_close(c["blocks.1.attn.hook_pattern"],
                               uniform(cache["blocks.1.attn.hook_pattern"])[1], atol=1e-6, rtol=0)
    # a zero value head (a group of query heads reads it) gives those heads zero z
    _, c = run({"blocks.1.attn.hook_v": _head_zeroed(0, 2)})
    assert torch.equal(c["blocks.1.attn.hook_z"][:, :, :groups], torch.zeros(B, T, groups, 8))
    assert c["blocks.1.attn.hook_z"][:, :, groups:].abs().max() > 0
    # MLP: a zero pre-activation (gate or up projection) is a zero activation (act(0) = 0)
    for name in ["mlp.hook_pre"] + (["mlp.hook_pre_linear"] if layout in GATED else []):
        _, c = run({f"blocks.1.{name}": torch.zeros_like})
        assert torch.equal(c["blocks.1.mlp.hook_post"], torch.zeros_like(c["blocks.1.mlp.hook_post"]))
    _, c = run({"blocks.1.mlp.hook_post": torch.zeros_like})  # then the MLP's output is the same everywhere
    out = c["blocks.1.hook_mlp_out"]
    torch.testing.assert_close(out, out[:1, :1].expand_as(out), atol=1e-6, rtol=0)
    if layout not in ROTARY:
        _, c = run({"hook_pos_embed": torch.zeros_like})
        torch.testing.assert_close(c["blocks.0.hook_resid_pre"], cache["hook_embed"])
    if layout not in PARALLEL:
        # resid_mid set to X is attn_out set to X - resid_pre; the MLP and later layers see X
        x = cache["blocks.0.hook_resid_mid"].flip(0)
        by_mid, c = lm.run_with_cache(IDS, ["blocks.0.hook_resid_post", "blocks.0.hook_mlp_out"],
                                      {"blocks.0.hook_resid_mid": lambda act: x})
        by_attn = lm.run_with_hooks(IDS, {"blocks.0.hook_attn_out":
                                          lambda act: x - cache["blocks.0.hook_resid_pre"]})
        torch.testing.assert_close(by_mid, by_attn, atol=1e-5, rtol=0)
        torch.testing.assert_close(c["blocks.0.hook_resid_post"] - c["blocks.0.hook_mlp_out"], x,
                                   atol=1e-5, rtol=0)
        assert (by_mid - clean).abs().max() > 1e-3


def test_hook_points_a_layout_lacks_are_refused_with_the_reason(layout):
    lm = build(layout)
    reasons = {"hook_pos_embed": "has no position embeddings: it uses rotary position embeddings",
               "attn.hook_rot_q": "has no rotary embeddings: it adds learned position embeddings",
               "attn.hook_rot_k": "has no rotary embeddings",
               "hook_resid_mid": r"has no resid_mid: its attention and MLP read the same input \(parallel",
               "mlp.hook_pre_linear": "MLP is not gated"}
    for suffix in _refused(layout):
        name = suffix if suffix == "hook_pos_embed" else f"blocks.1.{suffix}"
        with pytest.raises(ValueError, match=f"{name!r} is refused: .*{reasons[suffix]}"):
            lm.run_with_cache(IDS, [name])


def test_bad_names_and_replacements_are_refused(key_lm):
    ids = IDS
    with pytest.raises(ValueError, match=r"unknown hook point 'blocks.0.attn.hook_qq'; expected hook_embed, "
                                         r"hook_pos_embed, blocks.<layer>.<hook_resid_pre\|attn.hook_q\|"):
        key_lm.run_with_cache(ids, ["blocks.0.attn.hook_qq"])
    with pytest.raises(ValueError, match=r"'blocks.2.attn.hook_z': the model has layers 0\.\.1"):
        key_lm.run_with_cache(ids, ["blocks.2.attn.hook_z"])
    with pytest.raises(ValueError, match=r"unknown hook point 'blocks.0.attn.hook_z.3'"):
        key_lm.run_with_hooks(ids, {"blocks.0.attn.hook_z.3": torch.zeros_like})
    for name, wrong in (("blocks.0.attn.hook_pattern", lambda a: a[:, :1]),
                        ("blocks.0.attn.hook_result", lambda a: a.sum(2)),
                        ("blocks.0.attn.hook_q", lambda a: a.flatten(2)),
                        ("hook_pos_embed", lambda a: a[:1])):
        with pytest.raises(ValueError, match=f"hook '{name}' must return None or a tensor of shape"):
            key_lm.run_with_hooks(ids, {name: wrong})


def test_the_whole_layer_sites_are_unchanged(key_lm):
    assert SITES == ("resid_pre", "attn_out", "mlp_out", "resid_post")
    names = key_lm.hook_names()
    whole = [n for n in names if n.rsplit(".", 1)[-1].removeprefix("hook_") in SITES]
    assert whole == [f"blocks.{i}.hook_{s}" for i in range(2) for s in SITES]


def test_a_tiny_llama_learns_the_key_task_and_has_grouped_query_hooks(key_llama):
    lm = key_llama
    assert type(lm.model).__name__ == "LlamaForCausalLM"
    assert (lm.n_heads, lm.n_kv_heads, lm.d_head) == (4, 2, 16)
    prompts, answers = make_key_prompts(50, random_state=1)
    ids = torch.tensor(lm.tokenizer(prompts, add_special_tokens=False)["input_ids"])
    logits, cache = lm.run_with_cache(ids, ["blocks.1.attn.hook_k", "blocks.1.attn.hook_result",
                                            "blocks.1.hook_attn_out"])
    want = torch.stack([lm.token_ids(a)[0] for a in answers])
    assert (logits[:, -1].argmax(-1) == want).all()
    assert cache["blocks.1.attn.hook_k"].shape == (50, T, 2, 16)
    torch.testing.assert_close(cache["blocks.1.attn.hook_result"].sum(2), cache["blocks.1.hook_attn_out"],
                               atol=1e-5, rtol=0)
    # the builder is seeded
    a, b = make_tiny_llama(10, random_state=3), make_tiny_llama(10, random_state=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(ValueError, match="n_kv_head"):
        make_tiny_llama(10, n_head=4, n_kv_head=3)
