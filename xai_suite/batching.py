"""Memory-bounded batching, the one batched executor, and device selection.

Every loop that builds rows, runs them through a model in bounded chunks and keeps the
target's output goes through :func:`chunks` (slices with one progress-bar policy), for
(instance, variant) grids :func:`pair_outputs`, and for groups of rows reduced together
(an instance's path or its coalition's background rows) :func:`group_blocks`. Whether a
model's outputs are probabilities is decided once, by :func:`on_simplex`.

Every explainer has one knob, ``batch_size``: the number of rows (inputs, interpolation
steps, perturbations, ...) that go through the model in one call. ``"auto"`` derives it
from a probe of the model's activation memory per row:

- on a GPU, as many rows as fit in ``max_memory`` (default: half the free GPU memory);
- on a CPU, as many rows as keep one call's activations near ``CPU_CHUNK_BYTES`` and its
  largest single tensor under ``CPU_TENSOR_BYTES``, within ``max_memory`` (default: a
  quarter of the available RAM). Bigger CPU chunks are slower, not faster: glibc's malloc
  serves blocks above its mmap threshold (at most 32 MiB) with fresh pages from the kernel
  and returns them on free, so every call pays page faults for all of it again
  (``benchmarks/perf_gradients.py`` measures this, with and without
  ``MALLOC_TRIM_THRESHOLD_``/``MALLOC_TOP_PAD_``/``MALLOC_MMAP_THRESHOLD_`` set).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ._validation import check_positive_int

#: Target forward-activation bytes per model call on CPU (all leaf modules' outputs).
CPU_CHUNK_BYTES = 64 * 2**20
#: Largest single activation tensor per call on CPU: half glibc's maximal mmap threshold.
CPU_TENSOR_BYTES = 16 * 2**20
#: Fewest rows per call that "auto" picks on CPU when memory allows (amortises call overhead).
CPU_MIN_ROWS = 16
#: Backward pass and temporaries cost roughly this many times the forward activations.
BACKWARD_FACTOR = 3
#: Loops of more steps than this show a progress bar (on a terminal).
PROGRESS_MIN_STEPS = 50


def resolve_device(device="auto") -> torch.device:
    """Return ``torch.device``; ``"auto"`` is CUDA when available, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available")
    return dev


