"""Made-up events for unit tests: a pass's invocations on one goroutine, nested by stack."""

from __future__ import annotations

from harness.probes.events import Event, Frame, Sighting, Unreadable

V = "qemu-atr-abcdef00-runtime-flag"


class Run:
    """Events of one made-up pass: `enter` and `leave` invocations on one goroutine, nested by stack."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.stack: list[str] = []

    def _event(self, kind: str, process: str, sightings: list[Sighting], unreadable: list[Unreadable],
               result_types: list[str], captured: list[str]) -> Event:
        frames = [Frame(f, "f.go", 1) for f in reversed(self.stack)]
        event = Event(len(self.events) + 1, process, kind, self.stack[-1], "f.go", 1, 1, frames, sightings, unreadable,
                      result_types, captured)
        self.events.append(event)
        return event

    def enter(self, function: str, *sightings: Sighting, process: str = "ctr",
              unreadable: list[Unreadable] | None = None) -> None:
        self.stack.append(function)
        self._event("call", process, list(sightings), unreadable or [], [], [])

    def leave(self, *sightings: Sighting, process: str = "ctr", results: tuple[str, ...] = ("error",),
              captured: tuple[str, ...] = (), unreadable: list[Unreadable] | None = None) -> None:
        self._event("return", process, list(sightings), unreadable or [], list(results), list(captured))
        self.stack.pop()


def arg(path: str, value: str = V, match: str = "exact", closures: tuple[str, ...] = ()) -> Sighting:
    return Sighting(value, "argument", path, match, "" if match == "exact" else value.upper(), closures)


def local(path: str) -> Sighting:
    return Sighting(V, "local", path)


def ret(path: str, match: str = "exact") -> Sighting:
    return Sighting(V, "return", path, match, "" if match == "exact" else V.upper())


def captured(path: str) -> Sighting:
    return Sighting(V, "captured", path)
