"""``xai-suite explore``: the page functions, the injection library on the tiny key model, and
the live app in Chromium (an explainer switch and an injection change what the page shows)."""

import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
import torch

pytest.importorskip("dash")
pytest.importorskip("transformers")

from test_llm_mechanistic import key_pair

from xai_suite.explore import Source, load_source, make_app
from xai_suite.explore.attribution import NO_BASELINE, AttributionExplorer
from xai_suite_llm import KEY_POSITION
from xai_suite_llm.intervention import (
    activation_intervention,
    embedding_intervention,
    inject_embedding,
    run_intervened,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def answer(lm, logits) -> str:
    return lm.decode([int(logits[-1].argmax())]).strip()


@pytest.fixture(scope="module")
def mlp_source():
    """A small torch MLP on 6 features, trained for a moment: gradient explainers apply."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = (X[:, 0] + 2 * X[:, 1] > 0).astype(np.int64)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(X)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return Source("mlp6", model.eval(), "tabular", X, y, X, y)


# -- the library: injection and patching ------------------------------------------------------
def test_injecting_a_wrong_key_flips_the_answer_and_patching_back_restores_it(key_lm):
    clean, corrupted = key_pair("c", "d")
    hook = "blocks.0.hook_resid_pre"  # the residual stream entering layer 0
    base = run_intervened(key_lm, clean, [])
    assert answer(key_lm, base) == "c"
    injected = inject_embedding(key_lm, clean, hook, KEY_POSITION, " d")
    assert answer(key_lm, injected) == "d"
    # the clean prompt's own activation written back over the injection: the clean run, exactly
    restore = activation_intervention(key_lm, clean, hook, KEY_POSITION)
    inject = embedding_intervention(key_lm, hook, KEY_POSITION, " d")
    back = run_intervened(key_lm, clean, [inject, restore])
    assert answer(key_lm, back) == "c"
    torch.testing.assert_close(back, base)
    # patching the corrupted prompt's key activation into the clean run flips it too
    patched = run_intervened(key_lm, clean, [activation_intervention(key_lm, corrupted, hook, KEY_POSITION)])
    assert answer(key_lm, patched) == "d"
    # what an injection writes is the token's row of the input embedding
    iv = embedding_intervention(key_lm, hook, KEY_POSITION, " d")
    torch.testing.assert_close(iv.value, key_lm.embed.weight[key_lm.token_ids(" d")[0]].detach())


def test_intervention_inputs_are_checked(key_lm):
    with pytest.raises(ValueError, match="one token"):
        embedding_intervention(key_lm, "blocks.0.hook_resid_pre", 0, "c d")
    with pytest.raises(ValueError, match="unknown hook point"):
        embedding_intervention(key_lm, "blocks.0.resid", 0, "c")
    with pytest.raises(ValueError, match="past the end"):
        activation_intervention(key_lm, "a b", "blocks.0.hook_resid_pre", 5)
    with pytest.raises(ValueError, match="past the end"):
        inject_embedding(key_lm, "a b", "blocks.0.hook_resid_pre", 5, "c")


def test_lens_of_an_intervened_run_shows_the_injected_token(key_lm):
    from xai_suite_llm import LogitLens
    from xai_suite_llm.intervention import intervention_hooks

    clean, _ = key_pair("c", "d")
    iv = embedding_intervention(key_lm, "blocks.0.hook_resid_pre", KEY_POSITION, " d")
    plain = LogitLens(key_lm, top_k=3).explain(clean)
    lens = LogitLens(key_lm, top_k=3).explain(clean, hooks=intervention_hooks([iv]))
    assert plain.top_tokens[-1, -1, 0].strip() == "c" and lens.top_tokens[-1, -1, 0].strip() == "d"
    # the lens's last row is the intervened model's output
    probs = torch.softmax(run_intervened(key_lm, clean, [iv])[-1].float(), -1)
    np.testing.assert_allclose(lens.top_probs[-1, -1], probs.topk(3).values.numpy(), rtol=1e-5, atol=1e-6)


# -- the page functions (what the callbacks call) -----------------------------------------------
def test_attribution_page_recomputes_on_a_switch_and_shows_errors(mlp_source):
    page = AttributionExplorer(mlp_source)
    assert "captum:integrated_gradients" in page.explainers and "captum:saliency" in page.explainers
    assert "zeros" in page.baselines and "training_mean" in page.baselines
    fig, text, err = page.update(0, "captum:integrated_gradients", "zeros")
    assert err == "" and "completeness error" in text and "n/a" not in text
    ig = np.array(fig.data[0].y)
    exp, _ = page.explain(0, "captum:integrated_gradients", "zeros")
    np.testing.assert_allclose(ig, exp.attributions[0])
    assert float(np.abs(exp.convergence_delta).max()) < 0.05
    fig2, text2, _ = page.update(0, "captum:saliency", NO_BASELINE)
    assert "captum:saliency" in text2 and "n/a" in text2 and not np.allclose(np.array(fig2.data[0].y), ig)
    fig3, _, _ = page.update(1, "captum:integrated_gradients", "zeros")  # instance switch
    assert not np.allclose(np.array(fig3.data[0].y), ig)
    # errors become a message: an explainer that needs two instances, a baseline it does not take
    _, text4, err4 = page.update(0, "captum:feature_permutation", NO_BASELINE)
    assert text4 == "" and "at least 2 instances" in err4
    _, _, err5 = page.update(0, "captum:saliency", "zeros")
    assert "takes no baseline" in err5
    _, _, err6 = page.update(99, "captum:saliency", NO_BASELINE)
    assert "instance must be an index in 0..39" in err6


@pytest.mark.parametrize("shape", [(5, 2, 12), (5, 1, 6, 6)], ids=["timeseries", "image"])
def test_attribution_figures_of_series_and_images_show_the_attributions(shape, tmp_path):
    X = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(shape[1:])), 3)).eval()
    page = make_app(load_source_of(model, X), cache_dir=str(tmp_path)).explorer
    fig, text, err = page.update(2, "captum:saliency", NO_BASELINE)
    assert err == "" and "captum:saliency" in text
    attr = page.explain(2, "captum:saliency")[0].attributions[0]
    if len(shape) == 3:  # input, then attribution, per channel
        assert [t.name for t in fig.data] == ["input ch0", "attribution ch0", "input ch1", "attribution ch1"]
        np.testing.assert_allclose(np.array(fig.data[0].y), X[2, 0])
        np.testing.assert_allclose(np.array(fig.data[3].y), attr[1])
    else:  # summed over channels
        np.testing.assert_allclose(np.array(fig.data[0].z), attr.sum(0))


def load_source_of(model, X):
    return Source("arrays", model, {3: "timeseries", 4: "image"}[X.ndim], X, None, X, None)


def test_load_source_module_function_and_bad_sources(tmp_path, monkeypatch):
    (tmp_path / "my_explore_src.py").write_text(
        "import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
        "def build():\n    X = np.random.default_rng(0).normal(size=(30, 3))\n"
        "    y = (X[:, 0] > 0).astype(int)\n"
        "    return LogisticRegression().fit(X, y), X, y\n"
        "def bad():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    src = load_source("my_explore_src:build")
    assert src.modality == "tabular" and src.X.shape == (30, 3) and src.X.dtype == np.float32
    page = make_app(src, cache_dir=str(tmp_path / "cache")).explorer
    assert page.kind == "sklearn" and "native:kernel_shap" in page.explainers
    with pytest.raises(ValueError, match=r"must return \(model, X, y\)"):
        load_source("my_explore_src:bad")
    with pytest.raises(ValueError, match="has no function"):
        load_source("my_explore_src:nothing")
    with pytest.raises(ValueError, match="neither a zoo model"):
        load_source("no_such_model")
    zoo = load_source("logreg")  # trained on the tabular default data, explained on its test split
    assert zoo.modality == "tabular" and zoo.X.shape == (143, 30) and zoo.X_train.shape == (426, 30)
    assert (zoo.model.predict(zoo.X) == zoo.y).mean() > 0.9
    with pytest.raises(ValueError, match="config.json"):
        load_source(str(tmp_path))


def test_language_page_functions(key_lm, tmp_path):
    clean, _ = key_pair("c", "d")
    page = make_app(Source("key", key_lm, "text"), prompt=clean, cache_dir=str(tmp_path)).explorer
    lens_fig, _, ans, applied, err = page.update(clean, [])
    assert err == "" and ans.startswith("c ") and applied == "interventions: none"
    assert list(lens_fig.data[0].y) == ["embed", "0", "1"] and len(lens_fig.data[0].x) == len(clean.split())
    layer, pos = page.select({"points": [{"x": KEY_POSITION, "y": "embed", "z": 0.5}]})
    assert (layer, pos) == ("embed", KEY_POSITION) and page.hook_of(layer) == "blocks.0.hook_resid_pre"
    specs = page.add([], "inject", layer, pos, " d", None)
    assert page.update(clean, specs)[2].startswith("d ")
    specs = page.add(specs, "patch", layer, pos, None, clean)
    assert page.update(clean, specs)[2].startswith("c ")
    assert page.add(specs, "clear", None, None, None, None) == []
    with pytest.raises(ValueError, match="select a cell"):
        page.add([], "inject", None, None, "d", None)
    with pytest.raises(ValueError, match="one token"):
        page.add([], "inject", "0", 1, "c d", None)
    # an error in the run is a message, not a crash
    assert "past the end" in page.update("a b", specs)[4]


# -- the live app in a browser -------------------------------------------------------------------
@contextmanager
def serving(app):
    """The app on a free local port in a daemon thread (werkzeug), shut down afterwards."""
    from werkzeug.serving import make_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(5)


def wait_text(view, selector: str, predicate, timeout_s: float = 20.0) -> str:
    """Poll ``selector``'s text until ``predicate(text)``; fail with the page's error div."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        text = view.inner_text(selector)
        if predicate(text):
            return text
        view.wait_for_timeout(100)
    raise AssertionError(f"{selector} never matched; it shows {view.inner_text(selector)!r}; error div: "
                         f"{view.inner_text('#error')!r}")


def local_only(tab, url):
    return [u for u in tab.network() if not u.startswith(url)]


BARS = "Array.from(document.querySelector('#attribution .js-plotly-plot')._fullData[0].y)"


def test_live_app_switches_the_explainer(mlp_source, browser_page, tmp_path):
    app = make_app(mlp_source, cache_dir=str(tmp_path))
    with serving(app) as url:
        view = browser_page.open(url)
        wait_text(view, "#summary", lambda t: "captum:integrated_gradients" in t)
        first = view.evaluate(BARS)
        view.click("#explainer")
        view.get_by_role("option", name="captum:saliency", exact=True).click()
        wait_text(view, "#summary", lambda t: "captum:saliency" in t)
        second = view.evaluate(BARS)
        assert not np.allclose(np.array(first, dtype=float), np.array(second, dtype=float))
        browser_page.screenshot("explore_tabular")
        assert browser_page.errors == [] and local_only(browser_page, url) == []


def test_live_app_injection_flips_the_answer_and_patching_back_restores_it(key_lm, browser_page, tmp_path):
    folder = tmp_path / "key_model"
    key_lm.model.save_pretrained(folder)
    key_lm.tokenizer.save_pretrained(folder)
    clean, _ = key_pair("c", "d")
    app = make_app(str(folder), prompt=clean, cache_dir=str(tmp_path / "cache"))
    with serving(app) as url:
        view = browser_page.open(url)
        wait_text(view, "#answer", lambda t: t.startswith("c "))
        # click the lens cell (layer "embed" = the stream entering layer 0, the key position)
        box = view.evaluate(f"""(() => {{
            const gd = document.querySelector('#lens .js-plotly-plot'), L = gd._fullLayout;
            const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
            return [r.left + L.xaxis.d2p({KEY_POSITION}), r.top + L.yaxis.d2p('embed')];
        }})()""")
        view.mouse.click(*box)
        wait_text(view, "#sel-position", lambda t: t == str(KEY_POSITION))
        assert view.inner_text("#sel-layer") == "embed"
        view.fill("#token", "d")
        view.click("#inject")
        wait_text(view, "#answer", lambda t: t.startswith("d "))
        assert "inject at layer embed, position 7" in view.inner_text("#applied")
        view.fill("#source", clean)
        view.click("#patch")
        wait_text(view, "#answer", lambda t: t.startswith("c "))
        browser_page.screenshot("explore_llm")
        assert view.inner_text("#error") == ""
        assert browser_page.errors == [] and local_only(browser_page, url) == []


# -- the command ---------------------------------------------------------------------------------
def test_cli_explore_serves_the_page_and_reports_bad_sources(tmp_path, capsys):
    import os
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from xai_suite.cli import main

    assert main(["explore", "no_such_model"]) == 2
    assert "neither a zoo model" in capsys.readouterr().err
    (tmp_path / "cli_explore_src.py").write_text(
        "import numpy as np\nimport torch\n"
        "def build():\n    return torch.nn.Linear(3, 2), np.zeros((4, 3)), None\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root), str(root / "adapters"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "xai_suite.cli", "explore", "cli_explore_src:build",
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        end, page = time.monotonic() + 60, None
        while page is None and time.monotonic() < end and proc.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=2).read().decode()
            except OSError:
                time.sleep(0.3)
        assert page is not None, proc.stdout.read().decode() if proc.poll() is not None else "no answer"
        assert "xai-suite explore: cli_explore_src:build" in page
    finally:
        proc.terminate()
        proc.wait(10)


def test_missing_dash_names_the_extra(monkeypatch):
    import sys

    from xai_suite import explore

    monkeypatch.setitem(sys.modules, "dash", None)
    with pytest.raises(ImportError, match=r"xai-suite\[explore\]"):
        explore.dash()
