import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
# batch_size="auto" from memory alone: a timed pick costs ~0.25 s per new (model, row shape) and
# may differ between runs; tests/test_batching_auto.py times explicitly (timed=True)
os.environ.setdefault("XAI_SUITE_TIMED_BATCHING", "0")

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: one torch thread each, not one per core
    # each (oversubscribed OpenMP threads spin and slow every worker down)
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def gunpoint():
    """GunPoint train/test splits (N, 1, 150)."""
    import xai_suite as xs

    X, y = xs.datasets.load_ucr("GunPoint", "train")
    Xt, yt = xs.datasets.load_ucr("GunPoint", "test")
    return X, y, Xt, yt


@pytest.fixture(scope="session")
def gunpoint_cnn(gunpoint):
    """A CNN1d trained on GunPoint for about 2 s (test accuracy 0.97-0.98 over seeds)."""
    from xai_suite_timeseries import CNN1d, fit_classifier

    X, y, _, _ = gunpoint
    torch.manual_seed(0)
    return fit_classifier(CNN1d(1, 2), X, y, epochs=60, random_state=0)


@pytest.fixture
def registry_snapshot():
    """Restore the explainer and baseline registries after a test registers entries."""
    from xai_suite import baselines, registry

    state = (registry.EXPLAINERS._entries, registry._ALIASES, registry._RECOMMENDED,
             baselines.BASELINES._entries)
    saved = [s.copy() for s in state]
    yield
    for live, copy in zip(state, saved, strict=True):
        live.clear()
        live.update(copy)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def one_thread():
    """The test on one torch thread (tiny models run fastest so), threads restored after;
    test files take it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _on_one_thread(fn, **kwargs):
    """``fn(**kwargs)`` on one torch thread (the key models train fastest so), threads restored."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(**kwargs)
    finally:
        torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def key_lm():
    """A tiny GPT-2 trained on the key task (xai_suite_llm.tiny), once per session (~12 s).

    Every prompt's answer is its token at ``KEY_POSITION``; test accuracy 1.0, answer
    probability about 0.998.
    """
    pytest.importorskip("transformers")
    from xai_suite_llm import train_key_model

    return _on_one_thread(train_key_model, random_state=0)


@pytest.fixture(scope="session")
def key_llama():
    """A tiny LLaMA (grouped-query attention: 4 heads, 2 key/value heads; rotary; gated MLP)
    trained on the key task for 150 steps, once per session (~11 s): test accuracy 1.0, answer
    probability about 0.99."""
    pytest.importorskip("transformers")
    from xai_suite_llm import make_tiny_llama, train_key_model

    return _on_one_thread(train_key_model, builder=make_tiny_llama, steps=150, random_state=0)


@pytest.fixture
def record_progress(monkeypatch):
    """``record_progress(module)`` replaces ``module.progress`` by a recorder and returns the list
    of ``(desc, number of steps)`` it is called with."""
    calls = []

    def recording(steps, desc, **kwargs):
        calls.append((desc, len(steps)))
        return steps

    def patch(module):
        monkeypatch.setattr(module, "progress", recording)
        return calls

    return patch


@pytest.fixture
def readme_example():
    """``readme_example(marker)``: the README's python block holding ``marker`` (dedented), so
    tests run the README's examples as written."""
    import re
    import textwrap
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [textwrap.dedent(b) for b in re.findall(r"^ *```python\n(.*?)^ *```", readme, re.S | re.M)]

    def find(marker: str) -> str:
        found = [b for b in blocks if marker in b]
        if len(found) != 1:
            raise LookupError(f"{len(found)} README python blocks hold {marker!r}; expected one")
        return found[0]

    return find


#: Where the browser tests put their screenshots (gitignored).
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test_output" / "screenshots"


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium (the system's, driven by Playwright), for the whole session.

    ``make test`` installs Debian's ``chromium`` when it is missing; without it these tests
    fail (they never skip), unless ``XAI_SUITE_NO_BROWSER=1`` says to skip them on purpose.
    """
    import shutil

    exe = os.environ.get("XAI_SUITE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("XAI_SUITE_NO_BROWSER") == "1":
            pytest.skip("XAI_SUITE_NO_BROWSER=1: browser tests skipped on purpose")
        pytest.fail("no Chromium found: `make test` installs Debian's chromium package (apt-get install "
                    "chromium), or point XAI_SUITE_CHROMIUM at a Chromium binary")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


class BrowserPage:
    """One browser tab, with what it logged: ``errors`` (console errors and uncaught
    exceptions) and ``requests`` (every URL it asked for)."""

    def __init__(self, page):
        self.page, self.errors, self.requests = page, [], []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))

    def open(self, target, wait_ms: int = 300):
        """Load a file (path) or URL (str starting with http) and let its scripts run."""
        url = (target if isinstance(target, str) and target.startswith("http")
               else Path(target).resolve().as_uri())
        self.page.goto(url)
        self.page.wait_for_load_state("load")
        self.page.wait_for_timeout(wait_ms)
        return self.page

    def clear(self) -> None:
        """Forget what was logged so far (before the next page of a shared tab)."""
        self.errors.clear()
        self.requests.clear()

    def network(self) -> list[str]:
        """The requests that left the file system (``file://`` and ``data:`` are local)."""
        return [u for u in self.requests if not u.startswith(("file://", "data:", "about:"))]

    def screenshot(self, name: str) -> Path:
        """A full-page screenshot into test_output/screenshots/NAME.png."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _tab(chromium):
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    yield BrowserPage(context.new_page())
    context.close()


@pytest.fixture
def browser_page(chromium):
    """A fresh :class:`BrowserPage` (tab) per test, closed afterwards."""
    yield from _tab(chromium)


@pytest.fixture(scope="module")
def browser_tab(chromium):
    """One :class:`BrowserPage` shared by a module's tests (``clear()`` it before each page):
    for many pages in a row, each test skips opening a tab of its own."""
    yield from _tab(chromium)


def forget_plugins(folder, metrics=()) -> None:
    """Undo what a bench test's plugin files under ``folder`` registered: the ``metrics`` by
    name, and the runner's record of having imported them (so another test imports afresh)."""
    from xai_suite.bench import config as bench_config
    from xai_suite.metrics import registry as metric_registry

    for name in metrics:
        metric_registry.METRICS._entries.pop(name, None)
    for key in [k for k in bench_config._IMPORTED if k.startswith(str(folder))]:
        bench_config._IMPORTED.pop(key)
