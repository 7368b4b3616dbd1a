# %% [markdown]
# # Reading a benchmark: intervals, proportions, paired tests, seeds and resuming
#
# You will learn to run a small benchmark suite and to read its numbers critically: what a
# 95% interval for a mean says (and how the bootstrap and the t interval differ), why a
# proportion such as accuracy or counterfactual validity needs a Wilson interval, why two
# methods measured on the same instances should be compared with a *paired* test, what
# seeds add that instances do not, and what it means for a run to be *resumable*.
#
# Runs on a laptop CPU in about a minute (`XAI_SUITE_TUTORIAL_FAST=1`: the suite's `[quick]`
# settings, about half of that). It checks itself: each `assert` states a property that must hold.

# %%
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy.stats import binom

from xai_suite.bench import ResultsStore, load_suite, model_summary, run_suite, write_report
from xai_suite.metrics.statistics import (
    bootstrap_interval,
    paired_test,
    t_interval,
    wilson_interval,
)

FAST = os.environ.get("XAI_SUITE_TUTORIAL_FAST") == "1"
OUT = Path(os.environ.get("XAI_SUITE_TUTORIAL_OUT", "tutorial_output"))
OUT.mkdir(parents=True, exist_ok=True)
# Small 1-D CNNs: a second thread costs more in synchronisation than it saves (the runner
# uses one thread per unit anyway).
torch.set_num_threads(1)
pd.set_option("display.width", 120)

# %% [markdown]
# ## 1. A tiny suite
# A suite is a TOML file: datasets x models x seeds x explainers x baselines x metrics. Ours
# asks which Integrated Gradients baseline localises a planted signal best (the dataset
# gives a ground-truth mask, so AUROC and AUP can be measured), and adds Input x Gradient,
# IG's one-point cousin, as a second method. The `[quick]` table gives smaller settings
# (`run_suite(..., quick=True)`, or `xai-suite bench NAME --quick`).

# %%
SUITE = """\
name = "tutorial-ig-baselines"
description = "Which IG baseline localises a planted box signal? Input x Gradient for comparison."
seeds = [0, 1, 2]
n_instances = 12
baselines = ["zeros", "training_mean", "gaussian"]

[[datasets]]
loader = "make_planted_timeseries"
label = "planted-box"
params = { n_samples = 200, n_channels = 3, length = 30, signal = "box", layout = "middle", random_state = 0 }
test_size = 0.3

[[models]]
name = "cnn1d"
params = { widths = [16, 16], kernels = [5, 5], epochs = 20 }

[[explainers]]
name = "captum:integrated_gradients"
params = { n_steps = 32 }

[[explainers]]
name = "captum:input_x_gradient"

[[metrics]]
name = "auroc"

[[metrics]]
name = "aup"

[[metrics]]
name = "deletion_auc"
params = { n_steps = 10 }

[quick]
seeds = [0, 1]
n_instances = 8
"""
config = OUT / "tutorial_suite.toml"
config.write_text(SUITE, encoding="utf-8")
suite = load_suite(config, quick=FAST)
print(f"{suite.name}: seeds {list(suite.seeds)}, {suite.n_instances} instances per seed")

t0 = time.perf_counter()
store_path = run_suite(config, OUT / "run", quick=FAST, progress=False)
first_run = time.perf_counter() - t0
report = write_report(store_path, OUT / "report")
print(f"ran in {first_run:.1f} s; report: {report}")
with ResultsStore(store_path) as store:
    results, models, units = store.results(), store.models(), store.units()
print(f"{len(units)} units, {len(results)} instance-level rows")
print(results.head().to_string(index=False))
assert (units.status == "done").all()
n_pairs = len(suite.seeds) * suite.n_instances  # every method sees the same instances

# %% [markdown]
# One row per (dataset, model, seed, explainer, baseline, metric, instance): the raw numbers,
# never just a mean. The report (`report.md`, open it) summarises them as mean [95% interval]
# (n), with the model's test accuracy first; here is its section for our dataset and model:

# %%
lines = report.read_text(encoding="utf-8").splitlines()
start = lines.index("## planted-box / cnn1d")
print("\n".join(lines[start:start + 10]))

