"""The wheel: built from the sources, installed (not editable) into a fresh virtual
environment, and run as a user who has only the installed package would run it."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Installed distributions of this project in the test environment: kept out of the fresh one.
OURS = ("xai_suite", "__editable__")


def _run(*cmd, **kwargs) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    """A venv holding only the wheel; its dependencies come from this environment's
    site-packages (linked one by one, this project's own installation left out), so that
    nothing is downloaded."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for part in ("xai_suite", "adapters"):
        shutil.copytree(ROOT / part, src / part, ignore=skip)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", tmp / "dist", src)
    (wheel,) = (tmp / "dist").glob("xai_suite-*.whl")

    deps = tmp / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(OURS) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    env_dir = tmp / "venv"
    _run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", env_dir)
    python = env_dir / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site / "_xai_suite_test_deps.pth").write_text(f"{deps}\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index",
         wheel)
    return wheel, env_dir, site


def test_wheel_holds_the_package_data(fresh_env):
    wheel, _, _ = fresh_env
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "xai_suite/bench/suites/quick-demo.toml" in names
    # the benchmark scripts behind the script suites ship as modules
    scripts = {n.rsplit("/", 1)[1] for n in names if n.startswith("xai_suite/bench/scripts/")}
    assert {"__init__.py", *(p.name for p in (ROOT / "benchmarks").glob("*.py"))} <= scripts
    assert {f"{p}/py.typed" for p in ("xai_suite", "xai_suite_timeseries", "xai_suite_tabular",
                                      "xai_suite_image", "xai_suite_llm")} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("METADATA"))
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: torch>=2.1" in metadata


def test_installed_wheel_runs_the_cli_and_a_shipped_suite(fresh_env, tmp_path):
    _, env_dir, site = fresh_env
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(XAI_SUITE_CACHE=str(tmp_path / "cache"), MPLBACKEND="Agg")
    cli = env_dir / "bin" / "xai-suite"
    where = _run(env_dir / "bin" / "python", "-c", "import xai_suite; print(xai_suite.__file__)",
                 env=env, cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(site)  # the installed copy, not the sources
    assert _run(cli, "--version", env=env, cwd=tmp_path).strip().startswith("xai-suite ")
    listing = _run(cli, "list", "--format", "csv", env=env, cwd=tmp_path)
    # the core's and the adapters' entries, TSInterpret's included: every plugin loaded
    assert 'gradient,integrated_gradients,"tab, ts, img"' in listing
    assert "counterfactual,native_guide,,,ts*,,ts" in listing
    _run(cli, "bench", "quick-demo", "--quick", "--out", "run", env=env, cwd=tmp_path)
    _run(cli, "report", "run", env=env, cwd=tmp_path)
    assert "## " in (tmp_path / "run" / "report" / "report.md").read_text()
    # a script suite: the package's module, with no benchmarks/ folder here (a few seconds)
    assert not (tmp_path / "benchmarks").exists()
    shown = _run(cli, "bench", "concepts", "--quick", "--out", "run2", env=env, cwd=tmp_path)
    saved = (tmp_path / "run2" / "concepts.txt").read_text()
    assert saved.startswith("$ python -m xai_suite.bench.scripts.concepts --quick --out run2\n")
    assert saved in shown and "failed" not in saved
    datasets = ("XOR", "Trigonometry", "Dot")
    rows = [line.split()[:2] for line in saved.splitlines() if line.startswith(datasets)]
    assert rows == [[d, m] for d in datasets for m in ("CBM", "CEM")]  # the script's table
    assert (tmp_path / "run2" / "concepts_summary.csv").is_file()
