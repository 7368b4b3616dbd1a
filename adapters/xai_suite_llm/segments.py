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

- ``span`` (:func:`segment_spans`): character spans or phrases given by hand, the text
  between them cut at one of the levels above.

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
from dataclasses import dataclass, replace

import numpy as np

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
        ``token``, ``word`` or ``sentence``; ``span`` for a span given to :func:`segment_spans`.
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


def _given_spans(text: str, spans) -> list[tuple[int, int]]:
    """The character spans of ``spans`` ((start, end) pairs or phrases), without surrounding
    whitespace, sorted; a clear error for a bad, out-of-range, missing or overlapping one."""
    if isinstance(spans, str) or not isinstance(spans, Sequence):
        hint = " (wrap one phrase in a list)" if isinstance(spans, str) else ""
        raise TypeError(f"spans must be a sequence of (start, end) pairs or phrases; got "
                        f"{type(spans).__name__}{hint}")
    if not spans:
        raise ValueError("spans must name at least one span")
    found = []
    for item in spans:
        if isinstance(item, str):
            starts, i = [], text.find(item) if item else -1
            while i >= 0:
                starts.append(i)
                i = text.find(item, i + 1)
            if not starts:
                raise ValueError(f"phrase {item!r} is not in the prompt")
            if len(starts) > 1:
                raise ValueError(f"phrase {item!r} occurs {len(starts)} times in the prompt (at characters "
                                 f"{starts}): give the one meant as a (start, end) span")
            a, b = starts[0], starts[0] + len(item)
        elif (isinstance(item, tuple | list) and len(item) == 2
              and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in item)):
            a, b = int(item[0]), int(item[1])
            if not 0 <= a < b <= len(text):
                raise ValueError(f"span {(a, b)} must satisfy 0 <= start < end <= {len(text)} (the "
                                 "prompt's length)")
        else:
            raise TypeError(f"each span must be a (start, end) pair of ints or a phrase; got {item!r}")
        s, e = _strip(text, a, b)
        if e <= s:
            raise ValueError(f"span {(a, b)} ({text[a:b]!r}) holds only whitespace")
        found.append((s, e))
    found.sort()
    for (a1, b1), (a2, b2) in itertools.pairwise(found):
        if a2 < b1:
            raise ValueError(f"spans {(a1, b1)} ({text[a1:b1]!r}) and {(a2, b2)} ({text[a2:b2]!r}) "
                             "overlap: units must be disjoint")
    return found


def _subtract(text: str, s: int, e: int, given: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``(s, e)`` outside the ``given`` spans, without whitespace, non-empty."""
    parts, at = [], s
    for a, b in given:
        if b <= at or a >= e:
            continue
        parts.append((at, a))
        at = b
    parts.append((at, e))
    return [(a, b) for a, b in (_strip(text, max(a, s), min(b, e)) for a, b in parts) if b > a]


def segment_spans(enc: Encoding, spans, level: str = "token") -> list[Unit]:
    """Units given by hand: each span or phrase one unit, the text between them at ``level``.

    Parameters
    ----------
    enc : Encoding
        The prompt, as :meth:`LanguageModel.encode` returns it.
    spans : sequence of (int, int) or str
        Character spans ``(start, end)`` of the prompt, or phrases, each found where it
        occurs (it must occur exactly once; give a span to pick one occurrence). Surrounding
        whitespace is dropped. They must be disjoint and start and end on token edges (a
        token's non-space characters are all inside a span or all outside it).
    level : {"token", "word", "sentence"}
        How the rest of the prompt is cut: each token, word or sentence outside the spans
        (the part of it outside them) is one unit.

    Returns
    -------
    list of Unit
        In text order; the given spans' units have level ``"span"``, the others ``level``;
        every token belongs to exactly one unit (a whitespace-only token to the next unit,
        as at word level; tokens sharing their characters, as byte pieces of one character,
        to one unit).

    Raises
    ------
    TypeError
        ``spans`` that are not a sequence of pairs of ints or strings.
    ValueError
        No span; a span out of ``[0, len(prompt)]``, empty or of whitespace only; a phrase
        not found or found more than once; overlapping spans; a span that cuts a token.
    """
    check_level(level)
    if len(enc.offsets) == 0:
        raise ValueError("the prompt has no tokens to group into units")
    text, given = enc.text, _given_spans(enc.text, spans)
    cores = [(t, s, e) for t, (s, e) in enumerate(_token_cores(enc)) if e > s]
    for a, b in given:
        cut = [(t, s, e) for t, s, e in cores if s < b and e > a and not (a <= s and e <= b)]
        if cut:
            t, s, e = cut[0]
            raise ValueError(f"span {(a, b)} ({text[a:b]!r}) cuts token {t} ({text[s:e]!r}, characters "
                             f"{s}..{e}): a unit holds whole tokens, so move the span to its edges")
        if not any(a <= s and e <= b for _, s, e in cores):
            raise ValueError(f"span {(a, b)} ({text[a:b]!r}) holds no token")
    if level == "token":  # each token's characters (merged where tokens share them)
        base: list[tuple[int, int]] = []
        for s, e in sorted((s, e) for _, s, e in cores):
            if base and s < base[-1][1]:
                base[-1] = (base[-1][0], max(e, base[-1][1]))
            else:
                base.append((s, e))
    else:
        base = [m.span() for m in _WORD.finditer(text)] if level == "word" else _sentence_spans(text)
    pieces = sorted([*given, *(p for s, e in base for p in _subtract(text, s, e, given))])
    chosen = set(given)
    return [replace(u, level="span") if (u.start, u.end) in chosen else u for u in _group(enc, pieces, level)]


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
