"""HTML views of the language-model results (xai_suite_llm.html): what the figures hold, and in
Chromium: each page loads offline with no error, its control changes what is shown, and hostile
tokens and prompts stay text."""

import dataclasses
import html

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("plotly")

from xai_suite_llm import ActivationPatching, LinearProbe, LogitLens, TextAblation, text_levels_html
from xai_suite_llm.html import logit_lens_figure, patching_figure, probing_figure
from xai_suite_llm.testing import OTHER_PROMPT, PROMPT, TARGET, reference_language_model
from xai_suite_llm.tiny import make_key_prompts

HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)>"\u202e'
#: How the page shows HOSTILE: the characters themselves, the bidi override as a visible escape.
SHOWN = HOSTILE.replace("\u202e", "<U+202E>")


@pytest.fixture(scope="module")
def lm():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield reference_language_model()  # an untrained 2-layer GPT-2 (seed 0): no training needed
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def lens(lm):
    return LogitLens(lm, top_k=3).explain(PROMPT, TARGET)


@pytest.fixture(scope="module")
def patching(lm):
    return ActivationPatching(lm, sites=("resid_pre", "attn_out", "mlp_out")).explain(
        PROMPT, OTHER_PROMPT, " a", " b")


@pytest.fixture(scope="module")
def probing(lm):
    prompts, answers = make_key_prompts(24, random_state=1)
    labels = np.array([a.strip() in "abcd" for a in answers], dtype=np.int64)
    return LinearProbe(lm, cv=3, random_state=0).explain(prompts, labels)


def open_clean(tab, path):
    """Open ``path``, recording dialogs (an injected ``alert`` would open one); check that it
    loaded with no console error, no network request and no dialog, and that no script of the
    hostile text exists in the DOM."""
    if not hasattr(tab, "dialogs"):
        tab.dialogs = []
        tab.page.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    view = tab.open(path)
    assert tab.errors == [] and tab.network() == [] and tab.dialogs == []
    assert view.locator("script", has_text="alert(").count() == 0
    assert view.locator("img").count() == 0  # Plotly draws in SVG: an <img> was injected
    return view


def visible(view, fig="fig0"):
    return view.evaluate(f"document.getElementById('{fig}').data.map(t => t.visible)")


# -- text ---------------------------------------------------------------------------------------
def test_text_page_shades_the_prompt_and_lists_the_units(lm, tmp_path):
    ex = TextAblation(lm, level="word").explain(PROMPT, TARGET)
    page = ex.to_html(tmp_path / "text.html").read_text()
    assert page.count('title="') == len(ex.units)  # one tooltip per shaded unit
    assert 'class="xai-key"' in page and page.count('<sup class="xai-value"') == len(ex.units)
    assert page.count("<tr><td") == len(ex.units)  # the units' table
    assert f"{ex.attributions.max():.6g}" in page and "native:text_ablation" in page
    assert "plotly" not in page.lower()  # a text page needs no Plotly


def test_text_levels_switch_and_a_hostile_prompt_stays_text(lm, tmp_path, browser_page):
    prompt = f"the key is c . {HOSTILE} . so the answer is"
    exps = [TextAblation(lm, level=level).explain(prompt, TARGET) for level in ("token", "word", "sentence")]
    path = text_levels_html(exps, tmp_path / "levels.html", title=HOSTILE)
    view = open_clean(browser_page, path)
    assert view.title() == SHOWN
    sections = view.locator("details.xai-level")
    assert sections.evaluate_all("els => els.map(e => e.open)") == [True, False, False]
    word_spans = sections.nth(1).locator("span[title]")
    assert word_spans.count() == len(exps[1].units) and not word_spans.first.is_visible()
    view.click("summary >> text=word: native:text_ablation")
    assert sections.evaluate_all("els => els.map(e => e.open)") == [False, True, False]  # one at a time
    assert word_spans.first.is_visible() and not sections.nth(0).locator("span[title]").first.is_visible()
    # the prompt is shown as the characters it holds (values in superscripts aside)
    shown = sections.nth(1).locator("p").last.evaluate(
        "p => { const c = p.cloneNode(true); c.querySelectorAll('sup').forEach(s => s.remove()); "
        "return c.textContent; }")
    assert shown == prompt.replace("\u202e", "<U+202E>")
    browser_page.screenshot("llm_text_levels")


