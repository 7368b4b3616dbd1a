# %% [markdown]
# # LRP by hand, and the library's: the same numbers to 1e-5
#
# What you learn: how layer-wise relevance propagation (LRP) works inside, by writing it
# yourself, layer by layer, in a few lines of PyTorch; why relevance is *conserved* (it sums
# to the explained logit on a bias-free network); why LRP-epsilon is gradient x input there;
# and how a different rule for the convolutions (z-plus) changes the picture. Your version is
# checked against `native:lrp` (this suite's) and `captum:lrp` (Captum's).
#
# Runs on a laptop CPU in about 20 s (a little less with `XAI_SUITE_TUTORIAL_FAST=1`). Open it
# as a notebook (jupytext reads the `# %%` cells) or run it: `python tutorials/04_lrp_by_hand.py`.
# Every claim in the prose is an `assert` below it.

# %%
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import xai_suite as xs
from xai_suite.modeling import fit_classifier
from xai_suite_image import CNN2d

FAST = os.environ.get("XAI_SUITE_TUTORIAL_FAST") == "1"
OUT = Path(os.environ.get("XAI_SUITE_TUTORIAL_OUT", "tutorial_output"))
OUT.mkdir(parents=True, exist_ok=True)
# The models here are tiny: with more than one thread, the per-thread overhead costs more
# than the parallel work saves (and the machine is shared).
torch.set_num_threads(1)

# %% [markdown]
# ## 1. A small CNN without biases, trained on digits
# scikit-learn's 8x8 handwritten digits ship offline. `CNN2d(1, 10, bias=False)` is two
# blocks of Conv2d(3x3)-ReLU-MaxPool(2), a global average pool and a linear head, with no
# bias anywhere. Why no biases? A bias is a source (or sink) of relevance that belongs to no
# input pixel; without biases, every bit of the logit must come from the pixels, and we can
# check that it does.

# %%
X, y = xs.datasets.load_digits_images("train")
Xt, yt = xs.datasets.load_digits_images("test")
torch.manual_seed(0)
model = fit_classifier(CNN2d(1, 10, bias=False), X, y, epochs=8 if FAST else 20, lr=1e-2,
                       batch_size=32, random_state=0)
with torch.no_grad():
    accuracy = (model(torch.from_numpy(Xt)).argmax(1).numpy() == yt).mean()
print(model)
print(f"test accuracy: {accuracy:.3f}")
assert accuracy > 0.9

n_explain = 16 if FAST else 64
x = torch.from_numpy(Xt[:n_explain])
with torch.no_grad():
    target = model(x).argmax(1)  # explain each image's predicted digit

# %% [markdown]
# ## 2. LRP, layer by layer
# LRP explains one output, here the logit `f_t(x)` of the predicted class `t`. It starts with
# relevance `R = f_t(x)` on that output (0 on the others) and walks the network backwards,
# splitting the relevance of each layer's outputs `j` among its inputs `i` in proportion to
# their contributions `z_ij = a_i w_ij`:
#
#     LRP-epsilon:  R_i = sum_j  a_i w_ij / (z_j + eps * sign(z_j))  R_j,   z_j = sum_i a_i w_ij
#
# (Bach et al. 2015; Montavon et al. 2019, "Layer-wise relevance propagation: an overview").
# `eps` only keeps the division finite; with `eps -> 0` this is LRP-0. The overview paper
# computes it in four steps that work for any linear layer, convolutions included:
#
# 1. `z = layer(a)` (forward, with the rule's weights)
# 2. `s = R / (z + eps * sign(z))` (element-wise)
# 3. `c = W^T s`: the *gradient* of `sum_j z_j s_j` with respect to `a` (autograd does this
#    for a convolution, where writing `W^T` by hand is tedious)
# 4. `R_i = a_i * c_i`
#
# ReLUs pass relevance through unchanged (the relevance of a neuron is the same before and
# after its activation). A max pool is a linear layer once the winners are known: step 3
# sends all of an output's relevance to its winning input. The global average pool and the
# flatten are linear layers too.
#
# The z-plus rule (for layers whose inputs are non-negative, as after a ReLU, or pixels in
# [0, 1]) keeps only the positive weights in steps 1 and 3: `rho(w) = max(w, 0)`. Relevance
# then stays positive; the map shows where the evidence *for* the class is, never against.
# The `epsilon_plus` composite uses z-plus for the convolutions and epsilon for the dense head.

