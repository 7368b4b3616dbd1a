# %% [markdown]
# # A tour of the registry: find an explainer, build it, compare two libraries' versions
#
# What you learn: how to find the right explainer among the ~60 that Captum, SHAP, LIME,
# TSInterpret and this suite's own (native) implementations provide, by data type, library,
# family and model kind; what an entry tells you before you run it; which baselines exist per
# data type; how to build an explainer with parameters (and what happens when you misspell
# one); and how to check that two libraries' versions of "the same" method really agree,
# and what each costs.
#
# Runs on a laptop CPU in about 30 s (a little less with `XAI_SUITE_TUTORIAL_FAST=1`). Open it
# as a notebook (jupytext reads the `# %%` cells) or run it: `python tutorials/02_registry_tour.py`.
# Every claim in the prose is an `assert` below it.

# %%
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import xai_suite as xs
from xai_suite.modeling import fit_classifier
from xai_suite_tabular import MLP

FAST = os.environ.get("XAI_SUITE_TUTORIAL_FAST") == "1"
OUT = Path(os.environ.get("XAI_SUITE_TUTORIAL_OUT", "tutorial_output"))
OUT.mkdir(parents=True, exist_ok=True)
# The model here is tiny: with more than one thread, the per-thread overhead costs more than
# the parallel work saves (and the machine is shared).
torch.set_num_threads(1)
pd.set_option("display.width", 160)
pd.set_option("display.max_colwidth", 60)

# %% [markdown]
# ## 1. The navigation table
# One row per method, one column per library. A cell lists the data types that library's
# version explains (`tab`ular, `ts` time series, `img` images, `text`); a `*` marks the
# recommended one, which the bare method name (`"lrp"`, `"integrated_gradients"`) stands for.
# A method with two filled cells exists in two libraries: section 6 compares such pairs.
# Rows are keyed by the method's name in each library, so a method two libraries name
# differently sits on two rows: SHAP calls its KernelSHAP `shap:kernel` (next to Captum's and
# the suite's `kernel_shap`), its DeepSHAP `shap:deep` (Captum: `deeplift_shap`).

# %%
table = xs.navigation_table()
print(table.to_string(index=False))
libraries = [c for c in table.columns if c not in ("family", "name")]
print("libraries:", ", ".join(libraries))
assert {"captum", "native", "shap"} <= set(libraries)
two_libraries = table[(table[libraries] != "").sum(axis=1) >= 2]
print("methods with two implementations:", ", ".join(two_libraries.name))
assert {"integrated_gradients", "lrp", "kernel_shap"} <= set(two_libraries.name)

# %% [markdown]
# ## 2. Picking explainers: by data type, library, family, model kind
# `xs.list_explainers` returns a DataFrame, one row per entry, filtered by any of
# `modality`, `library`, `family` and `model_kind`. Its `qualified_name` (`library:method`) is
# what you pass to `xs.explain` or `xs.create_explainer`.

# %%
cols = ["qualified_name", "family", "modalities", "model_kinds"]
ts_cf = xs.list_explainers(modality="timeseries", family="counterfactual")
print("counterfactuals for time series:\n", ts_cf[cols].to_string(index=False), "\n")
assert len(ts_cf) and ts_cf.modalities.str.contains("timeseries").all()

black_box = xs.list_explainers(modality="tabular", model_kind="sklearn")
print(f"{len(black_box)} explainers for a scikit-learn model on tabular data, by family:")
for family, names in black_box.groupby("family").qualified_name:
    print(f"  {family:15s} {', '.join(names)}")
assert not black_box.family.eq("gradient").any()  # no gradients through a random forest

shap_entries = xs.list_explainers(library="shap")
print("SHAP's explainers:", ", ".join(shap_entries.qualified_name), "\n")

# %% [markdown]
# Images and text have their own entries. Every image explainer takes `(N, C, H, W)` arrays;
# the text explainers take a Hugging Face causal language model (wrapped by the LLM adapter)
# and attribute a continuation to the prompt's tokens, words or sentences; the mechanistic
# ones look inside it (logit lens, activation patching, probing).

# %%
image = xs.list_explainers(modality="image")
text = xs.list_explainers(modality="text")
print(f"{len(image)} image explainers, e.g.: "
      + ", ".join(image.qualified_name[image.family.isin(["propagation", "gradient"])].head(8)))
print("text explainers:\n", text[cols].to_string(index=False))
assert (text.model_kinds == "hf_causal_lm").all()
assert set(text.family) >= {"gradient", "perturbation", "mechanistic"}

# %% [markdown]
# Library coverage differs, and the registry knows it: Captum's LRP has no rule for
# `Conv1d` layers, so it is not listed for time series, while the suite's own LRP is.

