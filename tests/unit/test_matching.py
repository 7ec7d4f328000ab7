"""Unit tests for harness.probes.matching: sentinels found exactly and changed."""

from __future__ import annotations

import base64

from harness.image.scenario import sentinel_value
from harness.probes.matching import PIECE, SentinelMatcher

FLAG = sentinel_value("qemu", "runtime-flag", "3fa9c2", 0)
HYPERVISOR = sentinel_value("hvt", "manifest", "3fa9c2", 1)
TYPE = sentinel_value("hvt", "manifest", "3fa9c2", 2)
MATCHER = SentinelMatcher([FLAG, HYPERVISOR, TYPE], {FLAG: "qemu", HYPERVISOR: "hvt", TYPE: "hvt"})


def kinds(text: str) -> dict[str, str]:
    return {m.value: m.kind for m in MATCHER.find(text)}


def test_exact_inside_longer_text():
    assert kinds(f'{{"annotations":{{"k":"{FLAG}"}}}}') == {FLAG: "exact"}


def test_another_case_is_a_variant_with_its_text():
    [match] = MATCHER.find(FLAG.upper())
    assert (match.value, match.kind, match.text) == (FLAG, "case", FLAG.upper())


def test_a_value_cut_short_keeps_a_piece_only_it_has():
    # The nonce and number follow the marker, so the first 16 characters still tell it apart.
    assert kinds(FLAG[:16]) == {FLAG: "fragment"}
    assert kinds(HYPERVISOR[:len("hvt-atr-") + PIECE]) == {HYPERVISOR: "fragment"}
    assert kinds(TYPE[:len("hvt-atr-") + PIECE]) == {TYPE: "fragment"}


def test_a_value_stripped_of_its_front_is_a_fragment():
    assert kinds("x" + FLAG[6:]) == {FLAG: "fragment"}


def test_base64_at_any_offset_and_hex():
    for prefix in ("", "a", "ab"):
        encoded = base64.b64encode(f'{prefix}{{"k":"{FLAG}"}}'.encode()).decode()
        assert kinds(encoded) == {FLAG: "base64"}, prefix
        assert kinds(base64.urlsafe_b64encode(f'{prefix}{FLAG}'.encode()).decode()) == {FLAG: "base64"}
    assert kinds(FLAG.encode().hex()) == {FLAG: "hex"}


def test_nominal_text_alone_is_not_a_sentinel():
    assert MATCHER.find("qemu hvt /unikernel/app.hvt") == []
    assert MATCHER.find("hvt-atr-") == []


def test_exact_wins_over_variants_of_the_same_value():
    assert kinds(FLAG + " " + FLAG.upper()) == {FLAG: "exact"}


def test_short_values_have_no_pieces_but_still_match_exactly_and_by_case():
    matcher = SentinelMatcher(["ab-1", "cd-2"])
    assert {m.value: m.kind for m in matcher.find("x ab-1 CD-2")} == {"ab-1": "exact", "cd-2": "case"}
