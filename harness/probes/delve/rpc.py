"""A thin typed client for delve's JSON-RPC API v2 (service/rpc2 in delve).

One method per remote call, named after it, no interpretation: what the results
mean is decided in backend.py. The transport is Go's net/rpc/jsonrpc: a stream of
JSON objects on a socket, `{"method": "RPCServer.X", "params": [args], "id": n}`.
"""

from __future__ import annotations

import base64
import codecs
import itertools
import json
import socket
import threading
from dataclasses import asdict, dataclass
from typing import Any


MEMORY_CHUNK = 1 << 16  # rpc2.ExamineMemoryLengthLimit


class DelveRPCError(Exception):
    """delve answered a call with an error, or the connection broke."""


@dataclass(frozen=True)
class LoadConfig:
    """How much of a variable delve loads (api.LoadConfig)."""

    FollowPointers: bool = True
    MaxVariableRecurse: int = 3
    MaxStringLen: int = 512
    MaxArrayValues: int = 64
    MaxStructFields: int = -1

    def to_json(self) -> dict:
        return asdict(self)


class DelveClient:
    """One connection to a headless delve (`--listen unix:PATH` or `host:port`)."""

    def __init__(self, address: str, timeout: float | None = None) -> None:
        if address.startswith("unix:"):
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.connect(address.removeprefix("unix:"))
        else:
            host, port = address.rsplit(":", 1)
            self._sock = socket.create_connection((host, int(port)))
        self._sock.settimeout(timeout)
        self._ids = itertools.count(1)
        self._buffer = ""
        self._decoder = json.JSONDecoder()
        # Incremental: a UTF-8 character split across two recv() chunks stays whole.
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._lock = threading.Lock()

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def call(self, method: str, args: dict) -> dict:
        with self._lock:
            request_id = next(self._ids)
            payload = json.dumps({"method": f"RPCServer.{method}", "params": [args], "id": request_id})
            try:
                self._sock.sendall(payload.encode())
                response = self._read()
            except OSError as exc:
                raise DelveRPCError(f"{method}: connection to delve failed: {exc}") from exc
        if response.get("error"):
            raise DelveRPCError(f"{method}: {response['error']}")
        return response.get("result") or {}

    def _read(self) -> dict:
        while True:
            stripped = self._buffer.lstrip()
            if stripped:
                try:
                    document, end = self._decoder.raw_decode(stripped)
                    self._buffer = stripped[end:]
                    return document
                except json.JSONDecodeError:
                    pass
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                raise DelveRPCError("delve closed the connection")
            self._buffer += self._utf8.decode(chunk)

    # The calls, one each (see delve's service/rpc2/server.go for their arguments).
    def get_version(self) -> dict:
        return self.call("GetVersion", {})

    def state(self, non_blocking: bool = True) -> dict:
        return self.call("State", {"NonBlocking": non_blocking})["State"]

    def list_functions(self, filter_regex: str, follow_calls: int = 0) -> list[str]:
        return self.call("ListFunctions", {"Filter": filter_regex, "FollowCalls": follow_calls}).get("Funcs") or []

    def function_return_locations(self, function: str) -> list[int]:
        return self.call("FunctionReturnLocations", {"FnName": function}).get("Addrs") or []

    def create_breakpoint(self, breakpoint: dict) -> dict:
        args = {"Breakpoint": breakpoint, "LocExpr": "", "SubstitutePathRules": None, "Suspended": False}
        return self.call("CreateBreakpoint", args)["Breakpoint"]

    def clear_breakpoint(self, breakpoint_id: int) -> dict:
        return self.call("ClearBreakpoint", {"Id": breakpoint_id}).get("Breakpoint") or {}

    def continue_(self, return_values: LoadConfig | None = None) -> dict:
        command: dict[str, Any] = {"name": "continue"}
        if return_values is not None:
            command["ReturnInfoLoadConfig"] = return_values.to_json()
        return self.call("Command", command)["State"]

    def halt(self) -> dict:
        return self.call("Command", {"name": "halt"})["State"]

    def eval(self, goroutine: int, frame: int, expression: str, cfg: LoadConfig) -> dict:
        args = {"Scope": {"GoroutineID": goroutine, "Frame": frame}, "Expr": expression, "Cfg": cfg.to_json()}
        return self.call("Eval", args)["Variable"]

    def examine_memory(self, address: int, length: int) -> bytes:
        """Raw memory of the target (delve refuses more than MEMORY_CHUNK bytes per call)."""
        data = self.call("ExamineMemory", {"Address": address, "Length": length}).get("Mem") or ""
        return base64.b64decode(data)

    def detach(self, kill: bool) -> None:
        self.call("Detach", {"Kill": kill})
