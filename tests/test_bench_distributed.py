"""Suites on a cluster: a small suite on a real local Dask cluster (two worker processes) and on
a real local Ray (two CPUs) stores what a sequential run stores, in other processes; a caller's
joblib configuration is respected; ``xai-suite bench --backend dask --address``; clear errors;
no cluster library imported by ``import xai_suite.bench``, no cluster left running."""

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch
from conftest import forget_plugins
from joblib import parallel_config
from test_bench_report import METRICS as REPORT_METRICS
from test_bench_report import PLUGIN
from test_bench_report import SUITE as REPORT_SUITE
from test_bench_runner import _alive, _children

from xai_suite.bench import ResultsStore, run_suite
from xai_suite.bench.cluster import parallel_map
from xai_suite.cli import main

# Where each unit ran, as metric values: the process id, and whether in its main thread.
WHERE = textwrap.dedent('''
    import os, threading
    import numpy as np
    from xai_suite.metrics.registry import METRICS, register_metric

    if "test_dist_pid" not in METRICS:
        @register_metric("test_dist_pid", kind="sanity", higher_is_better=True)
        def pid(exp):
            """The id of the process computing it."""
            return np.full(len(exp), float(os.getpid()))

        @register_metric("test_dist_main_thread", kind="sanity", higher_is_better=True)
        def main_thread(exp):
            """1 in the main thread of its process, else 0."""
            return np.full(len(exp), float(threading.current_thread() is threading.main_thread()))
''')
WHERE_METRICS = ("test_dist_pid", "test_dist_main_thread")

# test_bench_report's tiny suite (6 units: IG with two baselines and saliency, two seeds; rows,
# curves, models), with the WHERE metrics added.
SUITE = REPORT_SUITE.replace('imports = ["plugin.py"]', 'imports = ["plugin.py", "where.py"]', 1) + "".join(
    f'[[metrics]]\nname = "{name}"\n' for name in WHERE_METRICS)
N_UNITS = 6


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_distributed")
    (d / "plugin.py").write_text(PLUGIN)
    (d / "where.py").write_text(WHERE)
    (d / "suite.toml").write_text(SUITE)
    mp = pytest.MonkeyPatch()
    mp.setenv("XAI_SUITE_CACHE", str(d / "cache"))  # before any cluster starts: workers inherit it
    yield d / "suite.toml"
    mp.undo()
    forget_plugins(d, (*REPORT_METRICS, *WHERE_METRICS))


def _contents(path) -> tuple[dict, pd.DataFrame]:
    """A store's deterministic contents (no timings; no process ids: the WHERE metrics) and,
    apart, the WHERE rows."""
    with ResultsStore(path) as store:
        results, curves, models, units = store.results(), store.curves(), store.models(), store.units()
    where = results.metric.isin(WHERE_METRICS)
    return {"results": results[~where].drop(columns="seconds").reset_index(drop=True),
            "curves": curves, "models": models,
            "units": units.drop(columns=["seconds", "finished"])}, results[where]


def _assert_same(path, reference) -> pd.DataFrame:
    """Assert the store at ``path`` holds exactly the reference's rows; return its WHERE rows."""
    got, where = _contents(path)
    for table, frame in reference.items():
        pd.testing.assert_frame_equal(got[table], frame, obj=table)
    return where


def _pids(where: pd.DataFrame) -> set[int]:
    return set(where[where.metric == "test_dist_pid"].value.astype(int))


@pytest.fixture(scope="module")
def reference(suite_file):
    """A sequential run (no joblib configuration, no backend: one unit after the other here)."""
    path = run_suite(suite_file, suite_file.parent / "sequential", progress=False)
    tables, where = _contents(path)
    assert len(tables["units"]) == N_UNITS and (tables["units"].status == "done").all()
    assert len(tables["results"]) == N_UNITS * 4 * 3 and len(tables["curves"]) == N_UNITS * 4 * 5
    assert _pids(where) == {os.getpid()}
    assert (where[where.metric == "test_dist_main_thread"].value == 1).all()
    return tables