# %%
EPS = 1e-9  # Captum's default; the suite's own default is 1e-6 (see section 5)


def stabilise(z, eps):
    """z + eps * sign(z), with sign(0) = +1 (so that nothing is divided by 0)."""
    return z + eps * torch.where(z >= 0, 1.0, -1.0)


def lrp_by_hand(model, x, target, *, conv_rule="epsilon", dense_rule="epsilon", eps=EPS):
    """LRP relevance of each pixel for the logit ``target`` of a bias-free CNN2d.

    Returns the relevance (N, 1, H, W) and the total relevance at every layer (a list of (N,)).
    """
    layers = [*model.features, model.pool, nn.Flatten(), model.head]
    # forward pass: keep every layer's input a (activations)
    activations = [x]
    with torch.no_grad():
        for layer in layers:
            activations.append(layer(activations[-1]))
    logits = activations[-1]
    rows = torch.arange(len(x))
    R = torch.zeros_like(logits)
    R[rows, target] = logits[rows, target]  # start: the explained logit, and nothing else
    totals = [R.sum(1)]
    # backward pass: relevance from each layer's outputs to its inputs
    for layer, a in zip(reversed(layers), reversed(activations[:-1]), strict=True):
        if isinstance(layer, nn.ReLU):
            pass  # relevance passes through an activation unchanged
        elif isinstance(layer, nn.Linear):
            # the formula as written, with the weight matrix W (out x in)
            W = layer.weight.detach()
            W = W.clamp(min=0) if dense_rule == "zplus" else W
            z = a @ W.T                                    # z_j = sum_i a_i w_ij
            s = R / stabilise(z, eps)                      # R_j / (z_j + eps sign z_j)
            R = a * (s @ W)                                # R_i = a_i sum_j w_ij s_j
        else:  # Conv2d, MaxPool2d, AdaptiveAvgPool2d, Flatten: the four steps
            a = a.clone().requires_grad_(True)
            if isinstance(layer, nn.Conv2d):
                w = layer.weight.detach()
                w = w.clamp(min=0) if conv_rule == "zplus" else w
                z = F.conv2d(a, w, padding=layer.padding)  # 1. forward with rho(W)
            else:
                z = layer(a)
            s = (R / stabilise(z, eps)).detach()           # 2. divide
            (c,) = torch.autograd.grad((z * s).sum(), a)   # 3. c = rho(W)^T s
            R = (a * c).detach()                           # 4. multiply by the input
        totals.append(R.flatten(1).sum(1))
    return R, totals


mine, totals = lrp_by_hand(model, x, target)
print("total relevance, layer by layer (image 0), from the logit down to the pixels:")
print("  " + "  ".join(f"{t[0]:.5f}" for t in totals))

# %% [markdown]
# ## 3. Conservation
# Each step hands on `sum_j R_j z_j / (z_j + eps sign z_j)`: all of it, up to the tiny share
# `eps` absorbs, because there is no bias term in `z_j` to take a share. So the pixels'
# relevance sums to the logit. (With biases, each layer's bias keeps `b_j / z_j` of `R_j`,
# and the pixels no longer add up to the logit.)

# %%
logit = totals[0].numpy()
layer_sums = torch.stack(totals, 1).numpy()  # (N, layers + 1)
conservation = np.abs(layer_sums - logit[:, None]).max() / np.abs(logit).max()
print(f"largest gap between any layer's total relevance and the logit: {conservation:.1e} "
      "(relative to the largest logit)")