def test_text_levels_html_checks_its_input(lm, tmp_path):
    a = TextAblation(lm, level="word").explain(PROMPT, TARGET)
    b = TextAblation(lm, level="word").explain(OTHER_PROMPT, TARGET)
    with pytest.raises(ValueError, match="same prompt and target"):
        text_levels_html([a, b], tmp_path / "x.html")
    with pytest.raises(TypeError, match="TextExplanation"):
        text_levels_html([], tmp_path / "x.html")


def test_text_page_in_chromium(lm, tmp_path, browser_page):
    ex = TextAblation(lm, level="word").explain(PROMPT, TARGET)
    view = open_clean(browser_page, ex.to_html(tmp_path / "text.html"))
    assert view.locator(".xai-text span[title]").count() == len(ex.units)
    view.click("th >> text=attribution")  # the units' table sorts by attribution
    shown = [float(v) for v in view.locator("tbody tr td:last-child").all_text_contents()]
    assert shown == sorted(shown) and len(shown) == len(ex.units)
    browser_page.screenshot("llm_text")


# -- logit lens ---------------------------------------------------------------------------------
def test_logit_lens_figure_holds_the_result(lens):
    fig = logit_lens_figure(lens)
    np.testing.assert_array_equal(fig.data[0].z, lens.target_probs)
    np.testing.assert_array_equal(fig.data[1].z, np.log10(1 + lens.target_ranks))
    np.testing.assert_array_equal(fig.data[2].z, lens.entropy)
    np.testing.assert_array_equal(fig.data[3].z, lens.top_probs[:, :, 0])
    assert list(fig.layout.xaxis.ticktext) == [html.escape(t) for t in lens.tokens]
    n_layers, n_pos, k = lens.top_probs.shape
    for i, t in [(0, 0), (n_layers - 1, n_pos - 1)]:
        hover = fig.data[0].hovertext[i][t]
        assert f"P({lens.target}) = {lens.target_probs[i, t]:.4g}" in hover
        for j in range(k):
            assert f"{j + 1}. {lens.top_tokens[i, t, j]}  {lens.top_probs[i, t, j]:.4g}" in hover
        assert fig.data[0].text[i][t] == lens.top_tokens[i, t, 0]


def test_logit_lens_page_in_chromium(lens, tmp_path, browser_page):
    view = open_clean(browser_page, lens.to_html(tmp_path / "lens.html"))
    assert visible(view) == [True, False, False, False]
    for i, (label, title) in enumerate([("target rank", "the rank of"), ("entropy", "entropy"),
                                        ("top-1 probability", "top-1 token's probability")], 1):
        view.click(".updatemenu-header-group")  # open the view dropdown
        view.click(f".updatemenu-dropdown-button >> text=\"{label}\"")
        assert visible(view) == [j == i for j in range(4)]
        assert title in view.locator(".gtitle").text_content()
        if label == "top-1 probability":
            view.wait_for_timeout(500)  # the dropdown's closing animation
            browser_page.screenshot("llm_logit_lens_top1")
    view.click(".updatemenu-header-group")
    view.click(".updatemenu-dropdown-button >> text=\"target probability\"")
    assert visible(view) == [True, False, False, False]
    view.wait_for_timeout(500)
    browser_page.screenshot("llm_logit_lens")

    tokens = list(lens.tokens)
    tokens[1] = HOSTILE
    top = lens.top_tokens.astype(object)
    top[-1, -1, 0] = HOSTILE
    hostile = dataclasses.replace(lens, tokens=tokens, top_tokens=top, target=HOSTILE)
    view = open_clean(browser_page, hostile.to_html(tmp_path / "hostile.html"))
    assert view.locator(".xtick text").nth(1).text_content() == SHOWN  # a tick label, as text
    assert SHOWN in view.locator(".gtitle").text_content()
    box = view.locator(".nsewdrag").first.bounding_box()  # the plot area: hover its top-right cell
    n_layers, n_pos = lens.target_probs.shape
    view.mouse.move(box["x"] + box["width"] * (n_pos - 0.5) / n_pos,
                    box["y"] + box["height"] * 0.5 / n_layers)
    hover = view.locator(".hoverlayer .hovertext").text_content()
    assert SHOWN in hover and f"{lens.top_probs[-1, -1, 1]:.4g}" in hover  # top-k in the hover


