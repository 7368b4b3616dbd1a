"""The documentation site builds with no warning (``mkdocs build --strict``), has a page per
registry entry and renders every public function and class of every public module."""

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import xai_suite as xs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
from gen_pages import public_modules  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    env.pop("XAI_SUITE_DOCS_EXECUTE", None)  # `make docs` executes the tutorials; the test does not
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr.replace("WARNING: MkDocs may break", ""), proc.stderr
    return out


def test_every_public_function_and_class_has_a_rendered_entry(site):
    """In its module's reference page; an explainer class on its registry entry's page (which
    renders the docstring as it is at run time, with the parameters its mixins document)."""
    entries = {xs.explainer_info(q).cls for q in xs.list_explainers(available_only=False).qualified_name}
    missing = []
    for name in public_modules():
        module = importlib.import_module(name)
        page = (site / "reference" / name / "index.html").read_text()
        for attr, obj in vars(module).items():
            public = not attr.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            if not public or obj.__module__ != name or obj.__name__ != attr or obj in entries:
                continue  # imported, an alias, or an explainer
            if f'id="{name}.{attr}"' not in page:
                missing.append(f"{name}.{attr}")
    assert not missing, missing


def test_every_registry_entry_and_tutorial_has_a_page(site):
    table = xs.list_explainers(available_only=False)
    for row in table.itertuples():
        page = (site / "explainers" / row.library / row.name / "index.html").read_text()
        assert row.qualified_name in page and "Parameters" in page, row.qualified_name
    index = (site / "explainers" / "index.html").read_text()
    assert all(q in index for q in table.qualified_name)
    for tutorial in (ROOT / "tutorials").glob("*.py"):
        assert (site / "tutorials" / tutorial.stem / "index.html").is_file(), tutorial.name
