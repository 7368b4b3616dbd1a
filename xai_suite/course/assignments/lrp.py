"""Assignment ``lrp``: LRP-epsilon by hand for an MLP of Linear and ReLU layers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core import Check, CheckFailed, assert_close, define_assignment
from .ig import attributions, check_tensor_result, gradient, mlp, target_logit, targets, tensor

STARTER = '''"""Assignment: LRP-epsilon by hand.

Write ``lrp_epsilon(model, x, target, epsilon=1e-6)`` for an MLP (a ``torch.nn.Sequential``
of ``Linear`` and ``ReLU`` layers), propagating relevance layer by layer yourself (no
autograd tricks needed). Check it with:  xai-suite course check lrp THIS_FILE.py
"""

import torch


def lrp_epsilon(model, x, target, epsilon=1e-6):
    """Layer-wise relevance propagation with the epsilon rule (Bach et al., 2015).

    1. Forward: keep the input ``a`` of every layer.
    2. Start: the relevance of the output layer is the target logit ``f_t(x)`` at output
       ``t`` and 0 at every other output (per instance, its own target).
    3. Backward, layer by layer from the last:
       - ``Linear`` with weight ``w`` (shape (out, in)) and bias ``b``: with
         ``z_j = sum_i a_i w_ji + b_j``, the relevance of input ``i`` is::

             R_i = sum_j  a_i w_ji / (z_j + epsilon * sign(z_j)) * R_j

         taking sign(0) = +1 (the stabiliser moves z away from 0, keeping its sign);
       - ``ReLU``: relevance passes through unchanged.
    On a network without biases the relevance is conserved: each row sums to ``f_t(x)``
    (up to what epsilon absorbs).

    Parameters
    ----------
    model : torch.nn.Sequential
        ``Linear`` and ``ReLU`` layers, mapping (N, F) to logits (N, K).
    x : torch.Tensor, shape (N, F)
    target : torch.Tensor of int64, shape (N,)
        Class explained for each instance.
    epsilon : float
        The stabiliser, >= 0.

    Returns
    -------
    torch.Tensor, shape (N, F), floating point
        Relevance of each input feature (signed).
    """
    raise NotImplementedError
'''


def reference(model: nn.Sequential, x: torch.Tensor, target: torch.Tensor,
              epsilon: float = 1e-6) -> torch.Tensor:
    """LRP-epsilon for Linear/ReLU networks, layer by layer."""
    layers = list(model)
    inputs = [x]  # inputs[l]: the input of layer l
    with torch.no_grad():
        for layer in layers:
            inputs.append(layer(inputs[-1]))
        out = inputs.pop()  # (N, K) logits
        rows = torch.arange(len(x))
        relevance = torch.zeros_like(out)
        relevance[rows, target] = out[rows, target]  # start at each row's target logit
        for layer, a in zip(reversed(layers), reversed(inputs), strict=True):
            if isinstance(layer, nn.ReLU):
                continue  # relevance passes through
            if not isinstance(layer, nn.Linear):
                raise TypeError(f"only Linear and ReLU layers are supported; got {type(layer).__name__}")
            w = layer.weight  # (out, in)
            z = a @ w.T + (layer.bias if layer.bias is not None else 0)  # (N, out)
            z = z + epsilon * torch.where(z >= 0, 1.0, -1.0)  # stabilise, keeping the sign
            relevance = a * ((relevance / z) @ w)  # R_i = a_i sum_j w_ji R_j / z_j
    return relevance


def _variant(model: nn.Sequential, x: torch.Tensor, target: torch.Tensor, epsilon: float, *,
             denominator: str = "signed", start: str = "target", activations: bool = True) -> np.ndarray:
    """LRP with one classic mistake: ``denominator`` ``signed`` (z + eps sign z), ``plus`` (z + eps)
    or ``abs`` (|z| + eps); ``start`` ``target`` or ``all`` (every logit); ``activations=False``:
    weights only."""
    layers, inputs = list(model), [x]
    with torch.no_grad():
        for layer in layers:
            inputs.append(layer(inputs[-1]))
        out = inputs.pop().double()
        if start == "all":
            relevance = out.clone()
        else:
            relevance = torch.zeros_like(out)
            relevance[torch.arange(len(x)), target] = out[torch.arange(len(x)), target]
        for layer, a in zip(reversed(layers), reversed(inputs), strict=True):
            if isinstance(layer, nn.ReLU):
                continue
            w, a = layer.weight.double(), a.double()
            z = a @ w.T + (layer.bias.double() if layer.bias is not None else 0)
            if denominator == "signed":
                z = z + epsilon * torch.where(z >= 0, 1.0, -1.0)
            elif denominator == "plus":
                z = z + epsilon
            else:
                z = z.abs() + epsilon
            back = (relevance / z) @ w
            relevance = a * back if activations else back
    return relevance.numpy()


def _mixed_targets(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Alternately each row's lowest and highest logit: negative and positive z at the top."""
    with torch.no_grad():
        out = model(x)
    return torch.where(torch.arange(len(x)) % 2 == 0, out.argmin(1), out.argmax(1))