# -- patching -----------------------------------------------------------------------------------
def test_patching_figure_holds_the_result(patching):
    fig = patching_figure(patching)
    assert [t.name for t in fig.data] == [f"hook_{s}" for s in patching.sites]
    for trace, site in zip(fig.data, patching.sites, strict=True):
        np.testing.assert_array_equal(trace.z, patching.effects[site])
        hover = trace.hovertext[1][2]
        assert f"effect: {patching.effects[site][1, 2]:.4g}" in hover
        assert f"patched logit difference: {patching.patched[site][1, 2]:.4g}" in hover
        assert f"blocks.1.hook_{site}" in hover
    assert [t.visible for t in fig.data] == [True, False, False]
    assert trace.zmin == -trace.zmax and trace.zmax >= np.abs(patching.effects[site]).max()


def test_patching_page_in_chromium(patching, tmp_path, browser_page):
    view = open_clean(browser_page, patching.to_html(tmp_path / "patching.html"))
    assert visible(view) == [True, False, False]
    view.click(".updatemenu-header-group")  # open the site dropdown
    view.click(".updatemenu-dropdown-button >> text=hook_mlp_out")
    assert visible(view) == [False, False, True]
    assert "hook_mlp_out" in view.locator(".gtitle").text_content()
    browser_page.screenshot("llm_patching")

    clean, corrupted = list(patching.tokens), list(patching.corrupted_tokens)
    clean[0], corrupted[1] = HOSTILE, HOSTILE
    hostile = dataclasses.replace(patching, tokens=clean, corrupted_tokens=corrupted, answer=HOSTILE)
    view = open_clean(browser_page, hostile.to_html(tmp_path / "hostile.html", title=HOSTILE))
    assert view.title() == SHOWN
    assert f"logit({HOSTILE!r})" in view.locator("p").first.text_content()
    assert view.locator(".xtick text").first.text_content() == f"{SHOWN}/{corrupted[0]}"  # clean/corrupted
    cells = view.locator("tbody tr").nth(0).locator("td").all_text_contents()
    assert cells == ["0", SHOWN, corrupted[0]]  # the prompts' tokens, as text


# -- probing ------------------------------------------------------------------------------------
def test_probing_figure_holds_the_result(probing):
    fig = probing_figure(probing)
    names = [t.name for t in fig.data]
    assert names == ["probe 95% interval", "probe", "control (permuted labels) 95% interval",
                     "control (permuted labels)", "chance (majority)"]
    n = len(probing.layers)
    for band, line, (acc, low, high) in [
            (fig.data[0], fig.data[1], (probing.accuracy, probing.low, probing.high)),
            (fig.data[2], fig.data[3], (probing.control_accuracy, probing.control_low,
                                        probing.control_high))]:
        np.testing.assert_array_equal(line.y, acc)
        upper, lower = np.asarray(band.y[:n]), np.asarray(band.y[n:])[::-1]
        np.testing.assert_array_equal(upper, high)
        np.testing.assert_array_equal(lower, low)
        assert ((lower <= acc) & (acc <= upper)).all() and (upper > lower).all()
    assert set(fig.data[4].y) == {probing.chance}
    assert list(fig.data[1].x) == list(probing.layers)


def test_probing_without_control_has_no_control_traces(probing):
    bare = dataclasses.replace(probing, control_accuracy=None, control_low=None, control_high=None,
                               selectivity=None)
    assert [t.name for t in probing_figure(bare).data] == ["probe 95% interval", "probe",
                                                            "chance (majority)"]


def test_probing_page_in_chromium(probing, tmp_path, browser_page):
    view = open_clean(browser_page, probing.to_html(tmp_path / "probing.html"))
    assert ["legendonly" == v for v in visible(view)] == [False] * 5
    browser_page.screenshot("llm_probing")
    # click the legend entry (its toggle lies over its text): the series and its band hide
    view.click('text.legendtext[data-unformatted="control (permuted labels)"]', force=True)
    view.wait_for_timeout(600)  # Plotly waits out its double-click delay (300 ms) first
    assert ["legendonly" == v for v in visible(view)] == [False, False, True, True, False]

    hostile = dataclasses.replace(probing, layers=(HOSTILE, *probing.layers[1:]))
    view = open_clean(browser_page, hostile.to_html(tmp_path / "hostile.html"))
    assert view.locator(".xtick text").first.text_content() == SHOWN
    assert view.locator("tbody tr td").first.text_content() == SHOWN