# %% [markdown]
# ## 2. Is the model any good? A proportion needs a Wilson interval
# An attribution of a model that has not learned the task measures nothing, so the report
# opens with each model's test accuracy: `k` correct out of `n`, a *proportion*. The
# textbook (Wald) interval `p +- 1.96 sqrt(p (1 - p) / n)` fails exactly where we need it:
# at 10/10 it is `[1, 1]` (no uncertainty at all, after ten trials!), and at 8/10 it runs
# past 1. The Wilson score interval inverts the test instead of plugging `p` into the
# variance: it stays inside [0, 1] and is honest at 0 and n successes. Counterfactual
# validity and attack success rates are proportions too.

# %%
def wald_interval(k, n, z=1.959964):
    p = k / n
    half = z * np.sqrt(p * (1 - p) / n)
    return p - half, p + half


for k in (10, 8):
    wa, wi = wald_interval(k, 10), wilson_interval(k, 10)
    print(f"{k}/10: Wald [{wa[0]:.3f}, {wa[1]:.3f}]   Wilson [{wi[0]:.3f}, {wi[1]:.3f}]")
assert wald_interval(10, 10) == (1.0, 1.0) and wald_interval(8, 10)[1] > 1
assert np.allclose(wilson_interval(8, 10), (0.490, 0.943), atol=5e-4)
assert np.isclose(wilson_interval(10, 10)[1], 1.0) and wilson_interval(10, 10)[0] < 0.73

# %% [markdown]
# What "95%" promises: over many repetitions of the experiment, the interval covers the true
# proportion 95% of the time. For a proportion we can compute that *exactly*: sum the
# binomial probabilities of every outcome `k` whose interval contains the true `p`.

# %%
n_trials = 10
p_grid = np.linspace(0.01, 0.99, 99)
k_all = np.arange(n_trials + 1)


def coverage(interval):
    bounds = np.array([interval(k, n_trials) for k in k_all])  # (n + 1, 2)
    return np.array([binom.pmf(k_all, n_trials, p)[(bounds[:, 0] <= p) & (p <= bounds[:, 1])].sum()
                     for p in p_grid])


cov_wald, cov_wilson = coverage(wald_interval), coverage(wilson_interval)
at = int(np.argmin(np.abs(p_grid - 0.9)))
print(f"n=10, true p=0.9: Wald covers {cov_wald[at]:.2f}, Wilson {cov_wilson[at]:.2f}")
middle = (p_grid >= 0.05) & (p_grid <= 0.95)
print(f"worst coverage for 0.05 <= p <= 0.95: Wald {cov_wald[middle].min():.2f}, "
      f"Wilson {cov_wilson[middle].min():.2f}")
assert cov_wald[at] < 0.7 and cov_wilson[at] > 0.9
assert cov_wilson[middle].min() > 0.9 > 0.5 > cov_wald[middle].min()

quality = model_summary(models)  # accuracy pooled over seeds, with its Wilson interval
print(quality[["dataset", "model", "seeds", "n", "accuracy", "low", "high"]].to_string(index=False))
assert (quality.low > 0.8).all()  # the models learned the task

# %% [markdown]
# ## 3. A 95% interval for a mean: bootstrap or t?
# A metric such as AUROC is a continuous number per instance; its mean over instances gets
# an interval. The **t interval** assumes the mean is roughly normal and widens with
# Student's t for small `n`. The **percentile bootstrap** resamples the instances with
# replacement and takes the middle 95% of the resampled means: no normality assumption,
# but it cannot know about values it never saw, so with few instances it is too narrow.
# Check both on a population whose mean we know (a skewed Beta(8, 2), mean 0.8, values
# like AUROCs), 400 experiments each.

# %%
rng = np.random.default_rng(0)
simulated = {}
for n in (8, 30):
    hits_t = hits_b = 0
    for rep in range(400):
        x = rng.beta(8, 2, size=n)
        lo, hi = t_interval(x)
        hits_t += lo <= 0.8 <= hi
        lo, hi = bootstrap_interval(x, n_resamples=2000, random_state=rep)
        hits_b += lo <= 0.8 <= hi
    simulated[n] = (hits_t / 400, hits_b / 400)
    print(f"n={n:2d}: t interval covers the true mean {hits_t / 400:.1%}, bootstrap {hits_b / 400:.1%}")
