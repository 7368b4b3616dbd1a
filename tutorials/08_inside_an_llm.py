# %% [markdown]
# # Inside a language model: attribution, logit lens, activation patching, probing
#
# You will learn how to ask a causal language model *why* it produced an answer, at four
# depths: which prompt tokens, words or sentences the answer depends on (ablation,
# KernelSHAP, LIME, integrated gradients, and a cheaper multi-level refinement); what each
# layer would predict if the model stopped there (the logit lens); which activations carry
# the answer from the prompt to the output (activation patching); and what the hidden states
# encode (linear probes, with a control task that keeps them honest).
#
# Runs on a laptop CPU in about a minute (most of it trains the model); `XAI_SUITE_TUTORIAL_FAST=1`
# trains for half the steps. It checks itself: each `assert` states a property that must hold.

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import xai_suite as xs
from xai_suite_llm import (
    KEY_POSITION,
    ActivationPatching,
    LinearProbe,
    LogitLens,
    TextAblation,
    TextIntegratedGradients,
    TextKernelShap,
    TextLime,
    TextShapleySampling,
    make_key_prompts,
    patch_all,
    text_levels_html,
    train_key_model,
)

FAST = os.environ.get("XAI_SUITE_TUTORIAL_FAST") == "1"
OUT = Path(os.environ.get("XAI_SUITE_TUTORIAL_OUT", "tutorial_output"))
OUT.mkdir(parents=True, exist_ok=True)
# The model is tiny (2 layers, 64 dimensions): each matrix product is so small that a second
# thread costs more in synchronisation than it saves, so one thread is the fastest setting.
torch.set_num_threads(1)

# %% [markdown]
# ## 1. A test bed where we know the answer
# Explanations of real LLMs are hard to grade: nobody knows which tokens *really* made GPT
# say "Paris". So we train a tiny GPT-2 (built from a config; nothing is downloaded) on a
# task whose answer is, by construction, one known prompt token:
#
# `red cat sun . the key is c . blue dog sea tree . so the answer is` -> ` c`
#
# The key is always the 8th token (`KEY_POSITION`); the filler words are random. During
# training the fillers are corrupted at random, so the model cannot lean on them: the answer
# depends on the key alone. Any attribution method that does not point at the key is wrong,
# and we can say so with an `assert`.

# %%
lm = train_key_model(steps=150 if FAST else 300, random_state=0)
print(lm)
test_prompts, test_answers = make_key_prompts(100, random_state=99)
with torch.no_grad():
    ids = torch.stack([lm.encode(p).ids for p in test_prompts])
    probs = torch.softmax(lm.logits(ids)[:, -1].float(), -1)
answer_ids = torch.tensor([int(lm.token_ids(a)[0]) for a in test_answers])
accuracy = (probs.argmax(1) == answer_ids).float().mean().item()
p_answer = probs[torch.arange(len(answer_ids)), answer_ids].mean().item()
print(f"held-out accuracy {accuracy:.2f}, mean probability of the answer {p_answer:.3f}")
assert accuracy == 1.0 and p_answer > 0.95

prompts, answers = make_key_prompts(2 if FAST else 5, random_state=123)
prompt, answer = prompts[0], answers[0]
print(f"prompt: {prompt!r} -> answer {answer!r}")
print(xs.list_explainers(modality="text")[["qualified_name", "family", "stochastic"]].to_string(index=False))

# %% [markdown]
# ## 2. Which part of the prompt made the answer?
# Every text explainer explains one number, the *scalariser*: by default the log-probability
# of the continuation (`logprob`). Absent units are replaced by the pad token. The four
# methods ask different questions:
#
# - **ablation**: how much does the score drop when this one unit is removed?
# - **KernelSHAP**: the Shapley value, a fair share over all coalitions of units (sampled);
#   the values add up to `f(prompt) - f(all-pad prompt)` (completeness).
# - **LIME**: the slope of a weighted linear surrogate fitted to random removals.
# - **integrated gradients**: gradients along the straight path from the pad embeddings to
#   the prompt's embeddings; completeness up to the quadrature error.
#
# A *unit* can be a token, a word or a sentence: the same explanation at three zoom levels.

