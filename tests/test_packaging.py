"""Packaging: the install hints, pins and metadata a user meets before any explanation."""

import re
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
