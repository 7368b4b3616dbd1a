"""The demo and the tutorials run (they never rot)."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("*.py"))


def test_demo_writes_table_and_plot(tmp_path, capsys):
    from xai_suite.demo import RUNS, run_demo

    table = run_demo(tmp_path, n_explain=4, epochs=5)
    assert len(table) == len(RUNS) and (table["ms/instance"] > 0).all()
    assert (tmp_path / "gunpoint_attributions.png").stat().st_size > 10_000
    assert pd.read_csv(tmp_path / "gunpoint_methods.csv").shape[0] == len(RUNS)
    assert "Grad-CAM" in capsys.readouterr().out


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    # fast settings (fewer instances, steps, epochs); `make tutorials` runs the full ones. Each
    # takes under a minute on 2 quiet cores; the timeout leaves room for a heavily loaded machine.
    env = {**os.environ, "XAI_SUITE_TUTORIAL_OUT": str(tmp_path), "XAI_SUITE_TUTORIAL_FAST": "1",
           "MPLBACKEND": "Agg"}
    res = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert list(tmp_path.glob("*.png"))
