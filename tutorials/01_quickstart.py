# %% [markdown]
# # Quick start: one registry, many explainers, and why the baseline matters
#
# Runs on a laptop CPU in under a minute. Open it as a notebook (jupytext reads the `# %%`
# cells) or run it as a script: `python tutorials/01_quickstart.py`.
# It checks itself: each `assert` states a property that must hold.

# %%
import os
from pathlib import Path

import numpy as np
import torch

import xai_suite as xs
from xai_suite_timeseries import CNN1d, fit_classifier

OUT = Path(os.environ.get("XAI_SUITE_TUTORIAL_OUT", "tutorial_output"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. What can explain a time-series model?
# The navigation table: one row per method, one column per library.

# %%
print(xs.navigation_table(modality="timeseries").to_string(index=False))

# %% [markdown]
# ## 2. Data and a model
# GunPoint ships inside aeon: (N, C, T) float32, labels 0..K-1.

# %%
X, y = xs.datasets.load_ucr("GunPoint", "train")
Xt, yt = xs.datasets.load_ucr("GunPoint", "test")
torch.manual_seed(0)
model = fit_classifier(CNN1d(1, 2), X, y, epochs=60, random_state=0)
with torch.no_grad():
    accuracy = (model(torch.from_numpy(Xt)).argmax(1).numpy() == yt).mean()
print(f"test accuracy: {accuracy:.3f}")
assert accuracy > 0.85

# %% [markdown]
# ## 3. Integrated gradients, and how many steps it needs
# IG's attributions sum to f(x) - f(baseline) once the path integral is exact: the
# `convergence_delta` says how far the n-step integral is from that. Measure it against the
# output change |f(x) - f(b)| (where the output barely changes, a tiny absolute error is a
# large relative one, so below a change of 0.5 we measure against 0.5). On a ReLU network
# the gradient along the path is piecewise constant, so the error shrinks like 1 / n_steps.

# %%
errors = {}
for n_steps in (25, 50, 100, 200):
    e = xs.explain(model, Xt[:20], method="integrated_gradients", baseline="zeros",
                   n_steps=n_steps)
    delta = np.abs(e.convergence_delta)
    change = np.abs(e.attributions.sum((1, 2)) - e.convergence_delta)  # |f(x) - f(b)|
    errors[n_steps] = (delta / np.maximum(change, 0.5)).max()
    print(f"n_steps={n_steps:4d}: largest completeness error {errors[n_steps]:.2%} of the change")
assert errors[200] < 0.01 and errors[200] < errors[25]
exp = e  # 200 steps from here on
print(exp)
print("recorded settings:", exp.params)

# %% [markdown]
# ## 4. The same method from Captum agrees

# %%
captum = xs.explain(model, Xt[:20], method="captum:integrated_gradients", baseline="zeros",
                    n_steps=200)
diff = np.abs(captum.attributions - exp.attributions).max() / np.abs(exp.attributions).max()
print(f"native vs Captum, largest relative difference: {diff:.1e}")
assert diff < 1e-4

# %% [markdown]
# ## 5. How much does IG change with the baseline?
# Rank correlation of each baseline's attributions with the zero baseline's, per instance.

# %%
def rank_corr(a, b):
    ra, rb = a.argsort().argsort(), b.argsort().argsort()
    return np.corrcoef(ra, rb)[0, 1]


results = {"zeros": exp}
for baseline in ("training_mean", "blur", "nearest_unlike", "uniform"):
    results[baseline] = xs.explain(model, Xt[:20], baseline=baseline, fit_data=(X, y),
                                   n_steps=200, random_state=0)
for name, e in results.items():
    corr = np.median([rank_corr(e.attributions[i].ravel(), exp.attributions[i].ravel())
                      for i in range(20)])
    print(f"{name:15s} median rank correlation with zeros: {corr:+.2f}")

from xai_suite.viz import plot_comparison  # noqa: E402

fig = plot_comparison(list(results.values()), index=0, path=OUT / "baselines.png",
                      titles=[f"IG, {b} baseline" for b in results])
print(f"wrote {OUT / 'baselines.png'}")