def _diagnose(got: np.ndarray, model, x, t, epsilon: float) -> str | None:
    """A sentence naming the classic mistake ``got`` matches (and the rule does not), if any."""
    def near(alt):
        return np.allclose(got, alt, rtol=1e-3, atol=1e-4 * (np.abs(alt).max() + 1e-12))

    if near(_variant(model, x, t, epsilon)):
        return None  # within rounding of the right rule here: no mistake to name
    mistakes = (
        (dict(denominator="plus"), "your denominators are z + epsilon: for z < 0 that pulls them "
         "towards 0 (and flips them when -epsilon < z < 0); add epsilon * sign(z) instead"),
        (dict(denominator="abs"), "you divide by |z| + epsilon: the sign of z matters (a negative "
         "z_j must send negative shares), use z + epsilon * sign(z)"),
        (dict(activations=False), "you propagate with the weights alone: the share of input i is "
         "a_i w_ji / z_j, so multiply by the layer's input activations a_i"),
        (dict(start="all"), "the relevance started from all the logits: start from the target logit "
         "only, zero elsewhere"),
    )
    for kwargs, sentence in mistakes:
        if near(_variant(model, x, t, epsilon, **kwargs)):
            return sentence
    return None


# -- checks ----------------------------------------------------------------------------------
def _shape(fn, rng):
    model = mlp(rng, (7, 9, 3), activation=nn.ReLU, bias=True)
    x = tensor(rng, 5, 7)
    out = fn(model, x.clone(), targets(rng, 5, 3), epsilon=1e-6)
    check_tensor_result(out, x, "lrp_epsilon", "the relevance", " (one value per input feature)")

def _agreement(fn, rng):
    from ...registry import create_explainer

    model = mlp(rng, (6, 10, 8, 3), activation=nn.ReLU, bias=True)
    x = tensor(rng, 6, 6)
    t = _mixed_targets(model, x)
    epsilon = float(rng.choice([0.1, 0.3, 1.0]))
    got = attributions(fn, "lrp_epsilon", x, model, t, epsilon=epsilon)
    ours = create_explainer("native:lrp", model, composite="epsilon", epsilon=epsilon, device="cpu")
    want = ours.explain(x, target=t.numpy()).attributions.astype(np.float64)
    if np.allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max()):
        return
    sentence = _diagnose(got, model, x, t, epsilon)
    if sentence:
        raise CheckFailed(f"LRP-epsilon (epsilon={epsilon}) differs from xai_suite's native:lrp: "
                          f"{sentence}")
    assert_close(got, want, what=f"LRP-epsilon (epsilon={epsilon}) compared with xai_suite's "
                 "native:lrp (composite 'epsilon')", atol=1e-5 * np.abs(want).max(), rtol=1e-4)