assert simulated[8][1] < simulated[8][0]  # few instances: the bootstrap is too narrow
assert simulated[30][0] > 0.9 and simulated[30][1] > simulated[8][1]

ig_zero = results.query("explainer == 'captum:integrated_gradients' and baseline == 'zeros' "
                        "and metric == 'auroc'").value.to_numpy()
print(f"IG (zeros) AUROC over {ig_zero.size} instances: mean {ig_zero.mean():.3f}, "
      f"t [{t_interval(ig_zero)[0]:.3f}, {t_interval(ig_zero)[1]:.3f}], "
      f"bootstrap [{bootstrap_interval(ig_zero, random_state=0)[0]:.3f}, "
      f"{bootstrap_interval(ig_zero, random_state=0)[1]:.3f}]")

# %% [markdown]
# ## 4. Two methods on the same instances: pair them
# Some instances are easy for every method (a clear box, a confident model), some are hard
# for all. An unpaired comparison puts that shared instance-to-instance spread into both
# intervals, so they overlap even when one method is better on almost every instance. A
# paired comparison looks at the per-instance *differences*, where the shared difficulty
# cancels. `paired_test` gives the mean difference, its bootstrap interval and a Wilcoxon
# signed-rank p-value.
#
# Our pair: IG with a zero baseline against Input x Gradient. With a zero baseline IG
# averages the gradient along the path; Input x Gradient takes it at the input only.

# %%
method = results.explainer.str.replace("captum:", "") + " | " + results.baseline
auroc = results.assign(method=method).query("metric == 'auroc'").pivot_table(
    index=["seed", "instance"], columns="method", values="value")
a, b = auroc["integrated_gradients | zeros"], auroc["input_x_gradient | -"]
ia, ib = bootstrap_interval(a.to_numpy(), random_state=0), bootstrap_interval(b.to_numpy(), random_state=0)
test = paired_test(a.to_numpy(), b.to_numpy(), random_state=0)
print(f"IG (zeros)        : {a.mean():.3f} [{ia[0]:.3f}, {ia[1]:.3f}]")
print(f"Input x Gradient  : {b.mean():.3f} [{ib[0]:.3f}, {ib[1]:.3f}]")
print(f"paired difference : {test.mean_difference:+.4f} [{test.low:+.4f}, {test.high:+.4f}], "
      f"Wilcoxon p = {test.p_value:.1e}, IG better on {(a > b).sum()}/{len(a)} instances")
print(f"correlation of the two methods across instances: {np.corrcoef(a, b)[0, 1]:.2f}")
assert len(a) == n_pairs
assert ia[0] <= ib[1] and ib[0] <= ia[1]  # the unpaired intervals overlap ...
assert test.low > 0 and test.p_value < 0.05  # ... yet the paired test finds IG better

# %% [markdown]
# ## 5. Seeds and instances are not the same thing
# The intervals above pool every instance of every seed as if all were independent draws.
# But the instances of one seed share one trained model: they tell us about *these* trained
# models. A seed redraws the initial weights, the training order and the explained
# instances, so the spread *between seeds* is what tells us whether a finding is a property
# of the training recipe or of one lucky network. With 2-3 seeds an interval over seed means
# is very wide (Student's t with 1 or 2 degrees of freedom). What we can check cheaply: does
# the paired difference point the same way in every seed?

# %%
per_seed = (a - b).groupby(level="seed").mean()
for seed, diff in per_seed.items():
    print(f"seed {seed}: IG - IxG AUROC {diff:+.4f} (mean over {suite.n_instances} instances)")
lo, hi = t_interval(per_seed.to_numpy())
print(f"t interval over the {len(per_seed)} seed means: [{lo:+.4f}, {hi:+.4f}] "
      f"(pooled over instances: [{test.low:+.4f}, {test.high:+.4f}])")
assert (per_seed > 0).all()  # the finding replicates in every trained model

# %% [markdown]
# ## 6. One picture: means and intervals
# Left: each method's mean with its 95% bootstrap interval, per metric (the report draws
# similar bars). Right: the coverage of the Wald and Wilson intervals from section 2.
#
# Where intervals do *not* overlap, the data settle the question even without pairing: on
# this task the Gaussian-noise baseline localises the box clearly worse than the zero
# baseline (a random baseline puts its own noise into every element's `x - baseline` factor).

