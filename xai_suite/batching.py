"""Memory-bounded batching and device selection.

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
from dataclasses import dataclass

import torch

from ._validation import check_positive_int

#: Target forward-activation bytes per model call on CPU (all leaf modules' outputs).
CPU_CHUNK_BYTES = 64 * 2**20
#: Largest single activation tensor per call on CPU: half glibc's maximal mmap threshold.
CPU_TENSOR_BYTES = 16 * 2**20
#: Fewest rows per call that "auto" picks on CPU when memory allows (amortises call overhead).
CPU_MIN_ROWS = 16
#: Backward pass and temporaries cost roughly this many times the forward activations.
BACKWARD_FACTOR = 3


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
