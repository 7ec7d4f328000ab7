"""What a containerd patch promises to carry into the spec, read from the patch's own header.

A fix in patches/containerd/ says, in the free text git apply ignores before the
first diff, which key prefixes it allows and which annotation sources it reads:

    annotrace-allow-prefixes: com.urunc.unikernel.
    annotrace-carried-sources: config-label index-descriptor manifest
    annotrace-probes: ctr:REGEX ...   (the fix's own functions, added to the delve plan)

The report then tells a sentinel stopped by the allow-list (by design) from one
dropped somewhere else, and security scenarios can assert that keys outside the
list never reach the runtime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FIELD = re.compile(r"^annotrace-(allow-prefixes|carried-sources|probes):\s*(.*)$")
DEFAULT_CARRIED = ("config-label", "index-descriptor", "manifest")


@dataclass(frozen=True)
class AllowList:
    prefixes: tuple[str, ...]
    carried_sources: tuple[str, ...]
    patch: str  # the patch file that declared it
    probes: tuple[str, ...] = ()  # [process:]regex of the fix's functions, for the delve plan

    def status(self, source: str, key: str) -> str:
        """allowed | blocked (key outside the list) | not carried (a source the patch does not read)."""
        if source not in self.carried_sources:
            return "not carried"
        return "allowed" if any(p and key.startswith(p) for p in self.prefixes) else "blocked"

    def to_dict(self) -> dict:
        return {"prefixes": list(self.prefixes), "carried_sources": list(self.carried_sources), "patch": self.patch,
                "probes": list(self.probes)}


def read_allow_list(patches: list[Path] | tuple[Path, ...]) -> AllowList | None:
    """The allow-list declared by the first patch that declares one, else None."""
    for patch in patches:
        fields: dict[str, tuple[str, ...]] = {}
        for line in Path(patch).read_text(errors="replace").splitlines():
            if line.startswith(("--- ", "diff ")):
                break  # the header ends where the diff begins
            if match := _FIELD.match(line.strip()):
                fields[match.group(1)] = tuple(match.group(2).split())
        if "allow-prefixes" in fields:
            return AllowList(fields["allow-prefixes"], fields.get("carried-sources", DEFAULT_CARRIED), Path(patch).name,
                             fields.get("probes", ()))
    return None


def mark_sentinels(sentinel_docs: list[dict], allow: AllowList | None) -> None:
    """Add `allow_list` (allowed | blocked | not carried) to each sentinel of a run document."""
    if allow is None:
        return
    for doc in sentinel_docs:
        doc["allow_list"] = allow.status(doc["source"], doc["key"])