def available_memory(device: torch.device) -> int:
    """Free memory in bytes on ``device`` (GPU: free device memory; CPU: MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def default_budget(device: torch.device) -> int:
    """The default ``max_memory``: half the free GPU memory, a quarter of available RAM."""
    frac = 0.5 if device.type == "cuda" else 0.25
    return int(available_memory(device) * frac)


@dataclass(frozen=True)
class ActivationProbe:
    """Forward activation sizes per input row.

    Attributes
    ----------
    total : int
        Bytes of the input and every leaf module's output, per row.
    largest : int
        Bytes of the largest single tensor among them, per row.
    """

    total: int
    largest: int


def probe_activations(forward, sample: torch.Tensor) -> ActivationProbe:
    """Measure activation bytes per input row on a small probe batch.

    Parameters
    ----------
    forward : torch.nn.Module or callable
        For modules, forward hooks on every leaf module add up their outputs; for other
        callables only the input and output are counted.
    sample : torch.Tensor, shape (n, ...)
        A few input rows on the model's device.
    """
    sizes = [sample.numel() * sample.element_size()]
    handles = []
    if isinstance(forward, torch.nn.Module):

        def hook(_mod, _inp, out):
            for t in out if isinstance(out, tuple | list) else (out,):
                if isinstance(t, torch.Tensor):
                    sizes.append(t.numel() * t.element_size())

        handles = [
            m.register_forward_hook(hook) for m in forward.modules() if not list(m.children())
        ]
    try:
        with torch.no_grad():
            out = forward(sample)
    finally:
        for h in handles:
            h.remove()
    if not handles and isinstance(out, torch.Tensor):
        sizes.append(out.numel() * out.element_size())
    n = sample.shape[0]
    return ActivationProbe(max(1, math.ceil(sum(sizes) / n)), max(1, math.ceil(max(sizes) / n)))


def auto_rows(probe: ActivationProbe, device: torch.device, max_memory: int | None) -> int:
    """Rows per model call for a model with activation sizes ``probe``."""
    budget = max_memory if max_memory is not None else default_budget(device)
    budget_rows = max(1, budget // (probe.total * BACKWARD_FACTOR))
    if device.type == "cuda":
        return int(budget_rows)
    cpu_rows = min(CPU_CHUNK_BYTES // probe.total, CPU_TENSOR_BYTES // probe.largest)
    return int(max(1, min(budget_rows, max(CPU_MIN_ROWS, cpu_rows))))


def check_batch_size(batch_size) -> None:
    """Raise unless ``batch_size`` is ``"auto"`` or a positive int."""
    if batch_size == "auto":
        return
    try:
        check_positive_int(batch_size=batch_size)
    except ValueError:
        raise ValueError(f"batch_size must be 'auto' or a positive int; got {batch_size!r}") from None


# -- the executor ----------------------------------------------------------------------------
def progress(steps: Sequence | int, desc: str, *, min_steps: int = PROGRESS_MIN_STEPS) -> Iterable:
    """``steps`` (or ``range(steps)``) with a progress bar on a terminal when there are many."""
    steps = range(steps) if isinstance(steps, int) else steps
    return tqdm(steps, desc=desc, leave=False, disable=None if len(steps) > min_steps else True)


def chunks(total: int, rows: int, desc: str | None = None) -> Iterator[slice]:
    """Consecutive slices of ``range(total)`` of at most ``rows`` rows each.

    With ``desc``, a progress bar follows the chunks (see :func:`progress`).
    """
    starts = range(0, total, max(1, int(rows)))
    for s in progress(starts, desc) if desc else starts:
        yield slice(s, min(s + rows, total))


def group_blocks(groups: int, size: int, rows: int, desc: str) -> Iterator[tuple[slice, slice]]:
    """Blocks of at most ``rows`` rows over ``groups`` groups of ``size`` rows each.

    A block holds whole groups (``rows // size`` of them) when one group fits in ``rows``,
    else a slice of one group's rows. Yields ``(groups, within)`` slices, the first block
    the largest in both; a progress bar follows them (see :func:`progress`).
    """
    per, inner = (min(rows // size, groups), size) if rows >= size else (1, rows)
    plan = [(g, w) for g in range(0, groups, per) for w in range(0, size, inner)]
    for g, w in progress(plan, desc):
        yield slice(g, min(g + per, groups)), slice(w, min(w + inner, size))


def pair_outputs(
    forward: Callable,
    n: int,
    m: int,
    build: Callable[[torch.Tensor, torch.Tensor], object],
    target: torch.Tensor | Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    rows: int,
    desc: str,
    device: torch.device | None = None,
) -> torch.Tensor:
    """One value per (instance, variant) pair, rows built lazily chunk by chunk.

    Pair ``p`` is instance ``p // m``, variant ``p % m``; ``rows`` pairs go through the model
    per call, without gradients.

    Parameters
    ----------
    forward : callable
        ``forward(build(...)) -> (r, K)`` model outputs.
    n, m : int
        Instances, and variants per instance.
    build : callable
        ``(instances (r,), variants (r,)) -> model input for r rows``; the index tensors are
        int64 on ``device``.
    target : torch.Tensor of int, shape (n,), or callable
        The class whose output is kept per instance, or ``(outputs, instances, variants) ->
        (r,)`` values.
    rows : int
        Rows per model call.
    desc : str
        Progress-bar label.
    device : torch.device, optional
        Of the index tensors; by default the target's.

    Returns
    -------
    torch.Tensor of float64 on CPU, shape (n, m)
    """
    if device is None:
        device = target.device if isinstance(target, torch.Tensor) else torch.device("cpu")
    out = torch.empty(n * m, dtype=torch.float64)
    with torch.no_grad():
        for sl in chunks(n * m, rows, desc):
            idx = torch.arange(sl.start, sl.stop, device=device)
            inst, var = idx // m, idx % m
            y = forward(build(inst, var))
            if callable(target):
                out[sl] = target(y, inst, var).double().cpu()
            else:
                out[sl] = y.gather(1, target[inst].unsqueeze(1))[:, 0].double().cpu()
    return out.view(n, m)


def on_simplex(outputs: np.ndarray) -> bool:
    """Whether model outputs ``(N, K)`` are probabilities (non-negative, rows summing to 1)."""
    p = np.asarray(outputs)
    return bool((p >= 0).all() and np.allclose(p.sum(1), 1.0, atol=1e-4))


def softmax(outputs: np.ndarray) -> np.ndarray:
    """Softmax probabilities ``(N, K)`` of logits ``outputs``, float64."""
    out = np.asarray(outputs, dtype=np.float64)
    e = np.exp(out - out.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