# %%
summary = (results.assign(method=method)
           .groupby(["metric", "method"]).value
           .apply(lambda v: pd.Series({"mean": v.mean(), **dict(zip(
               ("low", "high"), bootstrap_interval(v.to_numpy(), random_state=0), strict=True))}))
           .unstack())
print(summary.round(3).to_string())
aup_noise, aup_zero = (summary.loc[("aup", f"integrated_gradients | {b}")] for b in ("gaussian", "zeros"))
assert aup_noise.high < aup_zero.low
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
for ax, metric in zip(axes[:2], ("auroc", "aup"), strict=True):
    s = summary.loc[metric]
    y = np.arange(len(s))
    ax.errorbar(s["mean"], y, xerr=[s["mean"] - s.low, s.high - s["mean"]], fmt="o", capsize=4)
    ax.set_yticks(y, s.index, fontsize=8)
    ax.set_title(f"{metric.upper()} (higher is better): mean and 95% bootstrap interval", fontsize=9)
axes[2].plot(p_grid, cov_wald, label="Wald")
axes[2].plot(p_grid, cov_wilson, label="Wilson")
axes[2].axhline(0.95, color="gray", linestyle=":", label="nominal 95%")
axes[2].set(xlabel="true proportion p", ylabel="coverage", ylim=(0, 1.02),
            title=f"exact coverage with n = {n_trials} trials")
axes[2].legend(fontsize=8)
fig.savefig(OUT / "benchmark_intervals.png", dpi=100)
plt.close(fig)

# %% [markdown]
# ## 7. Resumable: interrupt, resume, get the same rows
# A long benchmark will be interrupted (a laptop lid, a cluster's time limit, Ctrl-C). The
# runner writes each unit (one model x explainer x baseline x seed) in one SQLite
# transaction, so an interrupted run leaves whole units only, and a second call with the
# same config and output directory runs only the units that are missing. Below, the first
# call stops after 2 units (`max_units=2`: an interruption at a known point, so the
# tutorial gives the same result on every machine; `kill -9` is tested in the test suite);
# we resume, and compare with the uninterrupted run.

# %%
resumed_dir = OUT / "run_interrupted"
run_suite(config, resumed_dir, quick=FAST, progress=False, max_units=2)
with ResultsStore(resumed_dir) as store:
    partial = len(store.units())
print(f"units stored before the interruption: {partial} of {len(units)}")
assert partial == 2 < len(units)

run_suite(config, resumed_dir, quick=FAST, progress=False)  # resume
key = ["dataset", "model", "seed", "explainer", "baseline", "metric", "instance"]
with ResultsStore(resumed_dir) as store:
    resumed, resumed_units = store.results(), store.units()
print(f"after resuming: {len(resumed_units)} units, {len(resumed)} rows")
pd.testing.assert_frame_equal(resumed.drop(columns="seconds").sort_values(key).reset_index(drop=True),
                              results.drop(columns="seconds").sort_values(key).reset_index(drop=True))

# and once everything is stored, running again recomputes nothing
t0 = time.perf_counter()
run_suite(config, resumed_dir, quick=FAST, progress=False)
again = time.perf_counter() - t0
with ResultsStore(resumed_dir) as store:
    after = store.units()
print(f"a third call took {again:.2f} s (the first run: {first_run:.1f} s) and wrote no unit")
pd.testing.assert_frame_equal(after, resumed_units)  # same units, same finish times

# %% [markdown]
# ## What to take away
# - Read every benchmark number with its interval, and check the model's accuracy first.
# - Proportions (accuracy, validity, success rates) get Wilson intervals; Wald's collapses
#   at 0 and n successes.
# - With a handful of instances the percentile bootstrap is optimistic; the t interval is
#   the safer default there.
# - Compare methods on the same instances with a paired test: overlapping intervals do not
#   mean "no difference".
# - Instances tell you about the trained model; seeds tell you about the recipe. Check
#   that a finding holds in every seed before you believe it.
# - Exercise: add `"blur"` to the suite's baselines and run it into a new directory (a store
#   refuses to resume with another config, so results of two configs never mix). Which
#   baseline is best on AUP, and does a paired test against `zeros` agree?
