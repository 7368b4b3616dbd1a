"""Layer-wise relevance propagation with named rules, for 1-D and 2-D networks.

Design (after Zennit's rules, composites and canonizers; our own code):

- **Rules** are small objects (:class:`Epsilon`, :class:`Gamma`, :class:`AlphaBeta`,
  :class:`Flat`, :class:`WSquare`, :class:`ZBox`) saying how a layer splits the relevance
  of its outputs among its inputs. :data:`RULES` names them.
- **Composites** (:data:`COMPOSITES`) pick a rule per layer type: dense (``Linear``),
  convolution (``Conv1d/2d/3d``) and optionally the first layer (the one that takes the
  model input). A user dict ``{layer type or module name: rule}`` overrides them.
- **Canonizer**: a BatchNorm applied directly to a Linear/Conv output is merged into that
  layer (folded weights, computed on the fly; the model is never modified); any other
  BatchNorm is an affine layer under the epsilon rule.

How it is computed: the modified-gradient trick. During one forward pass, forward hooks
replace each layer's output ``y`` by ``y + (z - z.detach()) * (y / z).detach()``, where
``z`` is the layer recomputed with rule-modified weights. The value is unchanged; the
gradient ``c`` that reaches a layer input ``x`` is then ``relevance / x``, so relevance is
``x * c`` anywhere and the input attribution is ``x * grad``. Linear parameter-free
operations written in ``forward`` (reshapes, sums, means, residual ``a + b``, padding) need
no hook: their true gradient is exactly this rule (the sum splits relevance in proportion
to its addends). Element-wise activations pass relevance through unchanged. Rules whose
relevance is not proportional to the input (flat, w-square, z-box) apply to the first
layer only and add their share through extra leaf tensors. Relevance starts at the
target's output value ``f_t(x)``, as in Captum. Hooks live inside a context manager and are
always removed.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ...base import Attribution, Batched, Call, PropagationExplainer
from ...batching import chunks
from ...modeling import _as_2d_output
from ...registry import register_explainer

DENSE = (nn.Linear,)
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
WEIGHTED = DENSE + CONV
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Parameter-free linear(-ish) layers: the epsilon rule (max pools: winner takes all).
POOLING = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
#: Element-wise activations through the origin: relevance passes through unchanged.
ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Tanh, nn.Hardtanh, nn.Softsign, nn.Tanhshrink,
)
DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
#: Identity in eval mode, or a reshape: the gradient routes relevance as it should.
STRUCTURAL = (nn.Flatten, nn.Unflatten, nn.Identity, *DROPOUT)
#: Layers whose forward hook rewrites the output.
HOOKED = WEIGHTED + BATCHNORM + POOLING + ACTIVATIONS
SUPPORTED = HOOKED + STRUCTURAL

#: Functions allowed in ``forward`` code outside modules, on tensors that carry relevance:
#: linear, parameter-free operations (their gradient is the epsilon-0 rule) and ReLU.
_LINEAR_FUNCTIONS = frozenset("""
    add __add__ __radd__ __iadd__ add_ sub __sub__ __rsub__ __isub__ sub_ neg __neg__
    sum mean view view_as reshape reshape_as flatten unflatten squeeze squeeze_ unsqueeze
    unsqueeze_ permute transpose t contiguous expand expand_as __getitem__ narrow select
    split chunk unbind cat concat concatenate stack to float double type_as clone flip roll
    movedim moveaxis swapaxes swapdims index_select gather repeat repeat_interleave tile pad
    interpolate relu relu_ leaky_relu leaky_relu_ max amax dropout dropout1d dropout2d
    dropout3d alpha_dropout feature_alpha_dropout