assert conservation < 1e-4  # float32 sums of a few hundred terms

# %% [markdown]
# ## 4. The library's LRP gives the same numbers
# `native:lrp` computes LRP differently: one forward pass with hooks that change each layer's
# gradient so that the ordinary backward pass carries relevance (the "modified gradient"
# trick). `captum:lrp` attaches its rules to the layers in its own way. Same rule, same
# `epsilon`: the same relevance, to float32 rounding.

# %%
def rel_diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


native_eps = xs.explain(model, x, method="native:lrp", target=target, composite="epsilon",
                        epsilon=EPS)
captum_eps = xs.explain(model, x, method="captum:lrp", target=target, rule="epsilon",
                        epsilon=EPS)
print("rules native:lrp used:", native_eps.params["rules_used"])
d_native = rel_diff(mine, native_eps.attributions)
d_captum = rel_diff(mine, captum_eps.attributions)
print(f"by hand vs native:lrp (epsilon): {d_native:.1e};  by hand vs captum:lrp: {d_captum:.1e}")
assert d_native < 1e-5 and d_captum < 1e-5

# The library records the completeness error sum(R) - f_t(x) for every instance:
delta = np.abs(native_eps.convergence_delta).max() / np.abs(logit).max()
print(f"native:lrp convergence delta: {delta:.1e} of the largest logit")
assert delta < 1e-4

# %% [markdown]
# ## 5. LRP-epsilon is gradient x input here
# A bias-free ReLU network with max pooling is *piecewise linear and homogeneous*:
# `f(x) = sum_i x_i df/dx_i` (Euler), and the linear piece at `x` is exactly what LRP-0
# walks through (the ReLUs and max pools that are on stay on; the rest carry nothing). So
# LRP-0 is gradient x input, and LRP-epsilon with a tiny epsilon is too. The sum of gradient
# x input is then the logit itself: completeness for free.
#
# How tiny? Where a neuron is barely on (`0 < z_j` of the order of `eps`), LRP-epsilon hands
# down `z_j / (z_j + eps)` of its gradient's share, not all of it, and the terms `a_i w_ij`
# that cancel in `z_j` need not be small. With `eps = 1e-6` (the suite's default, as Zennit's)
# that already shows, at the 1e-4 to 1e-3 level; larger `eps` is a deliberate smoothing.

# %%
gxi = xs.explain(model, x, method="captum:input_x_gradient", target=target)
d_gxi = rel_diff(mine, gxi.attributions)
mine_1e6, _ = lrp_by_hand(model, x, target, eps=1e-6)
d_gxi_1e6 = rel_diff(mine_1e6, gxi.attributions)
print(f"LRP-epsilon vs gradient x input: eps=1e-9 {d_gxi:.1e}, eps=1e-6 {d_gxi_1e6:.1e}")
assert d_gxi < 1e-5 < d_gxi_1e6

# %% [markdown]
# ## 6. Other rules: epsilon-plus and z-plus
# With z-plus on the convolutions (the `epsilon_plus` composite: z-plus for convolutions,
# epsilon for the dense head) each neuron's relevance spreads over its inputs in proportion to
# their *positive* contributions only, so it keeps its sign on the way down. The maps still sum
# to the logit, but they are no longer gradient x input. Negative relevance can still appear:
# the epsilon head gives negative relevance to channels that speak against the class, and
# z-plus carries it down unchanged in sign. With z-plus on every layer (the `zplus` composite;
# Captum's `z_plus` rule on every layer), a positive logit gives a non-negative map: it shows
# where the evidence *for* the class is, never against. Our hand-written version changes one
# argument for each.

# %%
mine_plus, totals_plus = lrp_by_hand(model, x, target, conv_rule="zplus")
native_plus = xs.explain(model, x, method="native:lrp", target=target, composite="epsilon_plus",
                         epsilon=EPS)