# %%
n_samples = 200 if FAST else 500
methods = {
    "ablation": (TextAblation, {}),
    "KernelSHAP": (TextKernelShap, {"n_samples": n_samples, "random_state": 0}),
    "LIME": (TextLime, {"n_samples": n_samples, "random_state": 0}),
    "IG": (TextIntegratedGradients, {"n_steps": 32 if FAST else 50}),
}
found = {}
token_level = {}
for p, a in zip(prompts, answers, strict=True):
    for name, (cls, params) in methods.items():
        for level in ("token", "word", "sentence"):
            e = cls(lm, level=level, **params).explain(p, a)
            top = int(np.argmax(e.attributions))
            # the key token, the key word, and the key's sentence (the 2nd) must come first
            hit = top == 1 if level == "sentence" else e.units[top] == a.strip()
            found[name, level] = found.get((name, level), 0) + hit
            if p == prompt and level == "token":
                token_level[name] = e
for (name, level), hits in found.items():
    print(f"{name:10s} {level:8s}: the key unit ranks first in {hits}/{len(prompts)} prompts")
assert all(hits == len(prompts) for hits in found.values())

for name, e in token_level.items():
    share = e.attributions[KEY_POSITION] / np.abs(e.attributions).sum()
    delta = "-" if e.convergence_delta is None else f"{e.convergence_delta:+.1e}"
    print(f"{name:10s}: key token {e.attributions[KEY_POSITION]:6.2f} nats ({share:.0%} of the total "
          f"|attribution|), completeness error {delta}, model rows {e.params['model_rows']}")
assert abs(token_level["KernelSHAP"].convergence_delta) < 1e-6  # exact by construction
assert abs(token_level["IG"].convergence_delta) < 0.05  # quadrature error only

fig, axes = plt.subplots(1, len(token_level), figsize=(4 * len(token_level), 5.5), sharey=True,
                         layout="constrained")
for ax, (name, e) in zip(axes, token_level.items(), strict=True):
    e.plot(ax=ax)
    ax.set_title(name)
fig.savefig(OUT / "llm_token_attributions.png", dpi=100)
plt.close(fig)

# %% [markdown]
# The same thing through the one-call API (`xs.explain` finds the text explainer by name):

# %%
one_call = xs.explain(lm, prompt, method="text_ablation", target=answer, level="word")
print(one_call.top(3).to_string(index=False))
assert one_call.top(1).unit.iloc[0] == answer.strip()

# %% [markdown]
# ## 3. "Why c and not d?": the contrastive scalariser
# A log-probability of 0.998 is saturated: the model is sure, and most perturbations barely
# move it. A sharper question contrasts two answers: `logprob(" c") - logprob(" d")`. Only
# what tells the two apart gets credit, which is exactly the key.

# %%
other = " d" if answer != " d" else " e"
con = TextIntegratedGradients(lm, scalariser="contrastive").explain(prompt, answer, contrast=other)
plain = token_level["IG"]
print(f"contrastive score {con.score:.2f} nats (= logprob{answer!r} - logprob{other!r}); "
      f"key token {con.attributions[KEY_POSITION]:.2f}")
plain_other = TextIntegratedGradients(lm).explain(prompt, other)
assert abs(con.score - (plain.score - plain_other.score)) < 1e-4  # it is the difference
assert int(np.argmax(con.attributions)) == KEY_POSITION
assert abs(con.convergence_delta) < 0.05  # IG's completeness holds for any scalariser

# %% [markdown]
# ## 4. Multi-level refinement: sentences first, then only the important sentence
# A token-level Shapley estimate over T tokens costs about `n_samples * (T + 1)` model rows.
# `explain_hierarchical` attributes the 4 sentences first, splits only the most important one
# into words, then into tokens; the other sentences stay whole. On long prompts this is the
# difference between minutes and seconds.

