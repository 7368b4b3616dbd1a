"""``batch_size="auto"``: the timed probe, its caches and its memory bound (xai_suite.batching).

No assertion here depends on wall-clock time: the picking logic is tested with fake timers,
and the real timer only has to give a valid size.
"""

import gc

import numpy as np
import pytest
import torch
from torch import nn

import xai_suite as xs
from xai_suite import batching
from xai_suite.batching import (
    ActivationProbe,
    auto_rows,
    choose_rows,
    clear_cache,
    default_budget,
    memory_rows,
    pick_rows,
    probe_activations,
    time_ladder,
)

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _cnn(width: int = 8, length: int = 20) -> nn.Module:
    """A small smooth 1-D CNN (GELU: no kinks, so only batching could change gradients)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, width, 3, padding=1), nn.GELU(), nn.Flatten(),
                         nn.Linear(width * length, 3)).eval()


def _counted(model: nn.Module) -> list[int]:
    """A list that gets the batch size of every forward of ``model`` appended."""
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    return seen


def _cost(optimum: int):
    """Fake seconds per call: 10 us per row at ``optimum`` rows, 20% more per halving or
    doubling away from it (beyond PROBE_TOLERANCE)."""
    def seconds(rows: int) -> float:
        return rows * 1e-5 * (1 + 0.2 * abs(np.log2(rows / optimum)))
    return seconds


# -- caches ------------------------------------------------------------------------------------
def test_activation_probe_is_cached_per_model_and_row_shape():
    model = _cnn()
    seen = _counted(model)
    x = torch.zeros(4, 1, 20)
    first = probe_activations(model, x)
    assert len(seen) == 1
    assert probe_activations(model, x) == first
    assert probe_activations(model, torch.ones(2, 1, 20)) == first  # same row shape: no forward
    assert len(seen) == 1
    other = _cnn()
    _counted(other)
    probe_activations(other, x)  # another model object: its own probe
    clear_cache()
    probe_activations(model, x)
    assert len(seen) == 2


def test_pick_rows_second_call_runs_no_forward():
    model = _cnn()
    seen = _counted(model)
    x = torch.randn(6, 1, 20)
    rows = pick_rows(model, x, CPU, backward=True, timed=True)
    n_first = len(seen)
    assert n_first >= 1
    assert pick_rows(model, x, CPU, backward=True, timed=True) == rows
    assert len(seen) == n_first
    # without backward: another timing key, but the activation probe is reused
    pick_rows(model, x, CPU, backward=False, timed=True)
    n_second = len(seen)
    assert pick_rows(model, x, CPU, backward=False, timed=True) >= 1
    assert len(seen) == n_second
    # the probe's forward is not repeated: every forward of the second key is a timing call
    assert all(rows >= batching.PROBE_MIN_ROWS for rows in seen[n_first:n_second])


def test_cache_is_keyed_weakly_on_the_model():
    model = _cnn()
    pick_rows(model, torch.randn(4, 1, 20), CPU, timed=False)
    assert len(batching._CACHE) == 1
    del model
    gc.collect()
    assert len(batching._CACHE) == 0


def test_bound_method_is_cached_on_its_instance():
    model = _cnn()
    seen = _counted(model[0])  # model.forward itself bypasses the model's own hooks
    x = torch.randn(4, 1, 20)
    probe_activations(model.forward, x)
    probe_activations(model.forward, x)  # a new bound-method object each time, same cache
    assert len(seen) == 1


def test_key_caches_wrappers_built_per_call():
    class Wrapper:
        def __init__(self, model):
            self.model = model

        def __call__(self, x):
            return self.model(x)

    model = _cnn()
    seen = _counted(model)
    x = torch.randn(4, 1, 20)
    probe_activations(Wrapper(model), x)
    probe_activations(Wrapper(model), x)  # a new wrapper, a new cache owner: probed again
    assert len(seen) == 2
    probe_activations(Wrapper(model), x, key=model)
    probe_activations(Wrapper(model), x, key=model)
    assert len(seen) == 3
    probe_activations(model, x, key=model)  # another forward type under the same key
    assert len(seen) == 4


def test_default_budget_reads_memory_once_within_its_ttl(monkeypatch):
    reads = []
    monkeypatch.setattr(batching, "available_memory", lambda d: reads.append(d) or 8 * 2**30)
    assert default_budget(CPU) == 2 * 2**30
    assert default_budget(CPU) == 2 * 2**30
    assert len(reads) == 1
    monkeypatch.setattr(batching, "BUDGET_TTL", 0.0)
    default_budget(CPU)
    assert len(reads) == 2


# -- the memory bound ----------------------------------------------------------------------------
@pytest.mark.parametrize("timed", [True, False])
def test_pick_rows_stays_within_the_memory_bound(timed):
    model = _cnn(width=32, length=50)
    x = torch.randn(4, 1, 50)
    probe = probe_activations(model, x)
    for max_memory in (1, probe.total * 3 * 5, probe.total * 3 * 40, None):
        rows = pick_rows(model, x, CPU, max_memory, backward=True, timed=timed)
        assert 1 <= rows <= memory_rows(probe, CPU, max_memory)


def test_memory_rows_and_auto_rows_agree_with_the_budget():
    probe = ActivationProbe(total=100_000, largest=40_000)
    assert memory_rows(probe, CPU, 3_000_000) == 10
    assert auto_rows(probe, CPU, 3_000_000) == 10
    assert memory_rows(ActivationProbe(10**9, 10**9), CPU, 1) == 1


def test_timing_off_is_the_memory_only_rule(monkeypatch):
    model = _cnn()
    seen = _counted(model)
    x = torch.randn(4, 1, 20)
    monkeypatch.setattr(batching, "TIMED_PROBE", False)
    rows = pick_rows(model, x, CPU, backward=True)
    assert rows == auto_rows(probe_activations(model, x), CPU, None)
    assert len(seen) == 1  # the activation probe only


# -- the picking logic, on fake timers -------------------------------------------------------------
@pytest.mark.parametrize("optimum", [16, 64, 512])
def test_ladder_finds_the_fastest_size(optimum):
    times = time_ladder(_cost(optimum), 4096, budget_s=10.0)
    assert choose_rows(times, 4096) == optimum
    assert max(times) <= 4 * optimum  # it stops climbing after PROBE_PATIENCE slower sizes


def test_ladder_respects_bound_budget_and_minimum():
    calls: list[int] = []

    def run(rows):
        calls.append(rows)
        return _cost(10**6)(rows)

    times = time_ladder(run, 100, budget_s=10.0)
    assert set(times) == {16, 32, 64} and max(calls) <= 100
    assert time_ladder(run, 8, budget_s=10.0) == {}  # the bound is below the smallest size
    calls.clear()
    assert time_ladder(run, 4096, budget_s=1e-4) == {}  # the warm-up alone is over budget
    assert calls == [batching.PROBE_MIN_ROWS]
    calls.clear()  # an estimate that puts the warm-up over budget: nothing runs
    assert time_ladder(run, 4096, budget_s=1.0, seconds_per_row=1.0) == {}  # 16 s > 4 x 1 s
    assert calls == []
    # a budget for a few sizes: the climb stops where the next size would not fit
    spent: list[float] = []
    times = time_ladder(lambda r: spent.append(_cost(10**6)(r)) or spent[-1], 4096, budget_s=0.05)
    assert 16 in times and max(times) < 4096
    assert sum(spent) <= 0.05


def test_small_sizes_are_measured_over_equal_work():
    calls: list[int] = []
    time_ladder(lambda r: calls.append(r) or _cost(64)(r), 4096, budget_s=10.0, work_rows=256)
    # size 16: a warm-up and a steady call, then per measurement 16 calls in a row (256 rows)
    assert calls.count(16) == 2 + 16 * batching.PROBE_CALLS
    assert calls.count(256) == batching.PROBE_CALLS  # one call already holds 256 rows


def test_a_model_slow_per_row_is_measured_on_fewer_rows_and_still_compared():
    """0.4 ms a row (a CNN on long series), fastest at 16 rows, incumbent 116: 256-row
    measurements of the incumbent would not fit 0.25 s; ~20 ms measurements do."""
    def seconds(rows):
        return rows * 4e-4 * (1 + 0.3 * abs(np.log2(rows / 16)))
    spent: list[float] = []
    times = time_ladder(lambda r: spent.append(seconds(r)) or spent[-1], 4096, incumbent=116, budget_s=0.25)
    assert {16, 116} <= set(times), times
    assert sum(spent) <= 0.25
    assert choose_rows(times, 4096, incumbent=116) == 16


def test_choose_rows_prefers_the_smallest_within_tolerance():
    times = {16: 2.0, 32: 1.0, 64: 0.99, 128: 1.2}
    assert choose_rows(times, 10**6) == 32
    assert choose_rows(times, 10**6, tolerance=0.0) == 64
    assert choose_rows(times, 20) == 16  # the fastest that fits the bound
    assert choose_rows(times, 8) is None


def test_incumbent_stays_unless_clearly_beaten():
    times = {16: 2.0, 64: 0.97, 200: 1.05}
    assert choose_rows(times, 10**6, incumbent=200) == 200  # 8% slower: within the margin
    assert choose_rows(times, 10**6, incumbent=200, margin=0.0) == 64
    assert choose_rows({16: 2.0, 64: 0.8, 200: 1.0}, 10**6, incumbent=200) == 64
    assert choose_rows(times, 100, incumbent=200) == 64  # the incumbent does not fit the bound


def test_ladder_times_the_incumbent():
    calls: list[int] = []

    def run(rows):
        calls.append(rows)
        return _cost(64)(rows)

    times = time_ladder(run, 4096, incumbent=300, budget_s=10.0)
    assert calls.count(300) == batching.PROBE_CALLS and 300 in times
    assert choose_rows(times, 4096, incumbent=300) == 64  # 44% slower per row at 300 rows
    flat = time_ladder(lambda r: r * 1e-5, 4096, incumbent=300, budget_s=10.0)
    assert choose_rows(flat, 4096, incumbent=300) == 300
    calls.clear()  # no room for the incumbent's calls: nothing is timed
    assert time_ladder(run, 4096, incumbent=300, budget_s=3 * _cost(64)(16)) == {}
    assert calls == [batching.PROBE_MIN_ROWS] * 2  # the warm-up and the steady call


def test_pick_rows_follows_the_timings(monkeypatch):
    """Models whose per-row cost curves differ get different sizes; a smaller memory bound
    later picks the fastest timed size that fits it, without timing again."""
    calls: list[int] = []
    optimum = {}

    def fake(forward, sample, rows, backward):
        calls.append(rows)
        return _cost(optimum[id(forward)])(rows)

    monkeypatch.setattr(batching, "_timed_call", fake)
    monkeypatch.setattr(batching, "PROBE_SECONDS", 10.0)
    x = torch.randn(4, 1, 20)
    small, large = _cnn(), _cnn(width=16)
    optimum[id(small)], optimum[id(large)] = 256, 32
    assert pick_rows(small, x, CPU, 2**30, backward=True, timed=True) == 256
    assert pick_rows(large, x, CPU, 2**30, backward=True, timed=True) == 32
    n = len(calls)
    probe = probe_activations(small, x)
    tight = 100 * probe.total * batching.BACKWARD_FACTOR  # room for 100 rows
    assert pick_rows(small, x, CPU, tight, backward=True, timed=True) == 64
    assert len(calls) == n


def test_pick_rows_falls_back_to_memory_rule_when_untimeable(monkeypatch):
    def broken(*args):
        raise RuntimeError("no timing here")

    monkeypatch.setattr(batching, "_timed_call", broken)
    model = _cnn()
    x = torch.randn(4, 1, 20)
    assert pick_rows(model, x, CPU, backward=True, timed=True) == auto_rows(
        probe_activations(model, x), CPU, None)


def test_integer_inputs_are_timed_forward_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(8 * 5, 2)).eval()
    ids = torch.randint(0, 50, (3, 5))
    rows = pick_rows(model, ids, CPU, backward=True, timed=True)
    assert 1 <= rows <= memory_rows(probe_activations(model, ids), CPU, None)


def test_empty_sample_is_refused():
    with pytest.raises(ValueError, match="at least one row"):
        pick_rows(_cnn(), torch.zeros(0, 1, 20), CPU)


def test_timing_does_not_touch_the_global_rng():
    noisy = nn.Sequential(_cnn(), nn.Dropout(0.5)).train()  # draws on every forward
    x = torch.randn(4, 1, 20)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    pick_rows(noisy, x, CPU, timed=True, backward=True)
    assert torch.equal(torch.rand(3), expected)


# -- batch invariance --------------------------------------------------------------------------------
def test_results_equal_across_chunk_sizes():
    model = _cnn()
    X = np.random.default_rng(0).normal(size=(5, 1, 20)).astype(np.float32)
    picked = pick_rows(model, torch.from_numpy(X), CPU, backward=True, timed=True)
    ref = xs.explain(model, X, method="integrated_gradients", n_steps=16, batch_size=1)
    for bs in sorted({picked, 7, 16, 64, 10_000}):
        other = xs.explain(model, X, method="integrated_gradients", n_steps=16, batch_size=bs)
        assert other.params["batch_size_used"] == bs
        err = np.abs(other.attributions - ref.attributions).max()
        assert err <= 1e-5 * np.abs(ref.attributions).max(), bs
