"""Packaging: the install hints, pins and metadata a user meets before any explanation."""

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import xai_suite as xs
from xai_suite import catalog
from xai_suite.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_tsinterpret_hint_is_the_command_that_installs_it():
    hint = catalog.extra_hint("TSInterpret.InterpretabilityModels")
    assert hint == f"pip install 'xai-suite[tsinterpret]' && pip install --no-deps {catalog.TSINTERPRET_PIN}"
    # the libraries TSInterpret uses do come with the extra
    assert catalog.extra_hint("tslearn") == "pip install 'xai-suite[tsinterpret]'"
    assert catalog.extra_hint("some_lib.sub") == "pip install some_lib"


def test_pins_live_in_the_makefile_alone():
    makefile = (ROOT / "Makefile").read_text()
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert catalog.TSINTERPRET_PIN in makefile  # the hint and `make install` name one release
    assert re.search(r"^TORCH_PIN := torch==[\d.]+$", makefile, re.M)
    torch_req = next(d for d in meta["dependencies"] if d.startswith("torch"))
    assert torch_req.startswith("torch>="), "the package metadata declares a torch range, not a pin"
    assert meta["license"] == "MIT" and (ROOT / meta["license-files"][0]).is_file()
    for package in [ROOT / "xai_suite", *(ROOT / "adapters").glob("xai_suite_*")]:
        assert (package / "py.typed").is_file(), package.name


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"xai-suite {xs.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", xs.__version__)


def test_shipped_suites_are_found_from_any_directory(tmp_path, monkeypatch):
    from xai_suite.bench import SUITES_DIR, expand_units, load_suite, shipped_suites
    from xai_suite.cli import _suite_path

    monkeypatch.chdir(tmp_path)  # no benchmarks/ folder here, as after `pip install xai-suite`
    assert {"quick-demo", "ig-baselines", "shared-baseline", "text", "ts-saliency"} <= set(shipped_suites())
    for name in shipped_suites():
        assert _suite_path(name) == SUITES_DIR / f"{name}.toml"
        assert expand_units(load_suite(_suite_path(name), quick=True)), name
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "text.toml").write_text("")
    # the project's own suite comes first
    assert _suite_path("text").resolve() == (tmp_path / "benchmarks" / "text.toml").resolve()
    with pytest.raises(FileNotFoundError, match="quick-demo.*script suite"):
        _suite_path("quick_demo")


def test_benchmark_launchers_run_the_package_modules():
    """Each benchmarks/NAME.py only launches xai_suite.bench.scripts.NAME, which ships."""
    launchers = sorted((ROOT / "benchmarks").glob("*.py"))
    scripts = sorted(p.stem for p in (ROOT / "xai_suite" / "bench" / "scripts").glob("[!_]*.py"))
    assert [p.stem for p in launchers] == scripts and "concepts" in scripts
    for path in launchers:
        module = f"xai_suite.bench.scripts.{path.stem}"
        assert f"from {module} import main\n" in path.read_text(), path.name
        assert importlib.util.find_spec(module) is not None, module
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "concepts.py"), "--help"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Concept Bottleneck Model vs Concept Embedding Model" in res.stdout and "--quick" in res.stdout


def test_importing_the_package_imports_no_benchmark_script():
    code = ("import sys, xai_suite, xai_suite.bench, xai_suite.cli\n"
            "print(sorted(m for m in sys.modules if m.startswith('xai_suite.bench.scripts')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    assert res.stdout.strip() == "[]"


def test_readme_images_exist():
    """Every image the README shows (the browser tests' screenshots) is in the repository."""
    import re

    root = Path(__file__).resolve().parents[1]
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (root / "README.md").read_text())
    assert len(images) >= 15
    assert [i for i in images if not (root / i).is_file()] == []
