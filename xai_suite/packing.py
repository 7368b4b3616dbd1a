"""Models with several inputs (a tuple of tensors, as Captum takes them), packed into one.

An explainer of one input array explains ``f(x_1, ..., x_k)`` through its packed view: each
instance's inputs flattened into one vector ``z`` of length ``D = sum_i size(x_i)``, the model
called as ``f(*unpack(z))``. Every array of the call is packed and unpacked with the same
:class:`Layout`, so attributions come back as a tuple and the completeness delta sums over
all inputs. Feature-mask labels are shared across inputs, as in Captum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Layout:
    """The per-instance shapes of a model's inputs, in order."""

    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, arrays: Sequence[torch.Tensor], name: str = "inputs") -> Layout:
        """The layout of a tuple of (N, ...) tensors; they must share N and be at least 2-D."""
        if len(arrays) < 2:
            raise ValueError(f"{name} as a tuple holds one array per model input: at least 2; "
                             f"got {len(arrays)} (pass a single input as an array)")
        n = {a.shape[0] if a.ndim else None for a in arrays}
        if len(n) != 1 or None in n or any(a.ndim < 2 for a in arrays):
            raise ValueError(f"every array of {name} must have the instances on its first axis and "
                             f"at least 2 dimensions, all with the same N; got shapes "
                             f"{[tuple(a.shape) for a in arrays]}")
        return cls(tuple(tuple(a.shape[1:]) for a in arrays))

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

    def pack(self, arrays: Sequence[torch.Tensor], lead: int = 1) -> torch.Tensor:
        """One tensor (*lead axes, D) from tensors (*lead axes, *shape_i)."""
        for a, shape in zip(arrays, self.shapes, strict=True):
            if tuple(a.shape[lead:]) != shape:
                raise ValueError(f"expected per-instance shapes {list(self.shapes)}; got "
                                 f"{[tuple(b.shape[lead:]) for b in arrays]}")
        return torch.cat([a.reshape(*a.shape[:lead], -1) for a in arrays], dim=-1)

    def unpack(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The tensors (*lead axes, *shape_i) of a packed tensor (*lead axes, D)."""
        parts = torch.split(z, self.sizes, dim=-1)
        return tuple(p.reshape(*z.shape[:-1], *s) for p, s in zip(parts, self.shapes, strict=True))


class PackedModel(nn.Module):
    """``model`` called on a packed tensor: ``model(*layout.unpack(z))``."""

    def __init__(self, model: nn.Module, layout: Layout):
        super().__init__()
        self.model, self.layout = model, layout
        self.train(model.training)  # the model's mode: explaining must not change it

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(*self.layout.unpack(z))
