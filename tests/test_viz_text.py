"""HTML rendering of text attributions (xai_suite.viz.text): escaped, faithful to the text."""

import html
import re

import numpy as np
import pytest

from xai_suite.viz.text import render_text_html

SCRIPT = 'Say <script>alert(1)</script> & "quote" it.'


def _visible(fragment: str) -> str:
    """The text a browser shows in the fragment's paragraph: tags stripped, entities unescaped."""
    body = re.search(r'<p style="white-space: pre-wrap;">(.*)</p></div>$', fragment, re.S).group(1)
    body = re.sub(r'<sup class="xai-value"[^>]*>[^<]*</sup>', "", body)  # the values shown
    return html.unescape(re.sub(r"<[^>]*>", "", body))


def _word_spans(text):
    return [m.span() for m in re.finditer(r"\S+", text)]


def test_script_is_escaped_and_text_kept():
    spans = _word_spans(SCRIPT)
    out = render_text_html(SCRIPT, spans, np.linspace(-1, 1, len(spans)), title="<b>title</b>",
                           subtitle="<i>target</i>")
    assert "&lt;script&gt;" in out and "<script" not in out.lower()
    assert "&lt;b&gt;title&lt;/b&gt;" in out and "<b>" not in out and "<i>" not in out
    assert _visible(out) == SCRIPT  # spaces between the units kept, nothing added
    assert out.count("<span") == len(spans)


def test_colours_are_signed_and_symmetric():
    text = "aa bb cc dd ee"
    out = render_text_html(text, _word_spans(text), [2.0, -2.0, 1.0, 0.0, -0.5])
    colours = re.findall(r"background-color: rgba\(([^)]*)\)", out)
    assert colours[0] == "220, 38, 38, 1.000"  # largest positive: full red
    assert colours[1] == "37, 99, 235, 1.000"  # as large negative: full blue
    assert colours[2] == "220, 38, 38, 0.707"  # opacity sqrt(|a| / max |a|): half the top ...
    assert colours[3].endswith(", 0.000")  # zero: no colour
    assert colours[4] == "37, 99, 235, 0.500"  # ... and a quarter of it still at half strength
    assert re.findall(r'title="([^"]*)"', out) == ["2", "-2", "1", "0", "-0.5"]


def test_values_are_shown_without_hovering():
    text = "aa bb cc dd"
    values = [0.123456, -2.5, 0.0, 3e-5]
    out = render_text_html(text, _word_spans(text), values)
    shown = re.findall(r'<span [^>]*>(\w+)<sup class="xai-value"[^>]*>([^<]*)</sup></span>', out)
    assert shown == [("aa", "+0.12"), ("bb", "-2.5"), ("cc", "0"), ("dd", "+3e-05")]
    hidden = render_text_html(text, _word_spans(text), values, show_values=False)
    assert "xai-value" not in hidden and _visible(hidden) == _visible(out) == text
    with pytest.raises(TypeError, match="show_values must be True or False"):
        render_text_html(text, _word_spans(text), values, show_values=1)


def test_colour_key_spans_minus_to_plus_the_limit():
    text = "aa bb cc"
    out = render_text_html(text, _word_spans(text), [0.5, -4.0, 1.0])
    key = out[out.index('<div class="xai-key"'):out.index("white-space: pre-wrap")]  # above the text
    assert re.findall(r'<div [^>]*>([^<]+)</div>', key) == ["-4", "+4"]  # limit = max |a|
    stops = re.findall(r"rgba\(([^)]*)\)", re.search(r"linear-gradient\((.*?)\);", key).group(1))
    assert stops[0] == "37, 99, 235, 1.000" and stops[-1] == "220, 38, 38, 1.000"
    assert stops[len(stops) // 2].endswith(", 0.000")  # white in the middle: zero
    zeros = render_text_html(text, _word_spans(text), [0.0, 0.0, 0.0])
    assert "all units are 0" in zeros and "rgba(220, 38, 38, 0.000)" not in zeros


def test_units_not_covering_the_text_and_empty_spans():
    text = "  lead  gap\ttrail \n"
    spans = [(2, 6), (8, 8), (8, 11)]  # an empty span is allowed (a token with no characters)
    out = render_text_html(text, spans, [1.0, 0.0, -0.5])
    assert _visible(out) == text


def test_errors():
    with pytest.raises(ValueError, match="one per span"):
        render_text_html("ab cd", [(0, 2), (3, 5)], [1.0])
    with pytest.raises(ValueError, match="not overlapping"):
        render_text_html("ab cd", [(0, 3), (2, 5)], [1.0, 2.0])
    with pytest.raises(ValueError, match="within the text"):
        render_text_html("ab", [(0, 5)], [1.0])
    with pytest.raises(ValueError, match="finite"):
        render_text_html("ab", [(0, 2)], [np.nan])
    with pytest.raises(TypeError, match="str"):
        render_text_html(b"ab", [(0, 2)], [1.0])


def test_text_explanation_html_fragment_escapes_the_prompt():
    pytest.importorskip("transformers")
    import torch

    from xai_suite_llm import LanguageModel, make_tiny_gpt2, make_tiny_tokenizer
    from xai_suite_llm.attribution import TextAblation

    tok = make_tiny_tokenizer()
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lm = LanguageModel(make_tiny_gpt2(len(tok), n_embd=16, n_head=2), tok, device="cpu")
        prompt = "the key is <script>alert(1)</script> ."
        for level in ("token", "word", "sentence"):
            ex = TextAblation(lm, level=level).explain(prompt, " <b>")
            out = ex.html_fragment()
            assert "<script" not in out and "<b>" not in out and "&lt;b&gt;" in out
            if level != "token":  # tokens split "<script>" into "<", "script", ">"
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
            assert _visible(out) == prompt
            assert out.count("<span") == len(ex.units)
    finally:
        torch.set_num_threads(prev)


def test_bidi_and_zero_width_characters_are_shown_not_applied():
    """A right-to-left override (U+202E), an isolate (U+2066) and a zero-width space (U+200B)
    would reorder or hide what is displayed; they come out as visible escapes."""
    text = "pay \u202eevil\u202c to \u2066x\u2069 now\u200b!"
    spans = _word_spans(text)
    out = render_text_html(text, spans, np.ones(len(spans)), title="t\u202e", subtitle="s\u200b")
    assert not any(c in out for c in "\u202e\u202c\u2066\u2069\u200b")
    assert "&lt;U+202E&gt;evil&lt;U+202C&gt;" in out and "&lt;U+200B&gt;" in out
    assert _visible(out) == "pay <U+202E>evil<U+202C> to <U+2066>x<U+2069> now<U+200B>!"