def _sums(fn, model, x, t, check: str) -> None:
    got = attributions(fn, "lrp_epsilon", x, model, t, epsilon=1e-6)
    sums, logit = got.sum(1), target_logit(model, x, t)
    # float32 rounding grows with the relevance that cancels in the sum
    magnitude = np.abs(_variant(model, x, t, 1e-6)).sum(1)
    tol = 1e-4 * (np.abs(logit) + magnitude) + 1e-6
    if (np.abs(sums - logit) <= tol).all():
        return
    with torch.no_grad():
        all_logits = model(x).double().sum(1).numpy()
    i = int(np.argmax(np.abs(sums - logit) - tol))
    msg = (f"{check}: on a network without biases each row's relevance must sum to its target logit "
           f"f_t(x); row {i} (target {int(t[i])}) sums to {sums[i]:.6g}, f_t(x) = {logit[i]:.6g}")
    if np.allclose(sums, all_logits, rtol=1e-3):
        msg += "; your sums equal the sum of all logits: start from the target logit only"
    elif np.allclose(sums, 1.0, rtol=1e-3):
        msg += "; your sums are 1: start from the value of the target logit, not from 1"
    elif np.allclose(sums, target_logit(model, x, torch.zeros_like(t)), rtol=1e-3):
        msg += "; your sums equal the logit of class 0: use each row's target"
    else:
        sentence = _diagnose(got, model, x, t, 1e-6)
        if sentence:
            msg += f"; {sentence}"
    raise CheckFailed(msg)


def _conservation(fn, rng):
    model = mlp(rng, (8, 16, 12, 10, 4), activation=nn.ReLU, bias=False)
    x = tensor(rng, 6, 8)
    t = torch.full((6,), int(rng.integers(4)), dtype=torch.int64)
    _sums(fn, model, x, t, "conservation")


def _target(fn, rng):
    model = mlp(rng, (6, 12, 4), activation=nn.ReLU, bias=False)
    x = tensor(rng, 8, 6)
    t = targets(rng, 8, 4)
    _sums(fn, model, x, t, "target")
    batch = attributions(fn, "lrp_epsilon", x, model, t, epsilon=1e-6)
    for i in range(len(x)):
        one = attributions(fn, "lrp_epsilon", x[i : i + 1], model, t[i : i + 1], epsilon=1e-6)
        if not np.allclose(one[0], batch[i], rtol=1e-3, atol=1e-4 * (np.abs(batch).max() + 1e-12)):
            raise CheckFailed(f"target: row {i} explained in a batch differs from row {i} explained "
                              "alone: each row's relevance must start at its own target logit only")


def _gradient_x_input(fn, rng):
    model = mlp(rng, (6, 12, 10, 3), activation=nn.ReLU, bias=False)
    x = tensor(rng, 6, 6)
    t = _mixed_targets(model, x)
    got = attributions(fn, "lrp_epsilon", x, model, t, epsilon=1e-9)
    want = x.double().numpy() * gradient(model, x, t)
    if np.allclose(got, want, rtol=1e-3, atol=1e-5 * np.abs(want).max()):
        return
    sentence = _diagnose(got, model, x, t, 1e-9)
    lead = ("with epsilon -> 0 and no biases LRP-epsilon equals gradient x input (x * d f_t / d x) on "
            "a ReLU network")
    if sentence:
        raise CheckFailed(f"{lead}; yours does not: {sentence}")
    assert_close(got, want, what=f"{lead}; yours", atol=1e-5 * np.abs(want).max(), rtol=1e-3)


ASSIGNMENT = define_assignment(
    "lrp", "LRP-epsilon by hand", "lrp_epsilon", STARTER, reference,
    Check("shape", "returns a floating tensor of x's shape (N, F)", _shape, 1,
          "the relevance at the end of the backward pass is the relevance of the model input"),
    Check("agreement", "matches xai_suite's native:lrp (composite 'epsilon') on MLPs with biases",
          _agreement, 3,
          "the share of input i in output j is a_i w_ji / (z_j + epsilon sign(z_j)), z_j "
          "including the bias; sign(z_j) keeps the stabiliser from pushing z_j across 0"),
    Check("conservation", "without biases each row's relevance sums to f_t(x)", _conservation, 2,
          "each layer hands on sum_j z_j/(z_j + eps sign z_j) R_j, which is all of it without "
          "biases: losing relevance means the shares a_i w_ji / z_j do not sum to 1 over i"),
    Check("target", "relevance starts from each row's own target logit", _target, 2,
          "set R = 0 at every output, then R[n, target[n]] = f_target[n](x_n): one logit per row"),
    Check("gradient_x_input", "without biases and with epsilon -> 0 it equals gradient x input",
          _gradient_x_input, 2,
          "LRP-0 on a ReLU network is x * gradient; a mismatch usually means a missing a_i, a "
          "wrong sign in the stabiliser, or a ReLU that does not pass relevance through"),
)
