"""Self-contained HTML pages: Plotly figures, tables and text in one file that works offline.

Every result's ``to_html(path)`` fills a :class:`Page` (the result type's ``_html`` method)
and writes it: plotly.js is inlined once, the CSS and the few scripts are inline, and nothing
is fetched from the network when the file is viewed. Controls are Plotly's own (dropdown
menus, sliders, hover) or the page's sortable tables.

Text that comes from users (feature names, class names, prompts, tokens) goes through
:func:`escape`, which also shows invisible format characters (bidi overrides, zero-width
characters) as visible ``<U+XXXX>`` escapes; Plotly figures get it escaped too, since Plotly
renders a subset of HTML in titles, labels and hover text.

Plotly comes with the extra ``pip install 'xai-suite[explore]'``.
"""

from __future__ import annotations

import html
import json
import os
import re
import unicodedata
from pathlib import Path

from .._io import atomic_write

#: Page style: readable defaults, tables that say they can be sorted.
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
p.note { color: #555; }
table.xs { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
table.xs th, table.xs td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
table.xs th.sortable { cursor: pointer; background: #f3f3f3; }
table.xs th.sortable::after { content: " \\2195"; color: #999; }
table.xs th[aria-sort="ascending"]::after { content: " \\2191"; color: #222; }
table.xs th[aria-sort="descending"]::after { content: " \\2193"; color: #222; }
"""

#: Click a header of a ``sortable`` table to sort by that column (numbers by their value:
#: a cell's ``data-sort``, else its text), again to reverse.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col], v = cell.getAttribute("data-sort");
        return v === null ? cell.textContent : parseFloat(v);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def escape(text) -> str:
    """``str(text)`` safe inside HTML and in Plotly's text: ``html.escape`` (quotes included,
    ``"`` as ``&#34;``, since Plotly decodes numeric references but shows ``&quot;`` as it is),
    with every format character (Unicode category Cf: bidi overrides, zero-width characters)
    as a visible ``<U+XXXX>``."""
    text = "".join(f"<U+{ord(c):04X}>" if unicodedata.category(c) == "Cf" else c for c in str(text))
    return html.escape(text, quote=True).replace("&quot;", "&#34;")


def plotly():
    """The ``plotly.graph_objects`` module, or an ``ImportError`` naming the extra."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise ImportError("HTML views need plotly: pip install 'xai-suite[explore]'") from None
    return go


class Page:
    """One self-contained HTML page, built in order: headings, paragraphs, figures, tables.

    Parameters
    ----------
    title : str
        The page's title and first heading (escaped).
    """

    def __init__(self, title: str):
        self.title = str(title)
        self._parts: list[str] = [f"<h1>{escape(title)}</h1>"]
        self._figures = 0

    def heading(self, text: str, level: int = 2) -> Page:
        """A section heading (escaped); ``level`` 2 to 4."""
        if level not in (2, 3, 4):
            raise ValueError(f"level must be 2, 3 or 4; got {level!r}")
        self._parts.append(f"<h{level}>{escape(text)}</h{level}>")
        return self

    def paragraph(self, text: str, *, note: bool = False) -> Page:
        """A paragraph of plain text (escaped); ``note``: in the muted style of an aside."""
        cls = ' class="note"' if note else ""
        self._parts.append(f"<p{cls}>{escape(text)}</p>")
        return self

    def figure(self, fig) -> str:
        """A Plotly figure (its controls included); returns the id of its ``div``.

        The caller escapes user text in the figure (:func:`escape`): Plotly renders a subset
        of HTML in titles, tick labels and hover text.
        """
        import plotly.io as pio

        div_id = f"fig{self._figures}"
        first = self._figures == 0
        self._figures += 1
        self._parts.append(pio.to_html(fig, include_plotlyjs=first, full_html=False, div_id=div_id,
                                       config={"displaylogo": False, "responsive": True}))
        return div_id

    def table(self, frame, *, sortable: bool = True, caption: str | None = None) -> Page:
        """A table of a DataFrame (every cell escaped). ``sortable``: click a header to sort by
        its column; a cell that holds a number (also "0.52 [0.48, 0.56]") sorts by it."""
        head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
        rows = []
        for values in frame.itertuples(index=False):
            cells = []
            for v in values:
                m = _NUMBER.match(str(v).strip())
                sort = f' data-sort="{float(m.group()):.17g}"' if m else ""
                cells.append(f"<td{sort}>{escape(v)}</td>")
            rows.append(f"<tr>{''.join(cells)}</tr>")
        cls = "xs sortable" if sortable else "xs"
        cap = f"<caption>{escape(caption)}</caption>" if caption else ""
        self._parts.append(f'<table class="{cls}">{cap}<thead><tr>{head}</tr></thead>'
                           f"<tbody>{''.join(rows)}</tbody></table>")
        return self

    def markup(self, trusted_html: str) -> Page:
        """HTML built by this package (never user text unless escaped with :func:`escape`)."""
        self._parts.append(trusted_html)
        return self

    def html(self) -> str:
        """The whole page."""
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{escape(self.title)}</title><style>{STYLE}</style></head><body>\n"
                + "\n".join(self._parts)
                + f"\n<script>{SORT_SCRIPT}</script>\n</body></html>\n")

    def write(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` atomically (a crash leaves the old file); returns it."""
        data = self.html().encode("utf-8")
        return atomic_write(Path(path), lambda fh: fh.write(data))


def json_script(name: str, value) -> str:
    """``<script>`` setting ``window[name]`` to JSON ``value``, safe inside HTML (``<`` escaped)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a JavaScript identifier; got {name!r}")
    data = json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"<script>window.{name} = {data};</script>"
