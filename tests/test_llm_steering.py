"""Steering (activation addition, directional ablation) and injection during generation, on
the tiny key model (the answer is the prompt's token at KEY_POSITION)."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from xai_suite_llm import KEY_POSITION, kl_to_final, make_key_prompts
from xai_suite_llm.intervention import embedding_intervention, inject_embedding, intervention_hooks
from xai_suite_llm.steering import (
    ablation_hooks,
    addition_hooks,
    chain_hooks,
    difference_of_means,
    hook_activations,
)

X, Y = " c", " f"


@pytest.fixture(scope="module")
def key_sets():
    """Key-task prompts whose key is X and whose key is Y (for the direction), and 8 more with
    key X held out (not used for the direction)."""
    prompts, answers = make_key_prompts(600, random_state=5)
    with_x = [p for p, a in zip(prompts, answers, strict=True) if a == X]
    with_y = [p for p, a in zip(prompts, answers, strict=True) if a == Y]
    assert len(with_x) > 40 and len(with_y) > 32
    return with_x[:-8], with_y, with_x[-8:]


def _ids(lm, prompts):
    return torch.stack([lm.encode(p).ids for p in prompts])


def _margin(lm, logits):
    """logit(X) - logit(Y) at the last position, shape (B,)."""
    ix, iy = int(lm.token_ids(X)[0]), int(lm.token_ids(Y)[0])
    return logits[:, -1, ix] - logits[:, -1, iy]


def test_difference_of_means_is_the_difference_of_the_cached_means(key_lm, key_sets):
    xs, ys, _ = key_sets
    hook = "blocks.1.hook_resid_pre"
    d = difference_of_means(key_lm, ys[:10], xs[:12], hook, position=-1, batch_size=4)
    means = [key_lm.run_with_cache(_ids(key_lm, p), [hook])[1][hook][:, -1].mean(0)
             for p in (ys[:10], xs[:12])]
    assert d.shape == (key_lm.d_model,) and d.dtype == torch.float32
    torch.testing.assert_close(d, means[0] - means[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d, difference_of_means(key_lm, ys[:10], xs[:12], hook), atol=1e-5, rtol=1e-5)
    # at the key position of the embeddings, it is the difference of the two keys' embeddings
    d0 = difference_of_means(key_lm, ys[:5], xs[:5], "blocks.0.hook_resid_pre", position=KEY_POSITION)
    emb = key_lm.embed.weight.detach()
    torch.testing.assert_close(d0, emb[int(key_lm.token_ids(Y)[0])] - emb[int(key_lm.token_ids(X)[0])],
                               atol=1e-5, rtol=1e-5)


def test_hook_activations_keep_the_prompt_order_across_lengths(key_lm, key_sets):
    prompts = [key_sets[0][0], "red cat . so the answer is", key_sets[0][1]]
    acts = hook_activations(key_lm, prompts, "blocks.0.hook_resid_post", batch_size=1)
    assert [a.shape for a in acts] == [(18, 64), (7, 64), (18, 64)]
    _, cache = key_lm.run_with_cache(key_lm.encode(prompts[1]).ids[None], ["blocks.0.hook_resid_post"])
    torch.testing.assert_close(acts[1], cache["blocks.0.hook_resid_post"][0])


@pytest.mark.parametrize("hook, position", [("blocks.1.hook_resid_pre", -1),
                                            ("blocks.0.hook_resid_pre", KEY_POSITION)])
def test_steering_along_the_key_direction_changes_the_answer_on_8_of_8(key_lm, key_sets, hook, position):
    xs, ys, held = key_sets
    d = difference_of_means(key_lm, ys, xs, hook, position=position)
    fns = addition_hooks(key_lm, hook, d, alpha=1.0, positions=position)
    answers = [int(key_lm.generate(key_lm.encode(p).ids, 1)[0]) for p in held]
    steered = [int(key_lm.generate(key_lm.encode(p).ids, 1, fns=fns)[0]) for p in held]
    assert answers == [int(key_lm.token_ids(X)[0])] * 8
    assert steered == [int(key_lm.token_ids(Y)[0])] * 8


def test_directional_ablation_removes_the_direction_and_the_margin(key_lm, key_sets):
    xs, ys, held = key_sets
    d = difference_of_means(key_lm, ys, xs, "blocks.1.hook_resid_pre", position=-1)
    fns = ablation_hooks(key_lm, d)
    assert set(fns) == {f"blocks.{layer}.hook_{s}" for layer in range(2)
                        for s in ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")}
    ids = _ids(key_lm, held)
    clean = _margin(key_lm, key_lm.run_with_hooks(ids, {}))
    logits, cache = key_lm.run_with_cache(ids, list(fns), fns=fns)
    u = d / d.norm()
    for name in fns:  # no residual stream keeps a component along d
        assert (cache[name] @ u).abs().max() < 1e-4 * cache[name].norm(dim=-1).max()
    ablated = _margin(key_lm, logits)
    assert clean.min() > 5  # measured: 9.6 before, -0.25 after
    assert ablated.abs().max() < 1.0
    # ablating only at the hook point where the direction was found lowers it too
    one_site = ablation_hooks(key_lm, d, hooks=["blocks.1.hook_resid_pre"])
    one = _margin(key_lm, key_lm.run_with_hooks(ids, one_site))
    assert (one < clean - 1).all()


def test_alpha_zero_leaves_the_logits_unchanged_exactly(key_lm, key_sets):
    xs, ys, held = key_sets
    ids = _ids(key_lm, held)
    d = difference_of_means(key_lm, ys, xs, "blocks.1.hook_resid_pre")
    for positions in (None, -1, [0, KEY_POSITION]):
        fns = addition_hooks(key_lm, "blocks.1.hook_resid_pre", d, alpha=0.0, positions=positions)
        assert torch.equal(key_lm.run_with_hooks(ids, fns), key_lm.run_with_hooks(ids, {}))


def test_steering_applies_at_every_generation_step(key_lm, key_sets):
    xs, ys, held = key_sets
    hook = "blocks.1.hook_resid_pre"
    d = difference_of_means(key_lm, ys, xs, hook)
    steer = addition_hooks(key_lm, hook, d, alpha=0.7, positions=None)
    seen = []
    fns = chain_hooks(steer, {hook: lambda act: seen.append(act.shape[1])})
    ids = key_lm.encode(held[0]).ids
    out = key_lm.generate(ids, 3, fns=fns)
    assert seen == [18, 19, 20]
    seq = ids[None]
    for _ in range(3):  # the same loop by hand, steering each full forward pass
        seq = torch.cat([seq, key_lm.run_with_hooks(seq, steer)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, seq[0, ids.shape[0]:])
    assert not torch.equal(out, key_lm.generate(ids, 3))  # the steering did something


def test_chain_hooks_runs_each_function_in_turn(key_lm, key_sets):
    xs, ys, held = key_sets
    hook = "blocks.0.hook_resid_post"
    d = difference_of_means(key_lm, ys, xs, hook)
    ids = _ids(key_lm, held[:2])
    _, plain = key_lm.run_with_cache(ids, [hook])
    _, both = key_lm.run_with_cache(ids, [hook], fns=chain_hooks(
        ablation_hooks(key_lm, d, hooks=[hook]), addition_hooks(key_lm, hook, d, alpha=2.0, positions=[3])))
    u = d / d.norm()
    x = plain[hook]
    expected = x - (x @ u)[..., None] * u
    expected[:, 3] += 2.0 * d
    torch.testing.assert_close(both[hook], expected, atol=1e-5, rtol=1e-5)


def test_injection_of_an_embedding_holds_during_generation(key_lm, key_sets):
    """InTraVisTo's injection (overwrite the stream at a layer and position with a token's
    embedding) works through the same hook route in generate."""
    prompt = key_sets[2][0]
    hook = "blocks.0.hook_resid_pre"
    fns = intervention_hooks([embedding_intervention(key_lm, hook, KEY_POSITION, " d")])
    out = key_lm.generate(key_lm.encode(prompt).ids, 2, fns=fns)
    assert int(out[0]) == int(key_lm.token_ids(" d")[0])
    assert int(out[0]) == int(inject_embedding(key_lm, prompt, hook, KEY_POSITION, " d")[-1].argmax())


def test_bad_input_raises_clear_errors(key_lm, key_sets):
    xs, ys, held = key_sets
    hook = "blocks.1.hook_resid_pre"
    d = torch.ones(key_lm.d_model)
    with pytest.raises(ValueError, match=r"shape \(d_model,\) = \(64,\)"):
        addition_hooks(key_lm, hook, torch.ones(3))
    with pytest.raises(ValueError, match="NaN|finite"):
        addition_hooks(key_lm, hook, torch.full((64,), float("nan")))
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        addition_hooks(key_lm, hook, d, alpha=float("inf"))
    with pytest.raises(ValueError, match="unknown hook point"):
        addition_hooks(key_lm, "blocks.1.resid", d)
    with pytest.raises(TypeError, match="positions must be None"):
        addition_hooks(key_lm, hook, d, positions="last")
    with pytest.raises(ValueError, match="non-zero"):
        ablation_hooks(key_lm, torch.zeros(64))
    with pytest.raises(ValueError, match="out of range for a sequence of 18 tokens"):
        key_lm.run_with_hooks(_ids(key_lm, held[:1]), addition_hooks(key_lm, hook, d, positions=[18]))
    with pytest.raises(ValueError, match="position 30 is out of range for prompts_a"):
        difference_of_means(key_lm, ys[:2], xs[:2], hook, position=30)
    with pytest.raises(TypeError, match="prompts_b must be a non-empty sequence"):
        difference_of_means(key_lm, ys[:2], "a prompt", hook)
    with pytest.raises(TypeError, match="hook functions"):
        chain_hooks([d])
    assert np.isfinite(float(difference_of_means(key_lm, ys[:2], xs[:2], hook).norm()))


def test_readme_inside_the_model_example_runs_as_written(readme_example, capsys):
    """The README's example: the tuned lens beats the logit lens, steering answers f, EV > 0.9."""
    ns: dict = {}
    exec(compile(readme_example("difference_of_means(lm, to_f, from_c"), "README example", "exec"), ns)
    assert ns["ex"].token_attributions.shape == (2, len(ns["ex"].units))
    np.testing.assert_allclose(ns["ex"].token_attributions.sum(0), ns["ex"].attributions, atol=1e-9)
    held = ns["prompts"][200:300]
    logit, tuned = kl_to_final(ns["lm"], held), kl_to_final(ns["lm"], held, ns["tuned"])
    assert (tuned.iloc[:-1] < logit.iloc[:-1]).all()
    assert capsys.readouterr().out.splitlines()[-2].strip() == "f"
    assert ns["sae"].evaluate(held, lm=ns["lm"])["explained_variance"] > 0.9