@pytest.fixture(scope="module")
def dask_cluster(suite_file):
    """A real LocalCluster of two single-threaded worker processes, and their process ids."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield cluster, set(client.run(os.getpid).values())


def _processes() -> set[int]:
    """This process's live children, but multiprocessing's resource tracker (it stays, by design)."""
    def tracker(pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"resource_tracker" in f.read()
    return {c for c in _children(os.getpid()) if _alive(c) and not tracker(c)}


def test_dask_local_cluster_started_and_closed_by_the_runner(suite_file, reference):
    before = _processes()
    path = run_suite(suite_file, suite_file.parent / "dask-local", backend="dask", n_jobs=2, progress=False)
    pids = _pids(_assert_same(path, reference))
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # the cluster's two worker processes
    assert not _processes() - before, "the local cluster outlived the run"


def test_dask_cluster_at_an_address_through_the_cli(suite_file, reference, dask_cluster, capsys):
    cluster, workers = dask_cluster
    out = suite_file.parent / "dask-cli"
    assert main(["bench", str(suite_file), "--out", str(out), "--backend", "dask",
                 "--address", cluster.scheduler_address]) == 0, capsys.readouterr().err
    assert _pids(_assert_same(out, reference)) <= workers  # ran on that cluster's workers only
    assert len(cluster.scheduler_info["workers"]) == 2  # and the runner left it running


def test_a_callers_dask_client_and_joblib_config_are_used(suite_file, reference, dask_cluster):
    """The caller's ``Client``: with ``backend="dask"``, and under the caller's
    ``parallel_config(backend="dask")`` with no backend given; it stays open."""
    from distributed import Client

    cluster, workers = dask_cluster
    with Client(cluster) as client:
        path = run_suite(suite_file, suite_file.parent / "dask-client", backend="dask", progress=False)
        assert _pids(_assert_same(path, reference)) <= workers
        with parallel_config(backend="dask"):
            path = run_suite(suite_file, suite_file.parent / "dask-config", progress=False)
        assert _pids(_assert_same(path, reference)) <= workers
        with pytest.raises(ValueError, match="raised in the block"), parallel_map("dask"):
            raise ValueError("raised in the block")  # passes through as it is
        assert client.status == "running"


def test_ray_local_with_two_cpus(suite_file, reference):
    import ray

    before = _processes()
    path = run_suite(suite_file, suite_file.parent / "ray-local", backend="ray", n_jobs=2, progress=False)
    pids = _pids(_assert_same(path, reference))
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert not ray.is_initialized()  # the runner shut down the Ray it started
    assert not _processes() - before, "Ray's processes outlived the run"


def test_a_connected_ray_is_used_and_left_open(monkeypatch):
    """``ray.init`` is not called again, nor ``ray.shutdown``, where this process is connected
    already; an address then is refused (a stand-in module records the calls)."""
    calls = []
    ray = type(sys)("ray")
    ray.is_initialized = lambda: True
    ray.init = lambda **kw: calls.append("init")
    ray.shutdown = lambda: calls.append("shutdown")
    monkeypatch.setitem(sys.modules, "ray", ray)
    with parallel_map("ray", 2):
        pass
    assert calls == []
    with pytest.raises(ValueError, match="connected to a Ray cluster already"), \
            parallel_map("ray", address="auto"):
        pass


def test_a_callers_threading_config_is_respected(suite_file, reference):
    """The units run in two threads of this process, not in (loky) processes."""
    threads = torch.get_num_threads()
    with parallel_config(backend="threading", n_jobs=2):
        path = run_suite(suite_file, suite_file.parent / "threading", progress=False)
    where = _assert_same(path, reference)
    assert _pids(where) == {os.getpid()}
    assert (where[where.metric == "test_dist_main_thread"].value == 0).all()  # the pool's threads
    assert torch.get_num_threads() == threads


def test_cli_default_runs_the_units_here_one_after_the_other(suite_file, reference):
    out = suite_file.parent / "cli-default"
    assert main(["bench", str(suite_file), "--out", str(out)]) == 0
    where = _assert_same(out, reference)
    assert _pids(where) == {os.getpid()}
    assert (where[where.metric == "test_dist_main_thread"].value == 1).all()


def test_bad_backend_address_and_n_jobs_give_clear_errors(suite_file, capsys):
    out = suite_file.parent / "never"
    with pytest.raises(ValueError, match="backend must be one of 'loky', 'threading', 'dask', 'ray'"):
        run_suite(suite_file, out, backend="spark", progress=False)
    with pytest.raises(ValueError, match="address 'tcp://x:8786' is for a cluster backend"):
        run_suite(suite_file, out, backend="loky", address="tcp://x:8786", progress=False)
    with pytest.raises(ValueError, match="the cluster's workers decide"):
        run_suite(suite_file, out, backend="dask", address="tcp://x:8786", n_jobs=4, progress=False)
    with pytest.raises(ValueError, match="n_jobs must be a non-zero int"):
        run_suite(suite_file, out, n_jobs=0, progress=False)
    assert not out.exists()  # refused before anything was written
    with pytest.raises(SystemExit):
        main(["bench", str(suite_file), "--backend", "spark"])
    assert "invalid choice: 'spark'" in capsys.readouterr().err
    assert main(["bench", str(suite_file), "--out", str(out), "--address", "tcp://x:8786"]) == 2
    assert "for a cluster backend (dask or ray); got backend 'loky'" in capsys.readouterr().err
    with parallel_config(backend="multiprocessing", n_jobs=2), parallel_map() as run, \
            pytest.raises(ValueError, match="cannot hand back units as they finish.*pass backend="):
        run(abs, [1])


@pytest.mark.parametrize("backend, module", [("dask", "distributed"), ("ray", "ray")])
def test_a_missing_extra_is_named(monkeypatch, backend, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=rf"backend '{backend}' needs {module}.*"
                                          r"pip install 'xai-suite\[distributed\]'"), parallel_map(backend):
        pass


def test_import_loads_no_cluster_library():
    code = ("import sys, xai_suite.bench, xai_suite.bench.cluster, xai_suite.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'ray'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
