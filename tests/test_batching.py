import torch

from xai_suite import batching
from xai_suite.batching import ActivationProbe, auto_rows, probe_activations, resolve_device


def test_probe_counts_leaf_outputs():
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 10, 2))
    p = probe_activations(model, torch.zeros(4, 1, 10))
    # input 10 + conv 80 + relu 80 + flatten 80 + linear 2 floats per row
    assert p.total == (10 + 80 + 80 + 80 + 2) * 4
    assert p.largest == 80 * 4


def test_auto_rows_on_cpu_respects_chunk_and_budget():
    probe = ActivationProbe(total=100_000, largest=40_000)
    cpu = torch.device("cpu")
    rows = auto_rows(probe, cpu, max_memory=None)
    assert rows == min(batching.CPU_CHUNK_BYTES // 100_000, batching.CPU_TENSOR_BYTES // 40_000)
    assert auto_rows(probe, cpu, max_memory=3_000_000) == 10  # 3e6 / (3 * 1e5)
    assert auto_rows(ActivationProbe(10, 10), cpu, None) > batching.CPU_MIN_ROWS
    assert auto_rows(ActivationProbe(10**9, 10**9), cpu, max_memory=2 * 10**9) == 1


def test_auto_rows_on_gpu_fills_the_budget():
    probe = ActivationProbe(total=1000, largest=1000)
    assert auto_rows(probe, torch.device("cuda"), max_memory=3_000_000_000) == 1_000_000


def test_device_resolution():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_group_blocks_cover_every_row_once_within_the_limit():
    for groups, size, rows in [(7, 5, 12), (7, 5, 5), (3, 10, 4), (2, 3, 100), (1, 1, 1)]:
        seen = torch.zeros(groups, size, dtype=torch.int64)
        for g, w in batching.group_blocks(groups, size, rows, "test"):
            n_rows = (g.stop - g.start) * (w.stop - w.start)
            assert 0 < n_rows <= max(rows, 1)
            # whole groups per block when a group fits, else one group at a time
            assert w == slice(0, size) if rows >= size else g.stop - g.start == 1
            seen[g, w] += 1
        assert (seen == 1).all(), (groups, size, rows)
