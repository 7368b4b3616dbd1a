# %% [markdown]
# # SHAP and LIME on tabular data, and why LIME needs a seed
#
# What you learn: how to explain a scikit-learn model on a DataFrame with SHAP (TreeSHAP and
# KernelSHAP) and LIME through one API; what "additive" means for SHAP values and how to check
# it; that two libraries' KernelSHAP agree number for number when they get the same
# background, budget and seed; and why a LIME explanation is a random variable: different
# seeds give different top features unless you sample enough, and the same seed gives the
# same numbers.
#
# Runs on a laptop CPU in about a minute (`XAI_SUITE_TUTORIAL_FAST=1`: about 30 s). Open it as
# a notebook (jupytext reads the `# %%` cells) or run it as a script. It checks itself: each
# `assert` states a property the prose claims.

# %%
import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import RandomForestClassifier

import xai_suite as xs

# Small models and small batches: the per-thread overhead of torch's thread pool dominates,
# and this machine is shared, so one thread is the fastest setting.
torch.set_num_threads(1)
FAST = os.environ.get("XAI_SUITE_TUTORIAL_FAST") == "1"
OUT = Path(os.environ.get("XAI_SUITE_TUTORIAL_OUT", "tutorial_output"))
OUT.mkdir(parents=True, exist_ok=True)

N_EXPLAIN = 5 if FAST else 20  # test rows explained with SHAP
N_BACKGROUND = 30 if FAST else 50  # background rows: "feature absent" means "drawn from these"
N_LIME = 5 if FAST else 10  # test rows explained with LIME under several seeds
LIME_SEEDS = 3 if FAST else 5
LIME_SAMPLES = (300, 2000) if FAST else (300, 5000)  # perturbations per instance: few vs many

# %% [markdown]
# ## 1. Data and a model
# Breast cancer (569 tumours x 30 measurements, benign or malignant) ships with scikit-learn.
# `xs.datasets.load_tabular` returns a stratified, seeded split as a DataFrame, so every
# explanation below can carry the column names. A random forest is the model: SHAP has an
# exact, fast algorithm for trees (TreeSHAP), which gives us a reference to compare the
# model-agnostic methods against.

# %%
X, y = xs.datasets.load_tabular("breast_cancer", "train")
Xt, yt = xs.datasets.load_tabular("breast_cancer", "test")
model = RandomForestClassifier(n_estimators=100, max_depth=4, random_state=0).fit(X, y)
accuracy = model.score(Xt, yt)
print(f"{X.shape[0]} training rows, {X.shape[1]} features; test accuracy {accuracy:.3f}")
assert accuracy > 0.9
x = Xt.iloc[:N_EXPLAIN]

# %% [markdown]
# ## 2. Which explainers take a scikit-learn model on tabular data?
# The registry answers; `stochastic` says which ones need a `random_state` to repeat.

# %%
table = xs.list_explainers(modality="tabular", model_kind="sklearn")
print(table[["qualified_name", "family", "stochastic", "summary"]].to_string(index=False,
                                                                           max_colwidth=70))
assert {"shap:tree", "shap:kernel", "native:kernel_shap", "lime:tabular"} <= set(table.qualified_name)

# %% [markdown]
# ## 3. TreeSHAP: exact Shapley values of the forest
# A Shapley value splits the prediction among the features. "Feature absent" has to mean
# something: here (interventional SHAP) it means "take that feature from a background row"
# and average over the background. The values then add up exactly:
#
# $\sum_j \phi_j(x) = f(x) - \mathbb{E}_b\, f(b)$,
#
# the model's probability for the explained class minus its mean over the background. The
# explanation records the background it used (`exp.baselines`, shape `(S, N, F)`), so we can
# check the sum ourselves, and `exp.convergence_delta` is the same check done for us.

# %%
tree = xs.explain(model, x, method="shap:tree", fit_data=X, n_baseline_samples=N_BACKGROUND,
                  random_state=0)
print(tree)
background = pd.DataFrame(tree.baselines[:, 0], columns=X.columns)  # the same rows for every x
f_x = model.predict_proba(x)[np.arange(len(x)), tree.target]
f_background = model.predict_proba(background)[:, tree.target].mean(0)
gap = np.abs(tree.attributions.sum(1) - (f_x - f_background)).max()
print(f"largest |sum of SHAP values - (f(x) - E f)|: {gap:.1e} (probability units)")
assert gap < 1e-5 and np.abs(tree.convergence_delta).max() < 1e-5

# %% [markdown]
# Results come back as a DataFrame with the column names: one row per explained tumour, one
# column per measurement. Ranking the mean absolute value gives a global summary.

# %%
frame = tree.to_frame(wide=True)
print(frame.iloc[:3, :6].round(4))
importance = frame.abs().mean().sort_values(ascending=False)
print("\nlargest mean |SHAP value|:\n" + importance.head(5).round(4).to_string())
assert list(frame.columns) == list(X.columns)

# %% [markdown]
# ## 4. KernelSHAP from two libraries, and against TreeSHAP
# KernelSHAP treats the model as a black box: it evaluates random coalitions of features and
# fits a weighted linear regression whose coefficients estimate the Shapley values. With 30
# features there are 2^30 coalitions; the default budget samples 2 F + 2048 of them. Ours
# (`native:kernel_shap`) batches every coalition of every instance through the model at once;
# SHAP's (`shap:kernel`) is the reference. Given the same background rows, budget and seed
# they draw the same coalitions, so they must agree to rounding, and both must stay additive.
# Against the exact TreeSHAP values they are an estimate: close, not equal.

