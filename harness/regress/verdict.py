"""The part of a run that a regression check compares: per sentinel, the stages and the drop point.

Sentinel values carry a fresh nonce each run, so sentinels are matched by
(source, key). Function names and files are kept in containerd's v2 layout
(`core/images.Config`, `core/images/image.go`) so a verdict from v1.7 and one from
v2.1 compare directly (harness.versions.canonical_function).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from harness.errors import Unsupported
from harness.versions import canonical_function

OUTCOMES = ("ok", "unsupported", "error")


@dataclass(frozen=True)
class SentinelVerdict:
    source: str
    key: str
    stages: dict[str, bool | None]
    furthest_stage: str | None
    reached_runtime: bool
    status: str | None = None  # localization status (delve backend); None for --backend state
    drop_function: str | None = None  # canonical: v2 layout, module-relative (core/images.Config)
    drop_file: str | None = None  # as in that version's source, module-relative (v1: images/image.go)
    drop_line: int | None = None

    @property
    def ident(self) -> str:
        return f"{self.source}:{self.key}"

    @property
    def drop_at(self) -> str:
        if not self.drop_function:
            return "-"
        where = f"{self.drop_file}:{self.drop_line}" if self.drop_file else "?"
        return f"{self.drop_function} ({where})"

    @classmethod
    def from_dict(cls, data: dict) -> SentinelVerdict:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class RunVerdict:
    """One scenario on one containerd version, as compared by check, matrix and bisect."""

    scenario: str
    version: str
    module: str
    backend: str
    outcome: str = "ok"  # ok | unsupported (the version cannot do what the scenario asks) | error
    reason: str = ""  # for unsupported and error: the one-line message
    patches: tuple[str, ...] = ()
    sentinels: tuple[SentinelVerdict, ...] = field(default_factory=tuple)

    def by_ident(self) -> dict[str, SentinelVerdict]:
        return {s.ident: s for s in self.sentinels}

    def to_dict(self) -> dict:
        data = asdict(self)
        data["patches"] = list(self.patches)
        data["sentinels"] = [asdict(s) for s in self.sentinels]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunVerdict:
        return cls(
            scenario=data["scenario"], version=data["version"], module=data.get("module", ""),
            backend=data.get("backend", "delve"), outcome=data.get("outcome", "ok"), reason=data.get("reason", ""),
            patches=tuple(data.get("patches", ())),
            sentinels=tuple(SentinelVerdict.from_dict(s) for s in data.get("sentinels", ())),
        )


def sentinel_verdict(doc: dict, module: str) -> SentinelVerdict:
    """From one entry of a run document's `sentinels` list."""
    drop = doc.get("drop") or {}
    return SentinelVerdict(
        source=doc["source"],
        key=doc["key"],
        stages=dict(doc["stages"]),
        furthest_stage=doc.get("furthest_stage"),
        reached_runtime=bool(doc.get("reached_runtime")),
        status=doc.get("verdict"),
        drop_function=canonical_function(drop["function"]) if drop.get("function") else None,
        drop_file=drop.get("file"),
        drop_line=drop.get("line"),
    )


def run_verdict(document: dict) -> RunVerdict:
    """From a run's --json document (result.json)."""
    containerd = document["containerd"]
    module = containerd.get("module", "")
    return RunVerdict(
        scenario=document["scenario"],
        version=containerd["version"],
        module=module,
        backend=document.get("backend", "delve"),
        patches=tuple(p["name"] if isinstance(p, dict) else str(p) for p in containerd.get("patches", ())),
        sentinels=tuple(sentinel_verdict(s, module) for s in document["sentinels"]),
    )


def failed_verdict(scenario: str, version: str, module: str, backend: str, error: Exception,
                   patches: tuple[str, ...] = ()) -> RunVerdict:
    """A run that could not produce a stage map: `unsupported` when the version cannot do it, else `error`."""
    outcome = "unsupported" if isinstance(error, Unsupported) else "error"
    return RunVerdict(scenario, version, module, backend, outcome, " ".join(str(error).split()), patches)