# %%
ts_lrp = set(xs.list_explainers(modality="timeseries", family="propagation").qualified_name)
print("LRP for time series:", ts_lrp)
assert "native:lrp" in ts_lrp and "captum:lrp" not in ts_lrp

# %% [markdown]
# ## 3. What an entry says about itself
# `xs.explainer_info(name)` shows the entry's tags (family, data types, model kinds, whether it
# needs a baseline, whether it is random, whether its attributions must sum to the output
# change), its hyper-parameters with their defaults, and the paper to cite. A bare name
# resolves to the recommended implementation.

# %%
info = xs.explainer_info("integrated_gradients")
print(info, "\n")
assert info.qualified_name == "native:integrated_gradients"
assert info.tags.needs_baseline and info.tags.has_convergence_delta

# %% [markdown]
# Compare the defaults of two libraries' versions before you compare their results:
# "the same" method often differs in a default. Captum's LRP stabilises its divisions with
# `epsilon = 1e-9`, the suite's (like Zennit) with `1e-6`.

# %%
defaults = pd.DataFrame({name: pd.Series({k: repr(v) for k, v in xs.explainer_info(name).params.items()})
                         for name in ("native:lrp", "captum:lrp")})
print(defaults.fillna("-").to_string(), "\n")
assert xs.explainer_info("captum:lrp").params["epsilon"] != xs.explainer_info("native:lrp").params["epsilon"]

# %% [markdown]
# ## 4. Baselines, per data type
# Methods such as Integrated Gradients compare the input with a *baseline*: an input that
# "means nothing". What means nothing depends on the data, so baselines are registered per
# data type. Black, white and gray exist for images only; the per-channel mean over time and
# the straight line between a series' endpoints for time series only; `zeros`, noise and the
# training distribution everywhere. (Tutorial 03 is about choosing among them.)

# %%
for modality in ("tabular", "timeseries", "image"):
    print(f"{modality:10s}: {', '.join(xs.list_baselines(modality))}")
assert "black" in xs.list_baselines("image") and "black" not in xs.list_baselines("timeseries")
assert "channel_mean" in xs.list_baselines("timeseries") and "channel_mean" not in xs.list_baselines("image")

# %% [markdown]
# ## 5. A model, an explainer with parameters, and a misspelt one
# Breast cancer (30 standardised features, two classes) and a small PyTorch MLP.
# Hyper-parameters go to the constructor as keywords; data goes to `fit` / `explain`.

# %%
X, y = xs.datasets.load_tabular("breast_cancer", "train", as_frame=False, standardize=True)
Xt, yt = xs.datasets.load_tabular("breast_cancer", "test", as_frame=False, standardize=True)
torch.manual_seed(0)
model = fit_classifier(MLP(30, 2), X, y, epochs=15 if FAST else 30, batch_size=32, random_state=0)
with torch.no_grad():
    accuracy = (model(torch.tensor(Xt)).argmax(1).numpy() == yt).mean()
print(f"test accuracy: {accuracy:.3f}")
assert accuracy > 0.9

explainer = xs.create_explainer("integrated_gradients", model, baseline="training_mean", n_steps=64)
print(explainer)
exp = explainer.fit(X).explain(Xt[:5])
print("recorded with the result:", exp.params["baseline"], "n_steps", exp.params["n_steps"])
assert exp.attributions.shape == Xt[:5].shape and exp.params["n_steps"] == 64

# %% [markdown]
# A misspelt parameter or name fails at once, with the close matches, instead of being
# silently ignored (a silently ignored `n_step=` would leave you with the default 50 steps and
# a wrong belief about your experiment).

# %%
try:
    xs.create_explainer("integrated_gradients", model, n_step=64)
except TypeError as err:
    print("TypeError:", err)
    assert "did you mean 'n_steps'" in str(err)
else:
    raise AssertionError("a misspelt parameter must raise")
try:
    xs.create_explainer("integrated_gradient", model)
except KeyError as err:
    print("KeyError:", err)
    assert "integrated_gradients" in str(err)
else:
    raise AssertionError("a misspelt name must raise")

# %% [markdown]
# ## 6. Two libraries, one method: do they agree, and what does each cost?
# For each pair, run both versions on the same model, the same inputs and the *same
# settings* (not each library's defaults), then compare: the largest absolute difference
# relative to the largest attribution. Each is run once on one instance first, so that the
# one-off import of its library is not timed.
#
# - Integrated Gradients: 50 Gauss-Legendre steps from a zero baseline in both.
# - LRP-epsilon on the MLP: `epsilon = 1e-9` in both (Captum's default). The MLP has biases,
#   so the relevance of the 30 features does not sum to the logit: the convergence delta
#   measures what the biases absorbed, the same in both.
# - KernelSHAP: the same background rows (drawn from the training set with the same seed) and
#   the same 2F + 2048 coalitions (drawn with the same seed by shap's own algorithm, which the
#   native version reproduces); shap explains one instance at a time, the native version
#   sends all instances' coalitions through the model in large batches and solves one
#   regression for all.

