"""Finding sentinel values in text a probe loaded: exactly, and changed.

A sentinel is a unique value per (source, key). A probe finds it in a string leaf
exactly, or changed: in another case (lower- or upper-cased), cut or extended (a
distinctive piece of it survives), or re-encoded (base64, hex). A changed value is
a variant: it is not the value, so it never makes a stage true, but it tells
localization where the value was changed (a mutation is a drop at the function that
changed it) and the report can show both.

A distinctive piece is a substring of the value of at least PIECE characters that
no other sentinel of the run contains and that is not inside the value's nominal
part (the text the scenario declared, which may occur in real data).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

PIECE = 12  # shortest distinctive piece that counts as a cut value
TEXT_LIMIT = 160  # how much of a variant's text an event keeps


@dataclass(frozen=True)
class Match:
    value: str  # the sentinel
    kind: str  # exact | case | fragment | base64 | hex
    text: str = ""  # for a variant: the text it was found in (cut to TEXT_LIMIT)


def _pieces(value: str, nominal: str, others: list[str]) -> list[str]:
    """Distinctive substrings of `value` of length PIECE (none for short values)."""
    if len(value) < PIECE:
        return []
    start = len(nominal) - PIECE + 1 if nominal and value.startswith(nominal) else 0
    found = []
    for index in range(max(0, start), len(value) - PIECE + 1):
        piece = value[index:index + PIECE]
        if not any(piece in other for other in others):
            found.append(piece)
    return found


def _encoded(value: str) -> list[tuple[str, str]]:
    """(kind, needle): the value re-encoded, as it would appear inside longer encoded text."""
    data = value.encode()
    needles = []
    # Base64 of any text that holds the value holds, away from its edges, the encoding of the
    # value at one of three alignments.
    for prefix in (b"", b"\0", b"\0\0"):
        encoded = base64.b64encode(prefix + data).decode().rstrip("=")
        skip = {b"": 0, b"\0": 2, b"\0\0": 3}[prefix]
        stable = encoded[skip:len(encoded) - 3]
        if len(stable) >= PIECE:
            needles.append(("base64", stable))
            needles.append(("base64", stable.replace("+", "-").replace("/", "_")))
    needles.append(("hex", data.hex()))
    return needles


class SentinelMatcher:
    """Search text for a run's sentinel values. `nominals` maps value -> the scenario's nominal text."""

    def __init__(self, values: list[str], nominals: dict[str, str] | None = None) -> None:
        self.values = list(dict.fromkeys(values))
        nominals = nominals or {}
        self._folded = [(v, v.casefold()) for v in self.values]
        self._pieces = {v: _pieces(v, nominals.get(v, ""), [o for o in self.values if o != v]) for v in self.values}
        self._encoded = {v: _encoded(v) for v in self.values}
        needles = {p.casefold() for ps in self._pieces.values() for p in ps}
        needles |= {n for es in self._encoded.values() for _, n in es}
        needles |= {f for _, f in self._folded}
        # One pass over the text decides whether anything more than the exact search is needed.
        self._any = re.compile("|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True))) \
            if needles else None

    def exact(self, text: str) -> list[str]:
        return [v for v in self.values if v in text]

    def find(self, text: str) -> list[Match]:
        """Every sentinel found in `text`: exact matches, else the variants of it found."""
        found = [Match(v, "exact") for v in self.values if v in text]
        if self._any is None:
            return found
        exact = {m.value for m in found}
        folded = text.casefold()
        if len(exact) == len(self.values) or not (self._any.search(folded) or self._any.search(text)):
            return found
        cut = text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "..."
        for value, value_folded in self._folded:
            if value in exact:
                continue
            if value_folded in folded:
                found.append(Match(value, "case", cut))
            elif any(p.casefold() in folded for p in self._pieces[value]):
                found.append(Match(value, "fragment", cut))
            elif any(needle in text for _, needle in self._encoded[value]):
                kind = next(k for k, needle in self._encoded[value] if needle in text)
                found.append(Match(value, kind, cut))
        return found
