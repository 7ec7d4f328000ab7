"""What a matrix costs on a new machine and on the next run: cold and warm, side by side in one run.

Runs `annotrace matrix` twice with the same private caches: first empty (no
containerd builds, no Go build cache, no Go module cache: what a fresh machine has),
then again with what the first run left. Prints both wall times, the time spent
building and running, and the ratio. Needs root, like every run.

    python3 benchmarks/matrix_cost.py [--containerd v1.6,v1.7,v2.0,v2.1,v2.2,v2.3] [--scenario seed-ctr-run]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def _rmtree(path: Path) -> None:
    def writable(function, name, _exc):  # the Go module cache is read-only
        os.chmod(name, stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
        function(name)

    shutil.rmtree(path, onexc=writable) if sys.version_info >= (3, 12) else shutil.rmtree(path, onerror=writable)


def run_matrix(label: str, env: dict, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "harness.cli", "matrix", "--containerd", args.containerd,
               "--scenario", args.scenario, "--backend", args.backend, "--json"]
    print(f"[{label}] {' '.join(command[2:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.run(command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"matrix_cost: the {label} matrix failed with exit code {proc.returncode}")
    document = json.loads(proc.stdout)
    outcomes = [run["outcome"] for run in document["runs"]]
    return {"label": label, "wall_seconds": round(wall, 1), **{k: document["timing"][k] for k in
            ("build_seconds", "run_seconds", "builds_done", "builds_reused")}, "outcomes": outcomes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containerd", default="v1.6,v1.7,v2.0,v2.1,v2.2,v2.3")
    parser.add_argument("--scenario", default="seed-ctr-run")
    parser.add_argument("--backend", default="delve", choices=["delve", "state"])
    parser.add_argument("--keep", action="store_true", help="keep the private caches (printed) for inspection")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("matrix_cost: run as root (containerd, runc and overlay mounts need it)")
    work = Path(tempfile.mkdtemp(prefix="annotrace-matrix-cost-", dir="/var/tmp"))
    env = {**os.environ, "ANNOTRACE_CACHE": str(work / "cache"), "GOCACHE": str(work / "gocache"),
           "GOMODCACHE": str(work / "gomodcache"), "ANNOTRACE_RESULTS": str(work / "results")}
    try:
        rows = [run_matrix("cold", env, args), run_matrix("warm", env, args)]
    finally:
        if args.keep:
            print(f"caches kept in {work}", file=sys.stderr)
        else:
            _rmtree(work)
    cold, warm = rows
    ratio = round(cold["wall_seconds"] / warm["wall_seconds"], 1) if warm["wall_seconds"] else None
    if args.json:
        print(json.dumps({"versions": args.containerd.split(","), "scenario": args.scenario, "backend": args.backend,
                          "rows": rows, "cold_over_warm": ratio}, indent=2))
    else:
        print(f"matrix of {args.containerd} x {args.scenario} ({args.backend} backend), one run:")
        print(f"{'cache':<6} {'wall':>8} {'building':>9} {'running':>8} {'builds done':>12} {'reused':>7}")
        for row in rows:
            print(f"{row['label']:<6} {row['wall_seconds']:>7.1f}s {row['build_seconds']:>8.1f}s "
                  f"{row['run_seconds']:>7.1f}s {row['builds_done']:>12} {row['builds_reused']:>7}")
        print(f"cold / warm: {ratio}x; outcomes: cold {set(cold['outcomes'])}, warm {set(warm['outcomes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