# %%
n_explain = 5 if FAST else 20
n_baseline_samples = 20 if FAST else 50
x = Xt[:n_explain]
pairs = {
    "integrated gradients": (("native:integrated_gradients", "captum:integrated_gradients"),
                             {"baseline": "zeros", "n_steps": 50}, None),
    "LRP-epsilon": (("native:lrp", "captum:lrp"), {"epsilon": 1e-9}, None),
    "KernelSHAP": (("native:kernel_shap", "shap:kernel"),
                   {"n_baseline_samples": n_baseline_samples, "random_state": 0}, X),
}
rows, results = [], {}
for label, ((ours, theirs), params, fit_data) in pairs.items():
    runs, seconds = {}, {}
    for name in (ours, theirs):
        xs.explain(model, x[:1], method=name, fit_data=fit_data, **params)  # warm-up: imports
        start = time.perf_counter()
        runs[name] = xs.explain(model, x, method=name, fit_data=fit_data, **params)
        seconds[name] = time.perf_counter() - start
    a, b = runs[ours], runs[theirs]
    diff = np.abs(a.attributions - b.attributions).max() / np.abs(b.attributions).max()
    results[label] = (a, b, diff, seconds[ours] / seconds[theirs])
    rows.append({"method": label, "ours": ours, "theirs": theirs, "max rel. difference": f"{diff:.1e}",
                 "ours ms/instance": 1e3 * seconds[ours] / len(x),
                 "theirs ms/instance": 1e3 * seconds[theirs] / len(x),
                 "max |delta| ours": np.abs(a.convergence_delta).max(),
                 "max |delta| theirs": np.abs(b.convergence_delta).max()})
summary = pd.DataFrame(rows)
print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
assert all(r[2] < 1e-4 for r in results.values())

# %% [markdown]
# What the table says: each pair agrees to float32 rounding, so the choice between them is
# about coverage (section 2) and cost (the timings, measured once here: on a shared machine
# they vary by about 20% from run to run, so read ratios, not digits). The completeness
# error (`max |delta|`) is the same for both versions of each method: it belongs to the method
# and its settings (IG: the number of steps; LRP: the biases), not to the library.

# %%
delta_gap = [abs(r["max |delta| ours"] - r["max |delta| theirs"]) for r in rows]
print("difference of the completeness errors within each pair:", [f"{d:.1e}" for d in delta_gap])
assert all(d < 1e-3 * max(1.0, r["max |delta| theirs"]) for d, r in zip(delta_gap, rows, strict=True))
lrp_delta = np.abs(results["LRP-epsilon"][0].convergence_delta)
print(f"LRP on an MLP with biases: the biases absorb up to {lrp_delta.max():.2f} of the logit")

# %% [markdown]
# ## 7. One picture: ours against theirs
# Each point is one feature of one instance: our attribution on the x-axis, the other
# library's on the y-axis. Agreement puts every point on the diagonal.

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.8), layout="constrained")
for ax, (label, (a, b, diff, ratio)) in zip(axes, results.items(), strict=True):
    u, v = a.attributions.ravel(), b.attributions.ravel()
    lim = 1.05 * max(np.abs(u).max(), np.abs(v).max())
    ax.plot([-lim, lim], [-lim, lim], color="0.7", lw=1, zorder=0)
    ax.scatter(u, v, s=8, alpha=0.6)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel(a.method)
    ax.set_ylabel(b.method)
    ax.set_title(f"{label}\nmax rel. difference {diff:.0e}, "
                 f"ours takes {ratio:.2g}x the time", fontsize=9)
fig.suptitle(f"breast cancer, MLP, {len(x)} test instances x 30 features", fontsize=10)
fig.savefig(OUT / "registry_pairs.png", dpi=110)
plt.close(fig)
print(f"wrote {OUT / 'registry_pairs.png'}")

# %% [markdown]
# ## Things to try
# - Compare with each library's *defaults* instead of equal settings (drop `epsilon=1e-9`
#   from the LRP pair, or give Captum's IG `n_steps=20`): how far apart are they now?
# - `xs.list_explainers(available_only=False)` also lists entries whose optional dependency
#   is missing, and `xs.explainer_info(name)` says what to install.
# - Explain a scikit-learn model: which of the pairs above still apply?