# %%
shap_sampler = TextShapleySampling(lm, n_samples=10, random_state=0)
levels = shap_sampler.explain_hierarchical(prompt, answer)
flat = shap_sampler.explain(prompt, answer)
for r in levels:
    print(f"{r.level:8s}: {len(r.units):2d} units, {r.params['model_rows']:3d} model rows, "
          f"top unit {r.units[int(np.argmax(r.attributions))]!r}")
hier_rows = sum(r.params["model_rows"] for r in levels)
print(f"hierarchical: {hier_rows} model rows; flat token-level: {flat.params['model_rows']}")
assert levels[-1].units[int(np.argmax(levels[-1].attributions))] == answer.strip()
assert hier_rows < flat.params["model_rows"] / 2

# %% [markdown]
# ## 5. Looking at it: HTML views, escaped
# `to_html(path)` writes a self-contained page (it works offline) that shades each unit (red
# positive, blue negative, each value written next to it, a colour key) and lists the units in
# a sortable table; `text_levels_html` puts several levels of one prompt on one page, one
# level open at a time; `html_fragment()` is the shaded prompt alone, for a notebook or your
# own page. The prompt is *always* escaped: a prompt holding markup such as `<b>` is shown as
# the characters `<b>`, never interpreted (an attribution viewer must not let its input inject
# HTML or scripts). Our tokenizer splits `<b>` into three tokens, so it replaces three filler
# words: the model learned that the key is the 8th token, and a prompt of another length
# would move it (try it).

# %%
words = prompt.split()
tricky = " ".join([*words[:9], "<b>", *words[12:]])  # three fillers of sentence 3 -> "<", "b", ">"
tricky_exp = TextAblation(lm, level="word").explain(tricky, answer)
print(f"wrote {token_level['IG'].to_html(OUT / 'llm_attribution_ig.html', title='IG, tokens')}")
print(f"wrote {text_levels_html(levels, OUT / 'llm_levels.html', title='Shapley sampling by level')}")
page = tricky_exp.to_html(OUT / "llm_tricky.html", title="a prompt with <b> in it").read_text()
print(f"wrote {OUT / 'llm_tricky.html'}")
assert "&lt;b&gt;" in page and "<b>" not in page
assert "&lt;b&gt;" in tricky_exp.html_fragment() and "<b>" not in tricky_exp.html_fragment()
assert tricky_exp.top(1).unit.iloc[0] == answer.strip()

# %% [markdown]
# ## 6. The logit lens: what would each layer answer?
# Decode the residual stream after every block with the model's own final norm and
# unembedding. At the last layer this *is* the model's output. At the embedding layer the
# last position holds only the token "is", the same in every prompt, so it cannot know the
# key; after block 0 it already predicts the answer: the first block's attention has copied
# the key to the last position.

# %%
lens = LogitLens(lm, top_k=3)
table = lens.explain(prompt, answer)
last = table.to_frame().query(f"position == {len(table.tokens) - 1}")
print(last[["layer", "token", "target", "target_prob", "top1_token", "top1_prob"]].to_string(index=False))
with torch.no_grad():
    model_out = torch.softmax(lm.logits(lm.encode(prompt).ids[None])[0].float(), -1).numpy()
np.testing.assert_allclose(lens.distribution(prompt, lm.n_layers - 1), model_out, atol=1e-6)
assert all(t.strip() == answer.strip() for t in table.top_tokens[1:, -1, 0])  # from block 0 on
other_table = lens.explain(prompts[1], answers[1])
np.testing.assert_array_equal(other_table.top_probs[0, -1], table.top_probs[0, -1])  # "is" is "is"
ax = table.plot()
ax.figure.savefig(OUT / "llm_logit_lens.png", dpi=100, bbox_inches="tight")
plt.close(ax.figure)
table.to_html(OUT / "llm_logit_lens.html")  # interactive: hover a cell for its top-k tokens

# %% [markdown]
# ## 7. Activation patching: where does the key travel?
# Run a *corrupted* prompt (the key changed from `c` to `d`), and overwrite one activation
# (one layer, one position) with its value from the *clean* run. If the clean answer comes
# back, that activation carries the key. The effect is normalised: 1 restores the clean
# logit difference `logit(c) - logit(d)`, 0 changes nothing.
#
# Expect the key position at layer 0 (where the key *is*), then the last position at layer 1
# (where layer 0's attention has moved it), and nothing before the key (causal attention:
# earlier positions never see it).

