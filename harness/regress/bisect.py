"""Find the first tag between a good and a bad containerd whose verdict differs from the good one's.

Tags come from the module proxy (`go list -m -versions`), in semver order, across
the v1 and v2 module paths when the range crosses them. The search is binary:
about log2(n) tags are built and run, and builds already in the cache are reused.
A tag that cannot be built or run (outcome `error`) is skipped, as `git bisect
skip` would, and named in the result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.regress.compare import differs
from harness.regress.verdict import RunVerdict
from harness.toolchain.resolve import _TAG  # one reading of a release tag for resolving and bisecting



def semver_key(tag: str) -> tuple:
    """Sort key: releases after their pre-releases (v1.7.0-rc.1 < v1.7.0)."""
    match = _TAG.match(tag)
    if not match:
        raise HarnessError(f"{tag!r} is not a release tag: bisect walks tags such as v2.1.4")
    major, minor, patch, pre = match.groups()
    pre_key = tuple(int(p) if p.isdigit() else p for p in re.split(r"[.-]", pre[1:])) if pre else ()
    return int(major), int(minor), int(patch), 0 if pre else 1, tuple((isinstance(p, int), p) for p in pre_key)


def tags_between(good: str, bad: str, tags: list[str], prereleases: bool = False) -> list[str]:
    """`good`, the tags strictly between, and `bad`, in semver order."""
    low, high = semver_key(good), semver_key(bad)
    if low >= high:
        raise HarnessError(f"--good {good} is not older than --bad {bad}: give the older tag as --good")
    between = sorted({t for t in tags if _TAG.match(t) and low < semver_key(t) < high
                      and (prereleases or not _TAG.match(t).group(4))}, key=semver_key)
    return [good, *between, bad]


def proxy_tags(good: str, bad: str) -> list[str]:
    """All tags of the module paths that the range touches, from the module proxy."""
    from harness.toolchain.resolve import _versions
    from harness.versions import V1_MODULE, V2_MODULE

    majors = {semver_key(good)[0], semver_key(bad)[0]}
    majors |= set(range(min(majors), max(majors) + 1))
    tags: list[str] = []
    for module in sorted({V2_MODULE if m >= 2 else V1_MODULE for m in majors}):
        tags += _versions(module)
    return tags


@dataclass
class BisectResult:
    tags: list[str]  # good .. bad, the range searched
    first_bad: str | None  # first tag whose verdict differs from good's; None when good and bad agree
    last_good: str | None
    tested: dict[str, RunVerdict] = field(default_factory=dict)  # in the order they were run
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "range": self.tags,
            "first_differing": self.first_bad,
            "last_matching": self.last_good,
            "tested": list(self.tested),
            "skipped": self.skipped,
            "evaluations": len(self.tested),
        }


def bisect(tags: list[str], verdict_of: Callable[[str], RunVerdict], strict_lines: bool = False) -> BisectResult:
    """Binary search over `tags` (good first, bad last) with `verdict_of(tag)` as the oracle.

    Assumes the verdict changes once in the range (as git bisect does); when it
    changes back and forth, the tag found is one place where it changed. With
    `strict_lines` a drop that moved to another line of the same function counts.
    """
    result = BisectResult(tags, None, None)

    def run(tag: str) -> RunVerdict:
        verdict = verdict_of(tag)
        result.tested[tag] = verdict
        return verdict

    good = run(tags[0])
    if good.outcome != "ok":
        raise HarnessError(f"--good {tags[0]} did not run ({good.outcome}: {good.reason}); pick a good tag that runs")
    bad = run(tags[-1])
    if not differs(good, bad, strict_lines):
        result.last_good = tags[-1]
        return result
    low, high = 0, len(tags) - 1  # tags[low] matches good, tags[high] differs
    candidates = list(range(low + 1, high))
    while candidates:
        mid = candidates[len(candidates) // 2]
        verdict = run(tags[mid])
        if verdict.outcome == "error":
            result.skipped.append(tags[mid])
            candidates.remove(mid)
            continue
        if differs(good, verdict, strict_lines):
            high = mid
        else:
            low = mid
        candidates = [i for i in candidates if low < i < high]
    result.first_bad, result.last_good = tags[high], tags[low]
    return result
