"""Smoke test of ``python -m xai_suite.bench.scripts.image_baselines``: the whole script at its
``--quick`` settings.

One seed, 12 images per dataset, IG with 16 steps: about 20 s in a subprocess (two CNN2d
trainings of about 3 s each on one thread).
"""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

SCRIPT = ["-m", "xai_suite.bench.scripts.image_baselines"]
NUM = r"[-+]?\d+\.\d+(?:e[-+]\d+)?"
CELL = re.compile(rf"n/a|({NUM}) \[({NUM}), ({NUM})\]")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_image_baselines")
    res = subprocess.run([sys.executable, *SCRIPT, "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    return res.stdout, out


def _tables(stdout: str) -> dict[str, dict]:
    """Per dataset: its column titles and {row name: [(mean, low, high) or None per column]}."""
    tables = {}
    for block in stdout.split("== ")[1:]:
        lines = block.splitlines()
        dataset = lines[0].split(":")[0]
        head = next(i for i, line in enumerate(lines) if line.startswith("baseline "))
        columns = re.split(r"\s{2,}", lines[head].strip())[1:]
        rows = {}
        for line in lines[head + 1:]:
            if not line.strip() or "paired test" in line:
                break
            name, rest = line.split(maxsplit=1)
            cells = [None if m.group(0) == "n/a" else tuple(map(float, m.groups()))
                     for m in CELL.finditer(rest)]
            assert len(cells) == len(columns), line
            rows[name] = dict(zip(columns, cells, strict=True))
        tables[dataset] = {"columns": columns, "rows": rows, "text": block}
    return tables


def test_every_cell_has_an_interval_and_every_baseline_a_row(run):
    stdout, _ = run
    tables = _tables(stdout)
    assert list(tables) == ["planted", "digits"]
    for dataset, t in tables.items():
        names = list(t["rows"])
        assert names[-1] == "native:random", names
        # every image baseline of the registry except the exact duplicates of black
        assert {"black", "white", "gray", "uniform", "gaussian", "blur", "training_mean",
                "training_sample", "nearest_unlike"} <= set(names)
        assert "zeros" not in names and "constant" not in names
        assert "constant (= black), zeros (= black)" in t["text"]
        for name, cells in t["rows"].items():
            for column, cell in cells.items():
                if cell is None:  # only the control has no baseline to measure against
                    assert name == "native:random" and column in ("compl. err", "p(b)"), (name, column)
                    continue
                mean, lo, hi = cell
                assert lo <= mean <= hi, (dataset, name, column, cell)
        assert re.search(r"^headline paired test .*Wilcoxon p = ", t["text"], flags=re.M)
    assert "AUROC" in tables["planted"]["columns"] and "AUROC" not in tables["digits"]["columns"]


def test_control_localises_at_chance_and_ig_above_it(run):
    rows = _tables(run[0])["planted"]["rows"]
    mean, _, control_high = rows["native:random"]["AUROC"]
    assert abs(mean - 0.5) < 0.08, mean
    for name in ("black", "blur", "training_mean", "nearest_unlike"):
        ig_mean, ig_low, _ = rows[name]["AUROC"]
        assert ig_mean >= 0.85 and ig_low > control_high, (name, rows[name]["AUROC"])
    # IG is complete: sum(a) matches f(x) - f(b) to a few percent at 16 Gauss-Legendre steps
    assert all(r["compl. err"][0] < 0.05 for n, r in rows.items() if n != "native:random")


def test_insertion_separates_baselines_from_the_control_on_digits(run):
    rows = _tables(run[0])["digits"]["rows"]
    control = rows["native:random"]["ins. (blur)"]
    for name in ("blur", "training_mean"):
        assert rows[name]["ins. (blur)"][1] > control[2], (name, rows[name]["ins. (blur)"], control)
    # replacement 0 is black's own image: deletion with it favours black over deletion with blur
    assert rows["black"]["del. (0)"][0] < rows["black"]["del. (blur)"][0]


def test_csv_agrees_with_the_table_and_figures_are_written(run):
    stdout, out = run
    runs = pd.read_csv(out / "runs.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert set(runs.seed) == {0} and (runs.groupby(["dataset", "row"]).size() == 12).all()
    tables = _tables(stdout)
    for _, row in summary.iterrows():
        g = runs[(runs.dataset == row.dataset) & (runs.row == row.row)]
        np.testing.assert_allclose(row.insertion, g.insertion.mean())
        printed = tables[row.dataset]["rows"][row.row]["ins. (blur)"][0]
        assert abs(printed - row.insertion) <= 5e-4
    for dataset in ("planted", "digits"):
        png = out / f"grid_{dataset}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_duplicate_baselines_are_detected_by_their_images():
    from xai_suite.bench.scripts import image_baselines as bench

    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 8, 8)).astype(np.float32)
    kept, dropped = bench.choose_baselines(x, np.zeros(3, dtype=np.int64))
    assert dropped == {"constant": "black", "zeros": "black"}
    assert {"black", "gray", "white", "blur", "uniform", "training_sample"} <= set(kept)
    target = np.zeros(3, dtype=np.int64)
    assert bench.choose_baselines(x, target, ["zeros", "gray"]) == (["zeros", "gray"], {})
    with pytest.raises(ValueError, match="unknown image baselines"):
        bench.choose_baselines(x, target, ["grey"])
