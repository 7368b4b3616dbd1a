"""Units of a prompt: its tokens, words or sentences, as groups of token indices.

Every text explainer attributes to *units*: a unit is a character span of the prompt and
the tokens inside it. Units are built from an :class:`~xai_suite_llm.models.Encoding`'s
offsets, so they work for any fast tokenizer: word-level ones, and BPE/ByteLevel ones
(GPT-2 style) whose tokens carry their leading space.

- ``token``: one unit per token (its offsets; a token that overlaps the previous one, as
  byte-level pieces of one character can, starts where the previous one ends).
- ``word``: whitespace-delimited words; punctuation attached to a word stays with it, a
  standalone ``.`` is its own word.
- ``sentence``: the text split after a run of ``.``, ``!`` or ``?`` followed by whitespace
  (or the end), and at newlines.

A token belongs to the word (sentence) that holds its first non-space character; a token of
whitespace only belongs to the next word (the last one at the end). When one token spans
two words (a tokenizer merging across a space), the words become one unit, so units never
split a token.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .models import Encoding

LEVELS = ("token", "word", "sentence")
_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n")


@dataclass(frozen=True)
class Unit:
    """One unit of a prompt.

    Attributes
    ----------
    text : str
        ``prompt[start:end]``.
    start, end : int
        Character span in the prompt.
    tokens : tuple of int
        Indices of the prompt's tokens in the unit (ascending, at least one).
    level : str
        ``token``, ``word`` or ``sentence``.
    """

    text: str
    start: int
    end: int
    tokens: tuple[int, ...]
    level: str


def check_level(level: str) -> str:
    """Return ``level`` if it is one of :data:`LEVELS`, else raise a ``ValueError``."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(map(repr, LEVELS))}; got {level!r}")
    return level


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    """The span ``(s, e)`` of ``text`` without its surrounding whitespace (empty: both ``e``)."""
    s2 = s + len(text[s:e]) - len(text[s:e].lstrip())
    return s2, s2 + len(text[s:e].strip())


def _token_cores(enc: Encoding) -> list[tuple[int, int]]:
    """Each token's span without surrounding whitespace ((s, s) when it is only whitespace)."""
    cores = [(s, *_strip(enc.text, s, e)) for s, e in enc.offsets]
    return [(a, b) if b > a else (s, s) for s, a, b in cores]


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentences without their surrounding whitespace; empty ones dropped."""
    ends = [0, *(m.end() for m in _SENTENCE_END.finditer(text)), len(text)]
    return [(a, b) for a, b in (_strip(text, s, e) for s, e in itertools.pairwise(ends)) if b > a]


def _group(enc: Encoding, spans: list[tuple[int, int]], level: str) -> list[Unit]:
    """Assign tokens to the character ``spans`` (sorted, disjoint); merge spans a token bridges."""
    if not spans:
        return []
    cores = _token_cores(enc)
    starts, ends = [s for s, _ in spans], [e for _, e in spans]
    # a token's first and last span: those holding its first and last non-space character
    # (the last starting at or before it); a whitespace token's is the next span (the last)
    first = [min(bisect.bisect_right(ends, s), len(spans) - 1) if e == s
             else max(0, bisect.bisect_right(starts, s) - 1) for s, e in cores]
    last = [f if e == s else max(f, bisect.bisect_right(starts, e - 1) - 1)
            for f, (s, e) in zip(first, cores, strict=True)]
    # merge span ranges bridged by a token into groups of consecutive spans
    group_of = list(range(len(spans)))
    for a, b in zip(first, last, strict=True):
        for i in range(a + 1, b + 1):
            group_of[i] = group_of[a]
    members: dict[int, list[int]] = {}
    for t, i in enumerate(first):
        members.setdefault(group_of[i], []).append(t)
    units = []
    for g in sorted(members):
        idx = [i for i, gi in enumerate(group_of) if gi == g]
        toks = tuple(members[g])  # ascending: appended in token order
        # a whitespace-only token outside the span extends it (keeps spans covering tokens)
        s = min([spans[idx[0]][0]] + [cores[t][0] for t in toks if cores[t][1] > cores[t][0]])
        e = max([spans[idx[-1]][1]] + [cores[t][1] for t in toks])
        units.append(Unit(enc.text[s:e], s, e, toks, level))
    return units


def segment(enc: Encoding, level: str) -> list[Unit]:
    """The units of an encoded prompt at ``level``.

    Parameters
    ----------
    enc : Encoding
        The prompt, as :meth:`LanguageModel.encode` returns it (offsets per token).
    level : {"token", "word", "sentence"}

    Returns
    -------
    list of Unit
        In text order; every token belongs to exactly one unit; spans do not overlap.
    """
    check_level(level)
    if len(enc.offsets) == 0:
        raise ValueError("the prompt has no tokens to group into units")
    if level == "token":
        units, prev_end = [], 0
        for t, (s, e) in enumerate(enc.offsets):
            s = max(s, prev_end)
            prev_end = e = max(e, s)
            units.append(Unit(enc.text[s:e], s, e, (t,), "token"))
        return units
    spans = [m.span() for m in _WORD.finditer(enc.text)] if level == "word" else _sentence_spans(enc.text)
    return _group(enc, spans, level)


def refine(units: Sequence[Unit], which: Sequence[int], finer: Sequence[Unit]) -> list[Unit]:
    """Replace the units at positions ``which`` by the ``finer`` units inside them.

    Parameters
    ----------
    units : sequence of Unit
        The current units (they may mix levels).
    which : sequence of int
        Positions in ``units`` to refine.
    finer : sequence of Unit
        The whole prompt's units at the finer level.

    Returns
    -------
    list of Unit
        ``units`` with each chosen unit replaced by the finer units whose tokens it holds
        (kept whole when those do not cover exactly its tokens, so no token is lost).
    """
    chosen = {int(i) for i in which}
    out: list[Unit] = []
    for i, u in enumerate(units):
        if i not in chosen:
            out.append(u)
            continue
        inside = set(u.tokens)
        children = [f for f in finer if set(f.tokens) <= inside]
        covered = sorted(t for f in children for t in f.tokens)
        out.extend(children if covered == sorted(inside) else [u])
    return out