# %%
words = prompt.split()
words[KEY_POSITION] = other.strip()
corrupted = " ".join(words)
patching = ActivationPatching(lm, sites=("resid_pre", "attn_out", "mlp_out")).explain(
    prompt, corrupted, answer, other)
print(f"logit difference: clean {patching.clean_diff:+.2f}, corrupted {patching.corrupted_diff:+.2f}")
pre = patching.effects["resid_pre"]
for layer in range(lm.n_layers):
    best = int(np.argmax(pre[layer]))
    print(f"resid_pre, layer {layer}: largest effect {pre[layer, best]:.2f} at position {best} "
          f"({patching.tokens[best]!r})")
assert abs(pre[0, KEY_POSITION] - 1) < 1e-4
assert np.all(np.delete(pre[0], KEY_POSITION) == 0)  # the other positions are identical
assert int(np.argmax(pre[1])) == len(patching.tokens) - 1 and pre[1, -1] > 0.9
assert patching.effects["attn_out"][0, -1] > 0.9  # layer 0's attention moves the key
fig, axes = plt.subplots(1, len(patching.sites), figsize=(16, 3.6), layout="constrained")
patching.plot(axes=axes)
fig.savefig(OUT / "llm_patching.png", dpi=100)
plt.close(fig)
patching.to_html(OUT / "llm_patching.html")  # one heat map per site, picked from a dropdown

# patching a whole residual stream (every position) restores the clean run exactly
clean_logits = lm.run_with_hooks(lm.encode(prompt).ids[None], {})
restored = patch_all(lm, prompt, corrupted, [f"blocks.{lm.n_layers - 1}.hook_resid_post"])
torch.testing.assert_close(restored, clean_logits, rtol=0, atol=1e-5)
print("patching the last block's whole output restores the clean logits exactly")

# %% [markdown]
# ## 8. Probing: what do the hidden states encode?
# Fit a logistic regression on each layer's hidden state at the last position to predict a
# property we planted: "is the key one of a, b, c, d?". High accuracy alone proves little:
# a flexible probe can fit anything. The *control task* fits the same probe to randomly
# permuted labels; **selectivity** = accuracy - control accuracy is what the hidden state
# itself tells. Each accuracy comes with a 95% Wilson interval (it is a proportion of
# prompts classified right).

# %%
n_probe = 80 if FAST else 200
probe_prompts, probe_answers = make_key_prompts(n_probe, random_state=5)
first_half = np.array(["abcdefgh".index(a.strip()) < 4 for a in probe_answers]).astype(int)
probe = LinearProbe(lm, cv=4 if FAST else 5, random_state=0).explain(probe_prompts, first_half)
print(probe.to_frame().round(3).to_string(index=False))
sel = dict(zip(probe.layers, probe.selectivity, strict=True))
assert abs(sel["embed"]) <= 0.15  # "is" is the same everywhere: nothing to find
assert sel[str(lm.n_layers - 1)] >= 0.3 and probe.accuracy[-1] >= 0.9
ax = probe.plot()
fig = ax.figure
fig.savefig(OUT / "llm_probing.png", dpi=100)
plt.close(fig)
probe.to_html(OUT / "llm_probing.html")

# %% [markdown]
# ## What to take away
# - On a task with a known answer, every attribution method we tried finds it, at every
#   zoom level; the methods differ in cost (model rows) and in what they guarantee
#   (completeness for KernelSHAP and IG).
# - The three mechanistic views agree with each other: the lens shows the answer after
#   block 0, patching shows *how* (attention moves the key to the last position), and the
#   probe shows the information is linearly readable there and not before.
# - Exercise: retrain with `train_key_model(corrupt=0.0)` (fillers never corrupted) and rerun
#   section 2: which methods still find the key, and why does ablation of the last token
#   ("is") now look important?