# %%
kernel = {name: xs.explain(model, x, method=name, fit_data=X, n_baseline_samples=N_BACKGROUND,
                           random_state=0)
          for name in ("native:kernel_shap", "shap:kernel")}
ours, theirs = kernel["native:kernel_shap"], kernel["shap:kernel"]
diff = np.abs(ours.attributions - theirs.attributions).max()
print(f"native vs shap KernelSHAP, largest difference: {diff:.1e}")
assert diff < 1e-6
for name, e in kernel.items():
    corr = np.mean([np.corrcoef(e.attributions[i], tree.attributions[i])[0, 1] for i in range(len(x))])
    err = np.abs(e.attributions - tree.attributions).max()
    print(f"{name:20s} additivity error {np.abs(e.convergence_delta).max():.1e}; vs TreeSHAP: mean "
          f"correlation {corr:.4f}, largest difference {err:.4f}")
    assert np.abs(e.convergence_delta).max() < 1e-5 and corr > 0.98

# %% [markdown]
# ## 5. LIME, and what its seed does
# LIME explains one prediction by sampling perturbed rows around it (here: each feature
# resampled within the quartiles of the training data), weighting them by closeness, and
# fitting a ridge regression to the model's outputs. Its weights are the regression's
# coefficients on "is this feature in the instance's quartile": not probabilities, and not
# additive like SHAP values. The sample is random, so the explanation is too. We explain the
# same rows under several seeds and compare the top-5 features by |weight| across seeds with
# the Jaccard index: features in both top-5 sets / features in either (1: the same five).
# We do it with few and with many perturbations per instance.


# %%
def top_k(a: np.ndarray, k: int = 5) -> set:
    return set(np.argsort(-np.abs(a))[:k].tolist())


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


x_lime = Xt.iloc[:N_LIME]
lime = {}
stability = {}
for n_samples in LIME_SAMPLES:
    runs = [xs.explain(model, x_lime, method="lime:tabular", fit_data=X, n_samples=n_samples,
                       random_state=seed) for seed in range(LIME_SEEDS)]
    w = np.stack([r.attributions for r in runs])  # (seeds, N, F)
    pairs = [jaccard(top_k(w[a, i]), top_k(w[b, i]))
             for i in range(N_LIME) for a, b in itertools.combinations(range(LIME_SEEDS), 2)]
    spread = w.std(0).mean() / np.abs(w).mean()  # seed-to-seed std relative to the weights' size
    lime[n_samples], stability[n_samples] = runs, (np.mean(pairs), np.min(pairs), spread)
    print(f"n_samples={n_samples:5d}: top-5 Jaccard across seeds mean {np.mean(pairs):.2f} "
          f"(worst pair {np.min(pairs):.2f}); seed-to-seed spread {spread:.0%} of the weights")
few, many = LIME_SAMPLES
assert stability[many][0] > stability[few][0] and stability[many][2] < stability[few][2]

# %% [markdown]
# With a few hundred perturbations the top five features change from seed to seed; with a
# few thousand they mostly agree, but not always. Report the seed (and `n_samples`) with every
# LIME explanation, and check stability across seeds before trusting a ranking. The same seed,
# on the other hand, must give the very same numbers: the explanation records the per-instance
# seeds it used (`params["instance_seeds"]`).

# %%
again = xs.explain(model, x_lime, method="lime:tabular", fit_data=X, n_samples=few, random_state=0)
assert np.array_equal(again.attributions, lime[few][0].attributions)
print("same seed, same numbers:", np.array_equal(again.attributions, lime[few][0].attributions))
print("recorded seeds:", again.params["instance_seeds"][:3], "...")
agree = np.mean([jaccard(top_k(lime[many][0].attributions[i]), top_k(tree.attributions[i]))
                 for i in range(min(N_LIME, N_EXPLAIN))])
print(f"top-5 overlap of LIME ({many} samples) with TreeSHAP: Jaccard {agree:.2f}")

# %% [markdown]
# ## 6. A picture
# Left: the SHAP values of one tumour (red pushes towards the predicted class). Right: LIME's
# weights for the same tumour's five most important features (by TreeSHAP) under every seed,
# with few and many perturbations: the spread of the dots is the seed's doing.

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1.1, 1]})
tree.plot(index=0, ax=ax0, max_features=10, title="TreeSHAP, test row 0")
features = np.argsort(-np.abs(tree.attributions[0]))[:5]
for offset, n_samples in zip((-0.15, 0.15), LIME_SAMPLES, strict=True):
    w = np.stack([r.attributions[0, features] for r in lime[n_samples]])  # (seeds, 5)
    for s in range(len(w)):
        ax1.scatter(np.arange(5) + offset, w[s], color="tab:orange" if n_samples == few else "tab:green",
                    label=f"n_samples={n_samples}" if s == 0 else None, alpha=0.8)
ax1.axhline(0, color="black", linewidth=0.8)
ax1.set_xticks(np.arange(5), [X.columns[j] for j in features], rotation=20, ha="right")
ax1.set_ylabel("LIME weight")
ax1.set_title(f"LIME under {LIME_SEEDS} seeds, test row 0")
ax1.legend()
fig.tight_layout()
fig.savefig(OUT / "shap_lime_tabular.png", dpi=100)
plt.close(fig)
print(f"wrote {OUT / 'shap_lime_tabular.png'}")

# %% [markdown]
# ## What to take away
# - SHAP values are additive by construction: check `convergence_delta` (or sum them
#   yourself) against f(x) minus the mean over the background, and say which background.
# - Two implementations of one method can be compared number for number only when every
#   setting agrees: background, coalition budget, seed.
# - LIME is a sample: fix `random_state` to repeat a result, and vary it to see how much of
#   the result is the sample rather than the model.
