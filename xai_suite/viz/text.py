"""HTML views of text attributions: each unit of a prompt shaded by its signed attribution
(red positive, blue negative, white at zero), its value written next to it, and a colour key.

The scale is symmetric, ``[-m, m]`` with ``m = max |a|`` over the shown units, and the
opacity is ``sqrt(|a| / m)``: a unit with a quarter of the largest attribution is drawn at
half strength, so more than the top unit stays visible.

Everything from the user is escaped (:func:`html.escape`), and invisible format characters
(Unicode category Cf: bidi overrides such as U+202E, zero-width ones such as U+200B) are
shown as visible ``<U+202E>`` escapes, so what is displayed is what the model read.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence

import numpy as np

from .._validation import check_bool


def _escape(text: str) -> str:
    """``html.escape``, with every format character (category Cf) as a visible ``<U+XXXX>``."""
    return html.escape("".join(f"<U+{ord(c):04X}>" if unicodedata.category(c) == "Cf" else c for c in text))


def _colour(value: float, limit: float) -> str:
    """``rgba`` background: red (positive) or blue (negative), alpha ``sqrt(|value| / limit)``."""
    alpha = 0.0 if limit == 0 else min(1.0, float(np.sqrt(abs(value) / limit)))
    rgb = "220, 38, 38" if value > 0 else "37, 99, 235"
    return f"rgba({rgb}, {alpha:.3f})"


def _value(v: float) -> str:
    """``v`` to 2 significant digits, signed (``+0.12``, ``-3``, ``0``)."""
    return "0" if v == 0 else f"{v:+.2g}"


def _key(limit: float) -> str:
    """The colour key: a gradient bar from ``-limit`` to ``+limit``, its ends numbered."""
    style = 'style="font-size: 0.8em; margin: 0.3em 0;"'
    if limit == 0:
        return f'<div class="xai-key" {style}>attribution: all units are 0</div>'
    stops = ", ".join(_colour(v, limit) for v in np.linspace(-limit, limit, 21))
    box = 'style="display: inline-block; vertical-align: middle;'
    return (f'<div class="xai-key" {style}>attribution <div {box}">{_value(-limit)}</div> '
            f'<div {box} width: 12em; height: 0.9em; border: 1px solid #999; '
            f'background: linear-gradient(to right, {stops});"></div> '
            f'<div {box}">{_value(limit)}</div> (white: 0; opacity: sqrt(|a| / max |a|))</div>')


def render_text_html(text: str, spans: Sequence[tuple[int, int]], attributions, *,
                     title: str | None = None, subtitle: str | None = None,
                     show_values: bool = True) -> str:
    """An HTML fragment showing ``text`` with each unit's background set by its attribution.

    Parameters
    ----------
    text : str
        The original text (shown whole: text between units, spaces included, is kept).
    spans : sequence of (int, int), length U
        Character span of each unit in ``text``, in text order, not overlapping
        (``0 <= start <= end <= len(text)``).
    attributions : array-like of float, shape (U,)
        Signed attribution of each unit (finite).
    title : str, optional
        A heading above the text (escaped).
    subtitle : str, optional
        A line under the heading, e.g. the explained continuation (escaped).
    show_values : bool
        Write each unit's value (2 significant digits) as a small superscript after it, a
        ``<sup class="xai-value">``; the tooltip gives 6 digits either way.

    Returns
    -------
    str
        A ``<div>``: the heading, the colour key (``<div class="xai-key">``, a gradient from
        ``-m`` to ``+m``), then the text; each unit is a ``<span>`` whose ``title`` tooltip
        gives its value.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")
    check_bool(show_values=show_values)
    values = np.asarray(attributions, dtype=np.float64)
    if values.ndim != 1 or len(values) != len(spans):
        raise ValueError(f"attributions must have shape ({len(spans)},), one per span; got "
                         f"{values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("attributions contain NaN or infinite values; expected finite numbers")
    prev = 0
    for s, e in spans:
        if not (isinstance(s, int | np.integer) and isinstance(e, int | np.integer)):
            raise TypeError(f"spans must be (int, int) pairs; got {(s, e)!r}")
        if not prev <= s <= e <= len(text):
            raise ValueError(f"spans must be in text order, not overlapping and within the text "
                             f"(length {len(text)}); got {(s, e)} after position {prev}")
        prev = e
    limit = float(np.abs(values).max()) if len(values) else 0.0
    parts = ['<div class="xai-text" style="font-family: monospace; line-height: 2.2;">']
    if title is not None:
        parts.append(f"<h4>{_escape(str(title))}</h4>")
    if subtitle is not None:
        parts.append(f"<p>{_escape(str(subtitle))}</p>")
    parts += [_key(limit), '<p style="white-space: pre-wrap;">']
    pos = 0
    for (s, e), v in zip(spans, values, strict=True):
        shown = (f'<sup class="xai-value" style="font-size: 0.6em; color: #444;">{_value(v)}</sup>'
                 if show_values else "")
        parts += [_escape(text[pos:s]), f'<span style="background-color: {_colour(v, limit)}; '
                  f'border-radius: 3px;" title="{v:.6g}">{_escape(text[s:e])}{shown}</span>']
        pos = e
    parts += [_escape(text[pos:]), "</p></div>"]
    return "".join(parts)
