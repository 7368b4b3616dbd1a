"""The HTML page builder: escaping of hostile text, sortable tables, plotly.js inlined once."""

import re

import pandas as pd
import pytest

from xai_suite.viz.html import Page, escape, json_script, plotly

HOSTILE = '<script>alert("x")</script> \u202eevil\u200b & \'q\''


def test_escape_shows_format_characters_and_neutralises_markup():
    out = escape(HOSTILE)
    assert "<script" not in out and "&lt;script&gt;" in out and "&#34;" in out and "&#x27;" in out
    assert "&lt;U+202E&gt;evil&lt;U+200B&gt;" in out and "\u202e" not in out


def test_page_is_self_contained_and_escapes_everything(tmp_path):
    go = plotly()
    page = Page(HOSTILE).heading(HOSTILE).paragraph(HOSTILE, note=True)
    first = page.figure(go.Figure(go.Scatter(y=[1, 3, 2])))
    second = page.figure(go.Figure(go.Bar(y=[1, 2])))
    page.table(pd.DataFrame({HOSTILE: [HOSTILE, "b"], "score": ["0.52 [0.48, 0.56]", "-1e-3"]}))
    text = page.write(tmp_path / "p.html").read_text()
    assert (first, second) == ("fig0", "fig1")
    assert "<script>alert" not in text and "\u202e" not in text
    # plotly.js inlined exactly once, nothing loaded from elsewhere
    assert text.count("plotly.js v") <= 2 and len(text) > 1_000_000
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", text)
    assert 'data-sort="0.52000000000000002"' in text and 'data-sort="-0.001"' in text
    assert '<table class="xs sortable">' in text


def test_json_script_cannot_close_the_script():
    out = json_script("data", {"t": "</script><b>"})
    assert out.count("</script>") == 1 and "\\u003c/script\\u003e" in out
    with pytest.raises(ValueError, match="identifier"):
        json_script("a-b", 1)


def test_heading_levels_are_checked():
    with pytest.raises(ValueError, match="level"):
        Page("t").heading("x", level=1)


def test_a_page_loads_offline_in_chromium_and_its_table_sorts(tmp_path, browser_page):
    go = plotly()
    page = Page(HOSTILE)
    page.figure(go.Figure(go.Scatter(y=[1, 3, 2], name=escape(HOSTILE))))
    page.table(pd.DataFrame({"method": ["a", "b", "c"], "score": ["0.5 [0.4, 0.6]", "0.25", "10"]}))
    tab = browser_page
    view = tab.open(page.write(tmp_path / "p.html"))
    assert tab.errors == [] and tab.network() == []
    assert view.title() == HOSTILE.replace("\u202e", "<U+202E>").replace("\u200b", "<U+200B>")
    assert view.locator("script", has_text='alert("x")').count() == 0  # the hostile title stayed text
    assert view.locator(".js-plotly-plot").count() == 1
    view.click("th >> text=score")
    assert view.locator("tbody tr td:first-child").all_text_contents() == ["b", "a", "c"]
    view.click("th >> text=score")
    assert view.locator("tbody tr td:first-child").all_text_contents() == ["c", "a", "b"]
    tab.screenshot("html_page")
