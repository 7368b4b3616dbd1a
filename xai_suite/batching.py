"""Memory-bounded batching, the one batched executor, and device selection.

Every loop that builds rows, runs them through a model in bounded chunks and keeps the
target's output goes through :func:`chunks` (slices with one progress-bar policy), for
(instance, variant) grids :func:`pair_outputs`, and for groups of rows reduced together
(an instance's path or its coalition's background rows) :func:`group_blocks`. Whether a
model's outputs are probabilities is decided once, by :func:`on_simplex`.

Every explainer has one knob, ``batch_size``: the number of rows (inputs, interpolation
steps, perturbations, ...) that go through the model in one call. Results never depend on
it (the conformance check proves batch invariance). ``"auto"`` (:func:`pick_rows`) picks it
by measurement, within a memory bound:

1. **Memory bound.** A probe of the model's activation memory per row
   (:func:`probe_activations`: the input and every leaf module's output, on a few rows)
   bounds the rows per call: ``max_memory // (BACKWARD_FACTOR * bytes per row)``, where
   ``max_memory`` defaults to half the free GPU memory or a quarter of the available RAM
   (:func:`default_budget`). "auto" never picks more rows than this.
2. **Timed probe** (:func:`time_ladder`). The candidates are the memory-only rule's size
   (step 3, the incumbent) and the powers of two from :data:`PROBE_MIN_ROWS` up to that
   bound (at most :data:`GPU_PROBE_MAX_ROWS` on a GPU; on a CPU at most
   :data:`PROBE_MAX_ROWS` and :data:`CPU_PROBE_BYTES` of forward activations per call).
   Each is measured :data:`PROBE_CALLS` times in interleaved passes (the fastest counts;
   one untimed warm-up call first; a size below :data:`PROBE_WORK_ROWS` rows is run several
   times in a row per measurement, so short calls cannot slip between other processes'
   time slices and look fast) with the explainer's kind of pass: forward only, or
   forward and backward to the input for gradient methods. The powers of two are climbed
   while the calls stay within :data:`PROBE_SECONDS` (predicted from the per-row time
   measured so far), until :data:`PROBE_PATIENCE` sizes in a row are slower per row than
   the best. The incumbent stays unless another size is faster per row by more than
   :data:`PROBE_MARGIN`; then the smallest size within :data:`PROBE_TOLERANCE` of the
   fastest wins (less memory, same speed) (:func:`choose_rows`). A model too slow to time
   the warm-up and the incumbent within the budget is not timed (step 3 decides).
3. **Memory-only rule** (when timing is off, not possible, or fails): on a GPU as many rows
   as fit the bound; on a CPU as many as keep one call's activations near
   :data:`CPU_CHUNK_BYTES` and its largest single tensor under :data:`CPU_TENSOR_BYTES`,
   at least :data:`CPU_MIN_ROWS`, within the bound (:func:`auto_rows`). Bigger CPU chunks are
   not faster past a point: glibc's malloc serves blocks above its mmap threshold (at most
   32 MiB) with fresh pages from the kernel and returns them on free, so every call pays
   page faults for all of it again (``benchmarks/perf_gradients.py`` measures this, with and
   without ``MALLOC_TRIM_THRESHOLD_``/``MALLOC_TOP_PAD_``/``MALLOC_MMAP_THRESHOLD_`` set).
   Callers that size chunks from memory alone use :func:`probe_activations` and
   :func:`auto_rows` directly.

**Caching.** The activation probe and the timings are paid once per process and key: (the
model object, the shape of one row, dtype, device, with or without backward). The cache
holds the model weakly (its entries go with it); a model whose structure changes in place
keeps its old entries until :func:`clear_cache`. The timings are stored per candidate size,
so a later call under a smaller memory bound picks the fastest size that fits it. The
default budget (a ``/proc/meminfo`` or ``cudaMemGetInfo`` read) is cached per device for
:data:`BUDGET_TTL` seconds.

**Deterministic mode.** Timings vary from run to run, so the size "auto" picks (recorded
as ``batch_size_used``) and the last bits of floating-point results (kernels are chosen by
batch shape) can too. Setting the environment variable ``XAI_SUITE_TIMED_BATCHING=0``
before import, or :data:`TIMED_PROBE` to False, turns timing off: "auto" then follows the
memory-only rule, the same size on every run.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
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

#: Whether "auto" times candidate chunk sizes (False: the memory-only rule). The environment
#: variable ``XAI_SUITE_TIMED_BATCHING=0`` (read at import) sets it to False.
TIMED_PROBE = os.environ.get("XAI_SUITE_TIMED_BATCHING", "1").strip().lower() not in (
    "0", "false", "no", "off")
#: Smallest candidate rows per call of the timed probe.
PROBE_MIN_ROWS = 16
#: Largest candidate rows per call of the timed probe on a CPU, and on a GPU.
PROBE_MAX_ROWS = 4096
GPU_PROBE_MAX_ROWS = 2**16
#: On a CPU, candidates also keep one call's forward activations under this many bytes (past
#: glibc's mmap threshold bigger chunks are rarely faster, and a laptop's RAM is shared).
CPU_PROBE_BYTES = 256 * 2**20
#: Seconds the timed probe may spend per cache key (predicted before each candidate size).
PROBE_SECONDS = 0.25
#: Measurements per candidate size, in interleaved passes over the sizes (the fastest counts).
PROBE_CALLS = 2
#: The ladder stops after this many sizes in a row slower per row than the best so far (by
#: more than PROBE_TOLERANCE).
PROBE_PATIENCE = 2
#: Rows per measurement: smaller sizes are run several times in a row and timed together.
PROBE_WORK_ROWS = 256
#: ... but no more rows than take this long (a model slow per row is measured on fewer rows,
#: so that its sizes can be compared within the budget at all).
PROBE_WORK_SECONDS = 0.02
#: The smallest size within this fraction of the fastest per-row time is picked.
PROBE_TOLERANCE = 0.05
#: The memory-only rule's size stays unless another is faster per row by more than this
#: fraction (timing noise on a loaded machine is of this order).
PROBE_MARGIN = 0.10
#: Seconds the default memory budget (one ``/proc/meminfo`` or CUDA read) stays cached.
BUDGET_TTL = 1.0


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
    """Free memory in bytes on ``device`` (GPU: free device memory; CPU: MemAvailable).

    Read afresh on every call; :func:`default_budget` caches it for :data:`BUDGET_TTL` s.
    """
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


_BUDGETS: dict[str, tuple[float, int]] = {}


def default_budget(device: torch.device) -> int:
    """The default ``max_memory``: half the free GPU memory, a quarter of available RAM.

    Cached per device for :data:`BUDGET_TTL` seconds, so calls in quick succession read the
    free memory once.
    """
    now, key = time.monotonic(), str(device)
    hit = _BUDGETS.get(key)
    if hit is not None and now - hit[0] < BUDGET_TTL:
        return hit[1]
    frac = 0.5 if device.type == "cuda" else 0.25
    budget = int(available_memory(device) * frac)
    _BUDGETS[key] = (now, budget)
    return budget


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


# -- the per-process cache -------------------------------------------------------------------
#: id(owner) -> (weak reference to the owner, {entry key: value}).
_CACHE: dict[int, tuple[weakref.ref, dict]] = {}


def clear_cache() -> None:
    """Forget every cached activation probe, timing and default budget (e.g. after changing a
    model's layers in place)."""
    _CACHE.clear()
    _BUDGETS.clear()


def _owner(forward, key) -> tuple[object, Hashable]:
    """The object the cache holds weakly for ``forward``, and a sub-key within it."""
    if key is not None:  # wrappers of one type around the same model share entries
        return key, type(forward)
    if inspect.ismethod(forward):  # a bound method: its instance, told apart by the function
        return forward.__self__, forward.__func__
    return forward, None


def _entries(owner) -> dict | None:
    """The cache entries of ``owner`` (created empty), or None for objects that cannot be
    referenced weakly (those are not cached)."""
    k = id(owner)
    hit = _CACHE.get(k)
    if hit is not None and hit[0]() is owner:
        return hit[1]

    def drop(ref, k=k, cache=_CACHE):  # bound now: at interpreter exit the module's globals are gone
        if cache.get(k, (None,))[0] is ref:
            del cache[k]

    try:
        ref = weakref.ref(owner, drop)
    except TypeError:
        return None
    entries: dict = {}
    _CACHE[k] = (ref, entries)
    return entries


def _own_rng(device: torch.device):
    """Probe forwards leave torch's global random state (CPU, and ``device``'s) as it was."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def _row_key(sample: torch.Tensor) -> tuple:
    return tuple(sample.shape[1:]), sample.dtype, str(sample.device)


def _probe_uncached(forward, sample: torch.Tensor) -> tuple[ActivationProbe, float]:
    """The activation probe and the seconds per row its forward took."""
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
    t0 = time.perf_counter()
    try:
        with torch.no_grad(), _own_rng(sample.device):
            out = forward(sample)
            _sync(sample.device)
    finally:
        for h in handles:
            h.remove()
    seconds = time.perf_counter() - t0
    if not handles and isinstance(out, torch.Tensor):
        sizes.append(out.numel() * out.element_size())
    n = sample.shape[0]
    probe = ActivationProbe(max(1, math.ceil(sum(sizes) / n)), max(1, math.ceil(max(sizes) / n)))
    return probe, seconds / n


def _cached_probe(forward, sample: torch.Tensor, key) -> tuple[ActivationProbe, float]:
    owner, sub = _owner(forward, key)
    entries = _entries(owner)
    ekey = ("probe", sub, *_row_key(sample))
    if entries is not None and ekey in entries:
        return entries[ekey]
    value = _probe_uncached(forward, sample)
    if entries is not None:
        entries[ekey] = value
    return value


def probe_activations(forward, sample: torch.Tensor, *, key=None) -> ActivationProbe:
    """Measure activation bytes per input row on a small probe batch (cached).

    The result is cached for the process per ``forward`` (held weakly; for a bound method,
    its instance) and per row shape, dtype and device of ``sample``: a second call with the
    same model and row shape runs no forward.

    Parameters
    ----------
    forward : torch.nn.Module or callable
        For modules, forward hooks on every leaf module add up their outputs; for other
        callables only the input and output are counted.
    sample : torch.Tensor, shape (n, ...)
        A few input rows on the model's device.
    key : object, optional
        The object to cache under instead of ``forward`` (e.g. the model behind a wrapper
        built afresh on every call; entries are then shared by forwards of one type); it must
        be referable weakly to be cached.

    Returns
    -------
    ActivationProbe
    """
    return _cached_probe(forward, sample, key)[0]


def memory_rows(probe: ActivationProbe, device: torch.device, max_memory: int | None) -> int:
    """The most rows per call that ``max_memory`` (default :func:`default_budget`) allows:
    ``max_memory // (BACKWARD_FACTOR * probe.total)``, at least 1."""
    budget = max_memory if max_memory is not None else default_budget(device)
    return int(max(1, budget // (probe.total * BACKWARD_FACTOR)))


def auto_rows(probe: ActivationProbe, device: torch.device, max_memory: int | None) -> int:
    """Rows per model call by the memory-only rule, for a model with activation sizes ``probe``.

    On a GPU, :func:`memory_rows`; on a CPU, as many rows as keep a call's activations near
    :data:`CPU_CHUNK_BYTES` and its largest tensor under :data:`CPU_TENSOR_BYTES`, at least
    :data:`CPU_MIN_ROWS`, within :func:`memory_rows`.
    """
    budget_rows = memory_rows(probe, device, max_memory)
    if device.type == "cuda":
        return budget_rows
    cpu_rows = min(CPU_CHUNK_BYTES // probe.total, CPU_TENSOR_BYTES // probe.largest)
    return int(max(1, min(budget_rows, max(CPU_MIN_ROWS, cpu_rows))))


# -- the timed probe -------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _scalar(out) -> torch.Tensor | None:
    """A scalar depending on every floating tensor of a model's output, for a backward pass."""
    if isinstance(out, torch.Tensor):
        return out.sum() if out.is_floating_point() and out.requires_grad else None
    items = out.values() if isinstance(out, dict) else out if isinstance(out, tuple | list) else ()
    parts = [s for s in map(_scalar, items) if s is not None]
    return sum(parts[1:], parts[0]) if parts else None


def _timed_call(forward, sample: torch.Tensor, rows: int, backward: bool) -> float:
    """Seconds of one call of ``forward`` on ``rows`` rows (``sample``'s rows, repeated)."""
    idx = torch.arange(rows, device=sample.device) % sample.shape[0]
    t0 = time.perf_counter()
    z = sample[idx]
    if backward:
        z.requires_grad_(True)
        with torch.enable_grad():
            s = _scalar(forward(z))
            if s is not None:
                torch.autograd.grad(s, z, allow_unused=True)
    else:
        with torch.no_grad():
            forward(z)
    _sync(sample.device)
    return time.perf_counter() - t0


def time_ladder(
    run: Callable[[int], float],
    upper: int,
    *,
    incumbent: int | None = None,
    seconds_per_row: float = 0.0,
    min_rows: int | None = None,
    budget_s: float | None = None,
    calls: int | None = None,
    patience: int | None = None,
    work_rows: int | None = None,
) -> dict[int, float]:
    """Time candidate rows per call: ``incumbent`` and the powers of two from ``min_rows`` up
    to ``upper``.

    Parameters
    ----------
    run : callable
        ``run(rows) -> seconds`` of one call on ``rows`` rows. Called twice on ``min_rows``
        rows first (a warm-up, and a steady call that predicts costs; neither recorded);
        then ``incumbent`` is measured (see ``work_rows``); then a first pass climbs the
        powers of two, one measurement each, stopping after ``patience`` sizes in a row
        slower per row than the best of them by more than :data:`PROBE_TOLERANCE`, or where a
        size's ``calls`` measurements are predicted to exceed the budget; then ``calls - 1``
        more passes over every size timed, largest first, within the budget.
    upper : int
        The largest candidate allowed (the memory bound).
    incumbent : int, optional
        The size used without timing (the memory-only rule's), timed first when it lies in
        ``[min_rows, upper]``; when its calls do not fit the budget nothing is timed.
    seconds_per_row : float
        An estimate of the cost per row (0: none): nothing is run when it puts the warm-up over
        four times the budget. The steady call's per-row time predicts the first candidate's
        cost, the last candidate's the next.
    min_rows, budget_s, calls, patience : optional
        Default :data:`PROBE_MIN_ROWS`, :data:`PROBE_SECONDS`, :data:`PROBE_CALLS`,
        :data:`PROBE_PATIENCE`.
    work_rows : int, optional
        Rows per measurement: a size below it is run ``ceil(work_rows / rows)`` times in a
        row and timed together, so every measurement spans about as long as the others (a
        short call on a shared CPU can slip between other processes' time slices and look
        faster than the steady state). Default: the larger of :data:`PROBE_WORK_ROWS` and
        ``incumbent``, at most ``upper``, and at most (but at least ``min_rows``) the rows the
        steady call predicts to take :data:`PROBE_WORK_SECONDS`.

    Returns
    -------
    dict
        Rows -> seconds per row (the fastest of the calls); empty when ``upper < min_rows``,
        the warm-up alone takes (or is estimated to take) more than the budget, or the first
        candidate is predicted to exceed it.
    """
    min_rows = PROBE_MIN_ROWS if min_rows is None else min_rows
    budget_s = PROBE_SECONDS if budget_s is None else budget_s
    calls = PROBE_CALLS if calls is None else calls
    patience = PROBE_PATIENCE if patience is None else patience
    times: dict[int, float] = {}
    if upper < min_rows:
        return times
    fixed_work = work_rows is not None
    if work_rows is None:
        work_rows = max(PROBE_WORK_ROWS, incumbent if incumbent is not None and incumbent <= upper else 0)
    work_rows = max(1, min(work_rows, upper))

    def reps(rows: int) -> int:
        return max(1, -(-work_rows // rows))

    def measure(rows: int) -> float:
        """Seconds per row of ``reps(rows)`` calls in a row."""
        k = reps(rows)
        return sum(run(rows) for _ in range(k)) / (k * rows)

    # the estimate (often a first call, inflated by set-up) says even the warm-up is far too long
    if seconds_per_row * min_rows > 4 * budget_s:
        return times
    spent = run(min_rows)  # warm-up: the first call on a shape pays kernel set-up, not timed
    if spent > budget_s:  # one smallest call alone costs more than the whole budget
        return times
    t = run(min_rows)  # a second, steady call predicts the costs (the first pays set-up)
    spent += t
    per_row = t / min_rows
    if not fixed_work and per_row > 0:
        work_rows = max(min(work_rows, math.ceil(PROBE_WORK_SECONDS / per_row)), min_rows)
    if incumbent is not None and min_rows <= incumbent <= upper:
        if spent + calls * reps(incumbent) * incumbent * per_row > budget_s:
            return times  # no room to compare anything with the incumbent
        times[incumbent] = t = measure(incumbent)
        spent += t * reps(incumbent) * incumbent
    # first pass: climb while this size's share of every pass fits the budget and it pays
    ladder: dict[int, float] = {}
    rows, worse = min_rows, 0
    while rows <= upper and spent + calls * reps(rows) * rows * per_row <= budget_s:
        ladder[rows] = per_row = measure(rows)
        spent += per_row * reps(rows) * rows
        times[rows] = min(per_row, times.get(rows, math.inf))
        worse = worse + 1 if per_row > min(ladder.values()) * (1 + PROBE_TOLERANCE) else 0
        if worse >= patience:
            break
        rows *= 2
    # further passes over the same sizes, largest first: the machine's drift and other
    # processes' load fall on every size alike; the fastest call per size counts
    for _ in range(calls - 1):
        for r in sorted(times, reverse=True):
            if spent + reps(r) * r * times[r] <= budget_s:
                t = measure(r)
                spent += t * reps(r) * r
                times[r] = min(times[r], t)
    return dict(sorted(times.items()))


def choose_rows(
    times: dict[int, float],
    bound: int,
    tolerance: float | None = None,
    *,
    incumbent: int | None = None,
    margin: float | None = None,
) -> int | None:
    """The size to use among the timed ``times`` (rows -> seconds per row) up to ``bound``.

    ``incumbent`` where it was timed and is within ``margin`` (default :data:`PROBE_MARGIN`)
    of the fastest per-row time; else the smallest size within ``tolerance`` (default
    :data:`PROBE_TOLERANCE`) of it; None when no timed size fits ``bound``.
    """
    tolerance = PROBE_TOLERANCE if tolerance is None else tolerance
    margin = PROBE_MARGIN if margin is None else margin
    fit = {r: t for r, t in times.items() if r <= bound}
    if not fit:
        return None
    best = min(fit.values())
    if incumbent in fit and fit[incumbent] <= best * (1 + margin):
        return incumbent
    return min(r for r, t in fit.items() if t <= best * (1 + tolerance))


def pick_rows(
    forward,
    sample: torch.Tensor,
    device: torch.device,
    max_memory: int | None = None,
    *,
    backward: bool = False,
    key=None,
    timed: bool | None = None,
) -> int:
    """Rows per model call for ``batch_size="auto"``: timed, within the memory bound.

    See the module docstring for the policy. The activation probe and the timings are
    cached per (``forward`` or ``key``, row shape, dtype, device, ``backward``): a second
    call with the same key runs no forward.

    Parameters
    ----------
    forward : torch.nn.Module or callable
        ``forward(rows) -> outputs``; timing calls it on the rows of ``sample`` repeated.
    sample : torch.Tensor, shape (n, ...)
        Input rows on ``device`` (``n >= 1``; the first 4 are probed for memory).
    device : torch.device
    max_memory : int, optional
        Bytes the model's activations may take; default :func:`default_budget`.
    backward : bool
        Time forward and backward passes to the input (gradient methods) instead of
        forward passes without gradients. Integer inputs (token ids) are timed forward only.
    key : object, optional
        Cache under this object instead of ``forward`` (e.g. the model behind a wrapper
        built afresh on every call, which would otherwise be probed and timed on every call);
        forwards of one type share its entries.
    timed : bool, optional
        Time candidate sizes; default :data:`TIMED_PROBE`. False: :func:`auto_rows`.

    Returns
    -------
    int
        At least 1 and at most :func:`memory_rows`.
    """
    if sample.ndim == 0 or sample.shape[0] == 0:
        raise ValueError(f"sample must hold at least one row; got shape {tuple(sample.shape)}")
    probe, per_row = _cached_probe(forward, sample[: min(4, sample.shape[0])], key)
    bound = memory_rows(probe, device, max_memory)
    if not (TIMED_PROBE if timed is None else timed):
        return auto_rows(probe, device, max_memory)
    owner, sub = _owner(forward, key)
    entries = _entries(owner)
    backward = bool(backward and sample.is_floating_point())
    ekey = ("timed", sub, backward, *_row_key(sample))
    times = entries.get(ekey) if entries is not None else None
    if times is None or bound >= times["retime_at"]:
        cap = GPU_PROBE_MAX_ROWS if device.type == "cuda" else min(
            PROBE_MAX_ROWS, max(PROBE_MIN_ROWS, CPU_PROBE_BYTES // probe.total))
        upper = min(bound, cap)
        run = lambda rows: _timed_call(forward, sample, rows, backward)  # noqa: E731
        try:
            with _own_rng(device):
                ladder = time_ladder(run, upper, incumbent=auto_rows(probe, device, max_memory),
                                     seconds_per_row=per_row * (3 if backward else 1))
        except Exception:  # a model failing here fails with its own error in the real call
            ladder = {}
        # the ladder stopped at the memory bound: time again if a later bound lets it climb
        nxt = 2 * max(ladder) if ladder else PROBE_MIN_ROWS
        times = {"sizes": ladder, "retime_at": nxt if upper < nxt <= cap else math.inf}
        if entries is not None:
            entries[ekey] = times
    sizes, incumbent = times["sizes"], auto_rows(probe, device, max_memory)
    rows = choose_rows(sizes, bound, incumbent=incumbent)
    if rows is None:  # not timed, or the bound is below every timed size
        return incumbent if not sizes else bound
    if (incumbent not in sizes and rows == max(sizes) and 2 * rows <= bound
            and min(sizes.values()) == sizes[rows]):
        # the time budget ran out while bigger chunks were still faster: the memory rule's
        # size, where larger, is as far as the evidence and the CPU caches suggest
        rows = max(rows, auto_rows(probe, device, max_memory))
    return int(rows)


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