""".split())
_POOL_FUNCTION = re.compile(r"_?(adaptive_)?(max|avg)_pool[123]d(_with_indices)?")
#: Products are linear when at most one factor carries relevance (and divides nothing).
_PRODUCTS = frozenset(
    "mul __mul__ __rmul__ __imul__ mul_ div __truediv__ __itruediv__ div_ true_divide".split()
)
_OUTPUT_SQUASHERS = (nn.Softmax, nn.LogSoftmax, nn.Sigmoid, nn.Softmin, nn.LogSigmoid, nn.Softplus)


def _stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + eps * sign(z)``, with sign(0) = +1."""
    return z + eps * (2 * (z >= 0).to(z.dtype) - 1)


def _share(z: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """A zero-valued term whose gradient sends ``y * grad_y / z`` back through ``z``."""
    return (z - z.detach()) * (y.detach() / _stabilize(z.detach(), eps))


def _pos(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


def _neg(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(max=0)


def _no_bias(_b: torch.Tensor) -> None:
    return None


class _Layer:
    """A layer a rule recomputes with modified parameters (a BatchNorm possibly merged in).

    ``layer(x, weight_fn, bias_fn)`` is the layer's output for ``x`` with its weight and
    bias passed through the functions (``bias_fn`` may return ``None``: no bias).
    Parameter-free layers (pooling, a lone BatchNorm) only run unmodified.
    """

    def __init__(self, module: nn.Module, weight=None, bias=None):
        self.module = module
        self.weight = weight
        self.bias = bias

    @classmethod
    def of(cls, module: nn.Module) -> _Layer:
        if isinstance(module, WEIGHTED):
            return cls(module, module.weight, module.bias)
        return cls(module)

    @classmethod
    def merged(cls, module: nn.Module, bn: nn.Module) -> _Layer:
        """``module`` followed by ``bn`` (eval mode) as one layer with folded parameters."""
        scale = torch.rsqrt(bn.running_var + bn.eps)
        shift = -bn.running_mean * scale
        if bn.affine:
            scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
        w = module.weight * scale.view(-1, *([1] * (module.weight.dim() - 1)))
        b = shift if module.bias is None else module.bias * scale + shift
        return cls(module, w, b)

    def __call__(self, x, weight_fn: Callable | None = None, bias_fn: Callable | None = None):
        m = self.module
        if self.weight is None:
            if weight_fn is not None or bias_fn is not None:
                raise RuntimeError(f"{type(m).__name__} has no parameters to modify")
            return m.forward(x)  # not m(x): that would run the hooks again
        w = self.weight if weight_fn is None else weight_fn(self.weight)
        b = self.bias
        if b is not None and bias_fn is not None:
            b = bias_fn(b)
        base = next(k for k in type(m).__mro__ if k in WEIGHTED)
        if type(m).forward is not base.forward:  # a subclass's own forward (its padding, say)
            return _with_parameters(m, w, b)(x)
        if isinstance(m, nn.Linear):
            return F.linear(x, w, b)
        return m._conv_forward(x, w, b)


def _with_parameters(m: nn.Module, w: torch.Tensor, b: torch.Tensor | None) -> Callable:
    """``m``'s own ``forward`` (no hooks) run with weight ``w`` and bias ``b`` in place of its own."""

    def run(x):
        saved = dict(m._parameters)
        m._parameters["weight"], m._parameters["bias"] = w, b  # read by forward as self.weight
        try:
            return type(m).forward(m, x)
        finally:
            m._parameters.update(saved)

    return run


# -- rules ---------------------------------------------------------------------------------
class Rule:
    """How a layer splits the relevance of its outputs among its inputs.

    Subclasses implement :meth:`propagate`. ``needs_weights``: only for Linear/Conv layers
    (and BatchNorms merged into them). ``input_layer_only``: the rule's relevance is not
    proportional to the layer input, so it applies only to a layer taking the model input.
    """

    needs_weights: ClassVar[bool] = True
    input_layer_only: ClassVar[bool] = False

    def propagate(self, layer: _Layer, x: torch.Tensor, y: torch.Tensor, leaves: list) -> torch.Tensor:
        """Return ``y``'s value with a gradient that carries this rule's relevance to ``x``.

        Parameters
        ----------
        layer : _Layer
        x : torch.Tensor
            The layer's input (in the graph).
        y : torch.Tensor
            The layer's actual output.
        leaves : list of (leaf, value) tensor pairs
            Extra relevance sources: ``value * grad(leaf)`` is added to the attributions.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and repr(self) == repr(other)

    __hash__ = None  # mutable parameters


class Epsilon(Rule):
    """LRP-epsilon: ``R_i = sum_j x_i w_ij / (z_j + eps sign z_j) R_j`` (bias in ``z``).

    ``epsilon -> 0`` gives LRP-0, which equals gradient x input. Also used for pooling and
    lone BatchNorm layers, which have no weights to modify.
    """

    needs_weights = False

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = epsilon

    def propagate(self, layer, x, y, leaves):
        return y.detach() + _share(layer(x), y, self.epsilon)


class Gamma(Rule):
    """LRP-gamma, generalised to inputs of any sign (as in Zennit).

    Outputs ``z_j > 0`` split by the contributions ``c_ij + gamma (c_ij)^+`` (bias
    ``b + gamma b^+``), outputs ``z_j < 0`` by ``c_ij + gamma (c_ij)^-`` (bias
    ``b + gamma b^-``), where ``c_ij = x_i w_ij``; for non-negative inputs this is the
    classic ``w + gamma w^+`` rule.
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6):
        self.gamma = gamma
        self.stabilizer = stabilizer

    def propagate(self, layer, x, y, leaves):
        g = self.gamma

        def up(t):
            return t + g * t.clamp(min=0)

        def down(t):
            return t + g * t.clamp(max=0)

        xp, xn = _pos(x), _neg(x)
        z_up = layer(xp, up, up) + layer(xn, down, _no_bias)
        z_down = layer(xp, down, down) + layer(xn, up, _no_bias)
        yd, s = y.detach(), self.stabilizer
        return yd + _share(z_up, y, s) * (yd > 0) + _share(z_down, y, s) * (yd < 0)


class AlphaBeta(Rule):
    """LRP-alpha-beta: ``R_i = sum_j (alpha c_ij^+ / z_j^+ - beta c_ij^- / z_j^-) R_j``.

    ``c_ij = x_i w_ij``; ``z_j^+`` sums the positive contributions and the positive bias
    part, ``z_j^-`` the negative ones. ``alpha - beta`` must be 1; ``AlphaBeta(1, 0)`` is the
    z-plus rule (non-negative relevance from non-negative relevance).
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.0, stabilizer: float = 1e-6):
        if alpha < 0 or beta < 0 or not math.isclose(alpha - beta, 1.0):
            raise ValueError(f"alpha-beta needs alpha, beta >= 0 and alpha - beta = 1; got "
                             f"alpha={alpha}, beta={beta}")
        self.alpha = alpha
        self.beta = beta
        self.stabilizer = stabilizer

    def propagate(self, layer, x, y, leaves):
        xp, xn = _pos(x), _neg(x)
        out = y.detach()
        z_plus = layer(xp, _pos, _pos) + layer(xn, _neg, _no_bias)
        out = out + self.alpha * _share(z_plus, y, self.stabilizer)
        if self.beta:
            z_minus = layer(xp, _neg, _neg) + layer(xn, _pos, _no_bias)
            out = out - self.beta * _share(z_minus, y, self.stabilizer)
        return out


class _InputRule(Rule):
    """A first-layer rule: relevance computed on leaf tensors standing for the input."""

    input_layer_only = True
    #: Flat and w-square: the transform of the weights, applied to a leaf of ones (no bias).
    _weights: ClassVar[Callable[[torch.Tensor], torch.Tensor]]

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = stabilizer

    def propagate(self, layer, x, y, leaves):
        ones = torch.ones_like(x.detach(), requires_grad=True)
        leaves.append((ones, ones.detach()))
        z = layer(ones, self._weights, _no_bias)
        return y.detach() + _share(z, y, self.stabilizer)


class Flat(_InputRule):
    """Flat: relevance spread evenly over each output's receptive field (no bias)."""

    _weights = staticmethod(torch.ones_like)


class WSquare(_InputRule):
    """w-square: ``R_i = sum_j w_ij^2 / sum_i' w_i'j^2 R_j`` (no bias)."""

    _weights = staticmethod(torch.square)


class ZBox(_InputRule):
    """z-box for inputs bounded by ``low <= x <= high`` (deep Taylor decomposition).

    ``R_i = sum_j (x_i w_ij - l_i w_ij^+ - h_i w_ij^-) / z_j R_j``, ``z_j`` the sum over
    ``i`` (biases cancel). ``low``/``high``: floats, arrays broadcastable to one instance's
    shape, or ``None`` for each instance's own minimum/maximum.
    """

    def __init__(self, low=None, high=None, stabilizer: float = 1e-6):
        self.low = low
        self.high = high
        self.stabilizer = stabilizer

    def _bound(self, value, x: torch.Tensor, reduce) -> torch.Tensor:
        if value is None:
            dims = tuple(range(1, x.dim()))
            b = reduce(x, dim=dims, keepdim=True).expand_as(x)
        else:
            t = torch.as_tensor(np.asarray(value, dtype=np.float32), device=x.device, dtype=x.dtype)
            try:
                b = torch.broadcast_to(t, x.shape[1:]).expand_as(x)
            except RuntimeError as exc:
                raise ValueError(f"ZBox bounds must broadcast to one instance's shape "
                                 f"{tuple(x.shape[1:])}; got shape {tuple(t.shape)}") from exc
        return b.detach().clone().requires_grad_(True)

    def propagate(self, layer, x, y, leaves):
        low = self._bound(self.low, x.detach(), torch.amin)
        high = self._bound(self.high, x.detach(), torch.amax)
        leaves += [(low, low.detach()), (high, high.detach())]
        z = layer(x) - layer(low, _pos, _pos) - layer(high, _neg, _neg)
        return y.detach() + _share(z, y, self.stabilizer)


@dataclass(frozen=True)
class _Settings:
    epsilon: float
    gamma: float
    low: object
    high: object


#: Rule names and how each is built from the explainer's settings.
RULES: dict[str, Callable[[_Settings], Rule]] = {
    "epsilon": lambda s: Epsilon(s.epsilon),
    "gamma": lambda s: Gamma(s.gamma),
    "zplus": lambda s: AlphaBeta(1.0, 0.0),
    "alpha1_beta0": lambda s: AlphaBeta(1.0, 0.0),
    "alpha2_beta1": lambda s: AlphaBeta(2.0, 1.0),
    "flat": lambda s: Flat(),
    "wsquare": lambda s: WSquare(),
    "zbox": lambda s: ZBox(s.low, s.high),
}


def ensure_rule(spec, settings: _Settings) -> Rule:
    """A :class:`Rule` from a rule object or a name in :data:`RULES`."""
    if isinstance(spec, Rule):
        return spec
    if isinstance(spec, str) and spec in RULES:
        return RULES[spec](settings)
    raise ValueError(f"a rule must be a Rule object or one of {', '.join(RULES)}; got {spec!r}")


@dataclass(frozen=True)
class Composite:
    """Rule names by layer type: dense (Linear), conv (Conv1d/2d/3d), and ``first`` for the
    Linear/Conv layer(s) taking the model input (``None``: its type's rule)."""

    dense: str
    conv: str
    first: str | None = None
    summary: str = ""


#: Named composites (Zennit's names where they exist).
COMPOSITES: dict[str, Composite] = {
    "epsilon": Composite("epsilon", "epsilon", summary="epsilon everywhere (~ gradient x input)"),
    "zplus": Composite("zplus", "zplus", summary="z-plus everywhere: non-negative maps"),
    "epsilon_plus": Composite("epsilon", "zplus", summary="conv z-plus, dense epsilon"),
    "epsilon_plus_flat": Composite("epsilon", "zplus", "flat",
                                   summary="conv z-plus, dense epsilon, first layer flat"),
    "epsilon_gamma": Composite("epsilon", "gamma", summary="conv gamma, dense epsilon"),
    "epsilon_gamma_box": Composite("epsilon", "gamma", "zbox",
                                   summary="conv gamma, dense epsilon, first layer z-box"),
    "epsilon_alpha2_beta1": Composite("epsilon", "alpha2_beta1",
                                      summary="conv alpha2-beta1, dense epsilon"),
}


# -- one propagation pass ------------------------------------------------------------------
def _tensors(obj) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, tuple | list):
        for o in obj:
            yield from _tensors(o)


def _carries(t) -> bool:
    return isinstance(t, torch.Tensor) and t.requires_grad and not isinstance(t, nn.Parameter)


class _Guard(TorchFunctionMode):
    """Refuses functions in ``forward`` code (outside modules) that no rule covers."""

    def __init__(self, state: _Pass):
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.state.depth == 0 and any(_carries(t) for t in _tensors(out)):
            self.state.check_function(func, args)
        return out


class _Pass:
    """Hooks and bookkeeping of one LRP forward/backward pass over ``model``."""

    def __init__(self, model: nn.Module, x: torch.Tensor, rules: dict, composite: Composite,
                 settings: _Settings, record: dict | None):
        self.model, self.x, self.settings, self.record = model, x, settings, record
        self.rules, self.composite = rules, composite
        self.leaves: list[tuple[torch.Tensor, torch.Tensor]] = [(x, x.detach())]
        self.produced: dict[int, tuple] = {}  # id(output) -> (output, layer module, its input, rule)
        self.depth = 0
        self.calls: Counter = Counter()
        self.used: dict[str, str] = {}
        self.input_layer_seen = False
        self.stash: dict[int, list[torch.Tensor]] = {}

    # rule choice ----------------------------------------------------------------------------
    def user_rule(self, name: str, module: nn.Module):
        """The ``rules`` entry for this layer: by its name, else by its type; ``None`` if neither."""
        spec = self.rules.get(name)
        if spec is None:
            spec = next((r for k, r in self.rules.items() if isinstance(k, type) and isinstance(module, k)),
                        None)
        return spec

    def rule_for(self, name: str, module: nn.Module, x: torch.Tensor) -> Rule:
        first = x is self.x
        self.input_layer_seen |= first
        spec = self.user_rule(name, module)
        if spec is None:
            if first and self.composite.first:
                spec = self.composite.first
            else:
                spec = self.composite.dense if isinstance(module, DENSE) else self.composite.conv
        rule = ensure_rule(spec, self.settings)
        if rule.input_layer_only and not first:
            raise ValueError(f"rule {rule!r} applies only to a layer that takes the model input "
                             f"directly; layer {name!r} ({type(module).__name__}) does not")
        return rule

    def plain_rule(self, name: str, module: nn.Module) -> Rule:
        """Rule of a parameter-free layer: epsilon, or the user's epsilon-like rule."""
        spec = self.user_rule(name, module)
        rule = ensure_rule("epsilon" if spec is None else spec, self.settings)
        if rule.needs_weights:
            raise ValueError(f"rule {rule!r} needs a Linear/Conv layer; {name!r} is a "
                             f"{type(module).__name__} (use an Epsilon rule)")
        return rule

    # hooks ----------------------------------------------------------------------------------
    def pre_hook(self, name: str, module: nn.Module, args):
        kind = type(module)
        if next(module.children(), None) is not None:
            if next(module.parameters(recurse=False), None) is not None:
                raise TypeError(
                    f"native:lrp cannot propagate through module {name!r} "
                    f"({kind.__name__}): it uses its own parameters in forward; LRP supports "
                    f"parameters only in {_supported_list()} modules"
                )
            return None
        # a subclass takes its base's rules, run through its own forward (TSInterpret's
        # Conv1dSamePadding pads, then convolves); a batch norm's is folded into the layer before
        # it, so it must keep its base's forward
        base = next((k for k in kind.__mro__ if k in SUPPORTED), None)
        if base is not None and kind.forward is not base.forward and issubclass(kind, BATCHNORM):
            raise TypeError(
                f"native:lrp cannot propagate through module {name!r} ({kind.__name__}): it "
                f"subclasses {base.__name__} but overrides forward, and batch norms are merged into "
                f"the layer before them as a {base.__name__}; use a plain {base.__name__}"
            )
        if base is None:
            hint = ""
            if isinstance(module, _OUTPUT_SQUASHERS):
                hint = " (explain the logits: drop the final squashing layer)"
            raise TypeError(
                f"native:lrp has no rule for module {name!r} of type {kind.__name__}{hint}; "
                f"supported module types: {_supported_list()}"
            )
        if getattr(module, "return_indices", False):
            raise TypeError(f"native:lrp does not support {kind.__name__} with return_indices=True "
                            f"(module {name!r})")
        if isinstance(module, BATCHNORM) and module.running_mean is None:
            raise TypeError(f"BatchNorm module {name!r} keeps no running statistics, so it "
                            "normalises with batch statistics; LRP needs per-instance layers")
        self.depth += 1
        if isinstance(module, ACTIVATIONS) and getattr(module, "inplace", False):
            self.stash.setdefault(id(module), []).append(args[0].clone())
        return None

    def hook(self, name: str, module: nn.Module, args, output):
        try:
            x = args[0]
            key = name if not self.calls[name] else f"{name}#{self.calls[name]}"
            self.calls[name] += 1
            if isinstance(module, ACTIVATIONS) and getattr(module, "inplace", False):
                x = self.stash[id(module)].pop()  # the input before it was overwritten
            if self.record is not None and isinstance(module, HOOKED):
                self._record(key, x)
            if isinstance(module, WEIGHTED):
                rule = self.rule_for(name, module, x)
                new = rule.propagate(_Layer.of(module), x, output, self.leaves)
                self.produced[id(new)] = (new, module, x, rule)
                self.used[key] = repr(rule)
                return new
            if isinstance(module, BATCHNORM):
                src = self.produced.get(id(x))
                if src is not None and src[0] is x and (isinstance(src[1], CONV) or x.dim() == 2):
                    _, layer, layer_x, rule = src
                    self.used[key] = f"merged into the preceding {type(layer).__name__}"
                    return rule.propagate(_Layer.merged(layer, module), layer_x, output, self.leaves)
            if isinstance(module, BATCHNORM + POOLING):
                rule = self.plain_rule(name, module)
                self.used[key] = repr(rule)
                return rule.propagate(_Layer.of(module), x, output, self.leaves)
            if isinstance(module, ACTIVATIONS):
                ratio = torch.where(x != 0, output.detach() / torch.where(x != 0, x, 1), 0)
                return output.detach() + (x - x.detach()) * ratio.detach()
            return None  # structural: the gradient routes relevance
        finally:
            self.depth -= 1

    def _record(self, key: str, x: torch.Tensor) -> None:
        if not x.requires_grad:
            return
        value = x.detach()

        def store(grad):
            self.record[key] = (value * grad).flatten(1).sum(1).detach()

        x.register_hook(store)

    def check_function(self, func, args) -> None:
        fname = getattr(func, "__name__", repr(func))
        if fname in _LINEAR_FUNCTIONS or _POOL_FUNCTION.fullmatch(fname):
            return
        if fname in _PRODUCTS:
            carrying = [i for i, a in enumerate(args) if _carries(a)]
            if len(carrying) <= 1 and (carrying != [1] or "div" not in fname):
                return
        raise TypeError(
            f"native:lrp has no rule for the function {fname!r} applied in "
            f"{type(self.model).__name__}.forward to a tensor carrying relevance; only linear "
            "parameter-free operations (reshapes, sums, means, residual additions, products "
            "with constants, padding, pooling) and ReLU may appear outside modules; use "
            f"modules for the rest (supported: {_supported_list()})"
        )

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        handles = []
        try:
            for name, m in self.model.named_modules():
                label = name or type(m).__name__
                handles.append(m.register_forward_pre_hook(
                    lambda mod, args, n=label: self.pre_hook(n, mod, args)))
                if next(m.children(), None) is None:
                    handles.append(m.register_forward_hook(
                        lambda mod, args, out, n=label: self.hook(n, mod, args, out)))
            with _Guard(self):
                yield
        finally:
            for h in handles:
                h.remove()


def _supported_list() -> str:
    return ", ".join(sorted({t.__name__ for t in SUPPORTED}))


def _check_rules(model: nn.Module, rules) -> dict:
    if rules is None:
        return {}
    if not isinstance(rules, dict):
        raise TypeError(f"rules must be a dict {{layer type or module name: rule}}; got "
                        f"{type(rules).__name__}")
    names = {n for n, _ in model.named_modules() if n}
    for k in rules:
        if isinstance(k, str):
            if k not in names:
                close = difflib.get_close_matches(k, sorted(names), n=3)
                hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
                raise ValueError(f"rules names module {k!r}, which the model does not have{hint}")
        elif not (isinstance(k, type) and issubclass(k, nn.Module)):
            raise TypeError(f"rules keys must be module names or nn.Module types; got {k!r}")
        elif k in ACTIVATIONS + STRUCTURAL:
            raise ValueError(f"{k.__name__} layers pass relevance through; they take no rule")
    return dict(rules)


def lrp(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    composite: str = "epsilon",
    rules: dict | None = None,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    low=None,
    high=None,
    layer_relevances: dict | None = None,
) -> tuple[torch.Tensor, dict]:
    """LRP relevance of each input element for output ``target``, in one pass.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode; returns ``(N, K)`` (or ``(N,)``) outputs.
    x : torch.Tensor, shape (N, ...)
    target : torch.Tensor of int, shape (N,)
    composite : str
        A name in :data:`COMPOSITES`.
    rules : dict, optional
        ``{module name or nn.Module type: rule name or Rule}``; names win over types, types
        over the composite.
    epsilon, gamma : float
        Settings of the named epsilon and gamma rules (and pooling's epsilon).
    low, high : float, array-like or None
        Input bounds of the z-box rule (``None``: each instance's minimum/maximum).
    layer_relevances : dict, optional
        Filled with ``{layer name: relevance summed over the layer's input, shape (N,)}``
        for every hooked layer the relevance flows through (``name#k``: the k-th reuse),
        and ``"output"``: the starting relevance ``f_t(x)``.

    Returns
    -------
    attributions : torch.Tensor, shape (N, ...)
        Signed relevance; sums to ``f_t(x)`` where the rules conserve relevance.
    rules_used : dict
        ``{layer name: rule}`` as applied.
    """
    if composite not in COMPOSITES:
        raise ValueError(f"composite must be one of {', '.join(COMPOSITES)}; got {composite!r}")
    for what, v in (("epsilon", epsilon), ("gamma", gamma)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
            raise ValueError(f"{what} must be a non-negative number; got {v!r}")
    training = [n or type(m).__name__ for n, m in model.named_modules()
                if m.training and isinstance(m, BATCHNORM + DROPOUT)]
    if training:
        raise ValueError(f"modules {training} are in training mode; call model.eval() first")
    settings = _Settings(float(epsilon), float(gamma), low, high)
    state = _Pass(model, x.detach().clone().requires_grad_(True), _check_rules(model, rules),
                  COMPOSITES[composite], settings, layer_relevances)
    with torch.enable_grad(), state.attached():
        out = _as_2d_output(model(state.x), x.shape[0])
    if state.composite.first and not state.input_layer_seen:
        raise ValueError(f"composite {composite!r} puts {state.composite.first!r} on the "
                         "Linear/Conv layer taking the model input, but no such layer takes it directly")
    selected = out.gather(1, target.view(-1, 1).to(out.device))
    if layer_relevances is not None:
        layer_relevances["output"] = selected.detach().squeeze(1)
    grads = torch.autograd.grad(selected.sum(), [leaf for leaf, _ in state.leaves],
                                allow_unused=True)
    attr = sum((value * g for (_, value), g in zip(state.leaves, grads, strict=True) if g is not None),
               torch.zeros_like(x))
    return attr.detach(), state.used


@register_explainer(
    "lrp", library="native", family="propagation", modalities=("tabular", "timeseries", "image"),
    model_kinds=("torch",), has_convergence_delta=True, multi_input=True, recommended=True,
    summary="Layer-wise relevance propagation with rules per layer type, for 1-D and 2-D "
    "networks (Conv1d, BatchNorm, pooling, residual sums)",
    reference="Bach et al. (2015), On Pixel-Wise Explanations by Layer-Wise Relevance "
    "Propagation; Montavon et al. (2019), Layer-Wise Relevance Propagation: An Overview; "
    "Anders et al. (2021), Software for Dataset-wide XAI (Zennit)",
    notes="Relevance starts at the target output f_t(x). It is conserved layer by layer only "
    "where the rules conserve it (no biases, or z-plus/flat/w-square; epsilon absorbs a "
    "little): the convergence delta reports what biases and stabilisers absorb, so, as for "
    "captum:lrp, it is reported but not bounded.",
)
class LRP(PropagationExplainer, Batched):
    """LRP by the modified-gradient trick, with named rules and composites.

    Parameters
    ----------
    model : torch.nn.Module
        Built from Linear, Conv1d/2d/3d, BatchNorm, pooling, Flatten, Dropout and
        element-wise activation modules; ``forward`` may add, reshape, average and ReLU.
        Any other module raises a ``TypeError`` naming it.
    composite : str
        Rules by layer type, a name in :data:`COMPOSITES`: ``epsilon`` (default),
        ``zplus``, ``epsilon_plus``, ``epsilon_plus_flat``, ``epsilon_gamma``,
        ``epsilon_gamma_box``, ``epsilon_alpha2_beta1``.
    rules : dict, optional
        ``{module name or nn.Module type: rule}``, a rule being a name in :data:`RULES` or a
        :class:`Rule` object (e.g. ``AlphaBeta(3, 2)``); overrides the composite.
    epsilon : float
        The epsilon rule's stabiliser (1e-6 as in Zennit; Captum uses 1e-9).
    gamma : float
        The gamma rule's weight of positive contributions (0.25, as Captum and Zennit).
    low, high : float, array-like or None
        Input bounds for the z-box rule; ``None``: each instance's own minimum/maximum.
    """

    composite: str = "epsilon"
    rules: dict | None = None
    epsilon: float = 1e-06
    gamma: float = 0.25
    low: float | None = None
    high: float | None = None

    def _attribute(self, call: Call, *, baselines, feature_mask) -> Attribution:
        target, parts, used = call.target_t, [], {}
        for sl in chunks(call.x.shape[0], call.rows):
            attr, used = lrp(call.model.model, call.x[sl], target[sl], composite=self.composite,
                             rules=self.rules, epsilon=self.epsilon, gamma=self.gamma,
                             low=self.low, high=self.high)
            parts.append(attr)
        return Attribution(torch.cat(parts), params={"rules_used": used})
