"""Where a suite's units run: joblib's local backends, or a Dask or Ray cluster.

:func:`parallel_map` is the one entry point: the runner calls the function it yields with
the units to run and stores each result as it arrives. Dask and Ray come with the extra
``pip install 'xai-suite[distributed]'`` and are imported only here, when asked for.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .._validation import check_choice
from ..catalog import extra_hint

#: The ``backend`` values :func:`parallel_map` takes.
BACKENDS = ("loky", "threading", "dask", "ray")
#: The backends that run on a cluster (the ones ``address`` is for).
CLUSTER_BACKENDS = ("dask", "ray")


def check_backend(backend: str | None, n_jobs: int | None, address: str | None) -> None:
    """Raise ``ValueError`` on a backend, ``n_jobs`` or ``address`` that :func:`parallel_map` refuses."""
    if backend is not None:
        check_choice("backend", backend, BACKENDS)
    bad = isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs == 0
    if n_jobs is not None and bad:
        raise ValueError(f"n_jobs must be a non-zero int (joblib's meaning: -1 is every core); "
                         f"got {n_jobs!r}")
    if address is not None:
        if backend not in CLUSTER_BACKENDS:
            raise ValueError(f"address {address!r} is for a cluster backend "
                             f"({' or '.join(CLUSTER_BACKENDS)}); got backend {backend!r}")
        if n_jobs not in (None, -1):
            raise ValueError(f"n_jobs={n_jobs} with an address: the cluster's workers decide how many units "
                             "run at once (n_jobs sizes a local cluster only); leave it out or give -1")


def local_workers(n_jobs: int | None) -> int:
    """Worker processes of a local cluster: ``n_jobs``, or for ``None`` and negative values
    joblib's meaning (-1 every core, -2 all but one, ...)."""
    from joblib import cpu_count

    if n_jobs is not None and n_jobs > 0:
        return n_jobs
    return max(1, cpu_count() + 1 + (n_jobs or -1))


@contextlib.contextmanager
def parallel_map(backend: str | None = None, n_jobs: int | None = None, address: str | None = None):
    """Yield ``run(fn, items)``: an iterator over ``fn(item)`` for every item, in the order they finish.

    Parameters
    ----------
    backend : {"loky", "threading", "dask", "ray"}, optional
        ``None``: the joblib configuration in effect (a caller's
        ``with joblib.parallel_config(...)``; with none, one process, in order).
        ``"dask"``: a ``distributed.Client`` of ``address``; without one, this process's
        current client if it has one, else a ``LocalCluster`` of :func:`local_workers`
        single-threaded worker processes. ``"ray"``: ``ray.init(address=...)``; without an
        address, the Ray this process is connected to, else a local Ray with
        :func:`local_workers` CPUs (no dashboard, worker output not forwarded).
        What this starts or connects it closes on exit; what it found open it leaves open.
    n_jobs : int, optional
        Parallel workers, joblib's meaning (-1 is every core). With loky or threading,
        ``None`` is the configuration in effect (else 1); with dask or ray it sizes a local
        cluster (``None``: every core).
    address : str, optional
        A running cluster: a Dask scheduler (``tcp://host:8786``) or a Ray head
        (``host:6379``, ``ray://host:10001``, ``"auto"``).

    Raises
    ------
    ValueError
        An unknown backend, an address without a cluster backend, a joblib backend in effect
        that cannot hand back results as they finish.
    ImportError
        Dask or Ray is not installed (naming the extra).
    """
    check_backend(backend, n_jobs, address)
    if backend == "ray":
        with _ray(address, n_jobs):
            yield _ray_map
        return
    from joblib import parallel_config

    if backend == "dask":
        with _dask(address, n_jobs) as client, parallel_config(backend="dask", client=client):
            yield _joblib_map
        return
    given = {k: v for k, v in (("backend", backend), ("n_jobs", n_jobs)) if v is not None}
    with parallel_config(**given):
        yield _joblib_map


def _joblib_map(fn: Callable, items: Iterable) -> Iterator:
    from joblib import Parallel, delayed
    from joblib.parallel import get_active_backend

    active, _ = get_active_backend()
    if not active.supports_return_generator:
        raise ValueError(f"the joblib backend in effect ({type(active).__name__}) cannot hand back units as "
                         "they finish, which the runner needs to store each at once; pass backend= one of "
                         f"{', '.join(BACKENDS)} (with 'ray' the runner runs Ray tasks itself)")
    return Parallel(return_as="generator_unordered")(delayed(fn)(item) for item in items)


def _require(module: str, backend: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"backend {backend!r} needs {module}, which is not installed: "
                          f"{extra_hint(module)}") from None


@contextlib.contextmanager
def _dask(address: str | None, n_jobs: int | None):
    """The client: of ``address``, this process's current one, or of a new ``LocalCluster``."""
    distributed = _require("distributed", "dask")
    if address is not None:
        with distributed.Client(address, set_as_default=False) as client:
            yield client
        return
    try:
        current = distributed.default_client()
    except ValueError:  # no client in this process
        current = None
    if current is not None:
        yield current
        return
    # silence_logs: a worker that takes over 4 s to exit (torch and friends unloading) is
    # killed at close with a warning, which would read as if the run had gone wrong
    with distributed.LocalCluster(n_workers=local_workers(n_jobs), threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


@contextlib.contextmanager
def _ray(address: str | None, n_jobs: int | None):
    """``ray.init`` unless this process is connected already; ``ray.shutdown`` of what it started."""
    ray = _require("ray", "ray")
    if ray.is_initialized():
        if address is not None:
            raise ValueError(f"this process is connected to a Ray cluster already; to use {address!r}, call "
                             "ray.shutdown() first, or leave address out to use the connected one")
        yield
        return
    where = {"address": address} if address is not None else {"num_cpus": local_workers(n_jobs),
                                                                "include_dashboard": False}
    ray.init(**where, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    try:
        yield
    finally:
        ray.shutdown()


def _call(fn: Callable, item):
    return fn(item)


def _ray_map(fn: Callable, items: Iterable) -> Iterator:
    """Ray tasks, one CPU each, handed back as they finish (Ray's joblib backend can only
    return them all at the end); tasks still pending when the iterator is closed are cancelled."""
    import ray

    task = ray.remote(num_cpus=1)(_call)
    pending = [task.remote(fn, item) for item in items]
    try:
        while pending:
            [done], pending = ray.wait(pending, num_returns=1)
            yield ray.get(done)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