d_plus = rel_diff(mine_plus, native_plus.attributions)
conservation_plus = np.abs(torch.stack(totals_plus, 1).numpy() - logit[:, None]).max() / np.abs(logit).max()
d_plus_gxi = rel_diff(mine_plus, gxi.attributions)
print(f"epsilon-plus: by hand vs native:lrp {d_plus:.1e}; conservation gap {conservation_plus:.1e}; "
      f"vs gradient x input {d_plus_gxi:.2f} (not equal)")
assert d_plus < 1e-5 and conservation_plus < 1e-4 and d_plus_gxi > 0.05

mine_z, _ = lrp_by_hand(model, x, target, conv_rule="zplus", dense_rule="zplus")
native_z = xs.explain(model, x, method="native:lrp", target=target, composite="zplus", epsilon=EPS)
captum_z = xs.explain(model, x, method="captum:lrp", target=target, rule="z_plus", epsilon=EPS)
d_zn, d_zc = rel_diff(mine_z, native_z.attributions), rel_diff(mine_z, captum_z.attributions)
positive = logit > 0
print(f"z-plus everywhere: by hand vs native:lrp {d_zn:.1e}, vs captum:lrp {d_zc:.1e}")
print(f"smallest pixel relevance: epsilon {mine.min():+.3f}, epsilon-plus {mine_plus.min():+.3f}, "
      f"z-plus (images with a positive logit: {positive.sum()} of {len(logit)}) "
      f"{mine_z[positive].min():+.1e}")
assert d_zn < 1e-5 and d_zc < 1e-5
assert mine.min() < 0 and mine_z[positive].min() >= 0


# %% [markdown]
# ## 7. The heat maps side by side
# Red: relevance for the predicted digit; blue: against it. Each panel has its own
# symmetric colour scale. The first three columns are one map computed three ways; the
# fourth is gradient x input (the same again); then epsilon-plus (by hand, the library's)
# and z-plus everywhere (by hand, Captum's).

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xai_suite.viz.image import plot_image_attribution  # noqa: E402

columns = [
    ("by hand, epsilon", mine.numpy()),
    ("native:lrp epsilon", native_eps.attributions),
    ("captum:lrp epsilon", captum_eps.attributions),
    ("gradient x input", gxi.attributions),
    ("by hand, eps-plus", mine_plus.numpy()),
    ("native:lrp eps-plus", native_plus.attributions),
    ("by hand, z-plus", mine_z.numpy()),
    ("captum:lrp z-plus", captum_z.attributions),
]
rows = 3
fig, axes = plt.subplots(rows, 1 + len(columns), figsize=(2.0 * (1 + len(columns)), 2.1 * rows),
                         layout="constrained")
for r in range(rows):
    axes[r, 0].imshow(Xt[r, 0], cmap="gray", vmin=0, vmax=1)
    axes[r, 0].set_title(f"digit {yt[r]}, predicted {int(target[r])}", fontsize=8)
    axes[r, 0].set_xticks([])
    axes[r, 0].set_yticks([])
    for c, (title, a) in enumerate(columns, start=1):
        plot_image_attribution(Xt[r], a[r], ax=axes[r, c], colorbar=False,
                               title=title if r == 0 else None)
fig.savefig(OUT / "lrp_by_hand.png", dpi=110)
plt.close(fig)
print(f"wrote {OUT / 'lrp_by_hand.png'}")

# %% [markdown]
# ## Things to try
# - Give the model biases (`CNN2d(1, 10)`): your LRP still matches the library's, but the
#   pixels' relevance no longer sums to the logit. How much do the biases absorb?
# - Make `eps` large (0.1, 1): the maps get sparser and less noisy, and relevance leaks away.
# - Write the gamma rule (`rho(w) = w + gamma * max(w, 0)`) and compare it with
#   `xs.explain(model, x, method="native:lrp", composite="epsilon_gamma")`.
