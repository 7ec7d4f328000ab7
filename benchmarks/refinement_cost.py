#!/usr/bin/env python3
"""What does finding a drop nobody planned for cost? Passes and wall time per planted case, and
warm `reproduce` now beside `reproduce` at an earlier commit, in one run.

Part 1, the planted suite (tests/fixtures/patches/planted/*.patch): each case runs once per plan
(default and empty) as a user runs it, `annotrace run SCENARIO --patch CASE --plan PLAN
--no-transcript --json`, on its patched build (built before anything is timed). The table gives
the named function, whether it is the planted one (read from the patch header, which annotrace
itself never reads), the number of passes and the wall time of the whole command.

Part 2, the seed: warm `annotrace reproduce --json` of this tree and of BASELINE_REF (a git
worktree of that commit, same build cache, same machine), interleaved --repeat times; medians and
the ratio now/then.

    python3 benchmarks/refinement_cost.py [--plans default,empty] [--cases a,b] [--repeat 5]
        [--baseline-ref f0f6a9d] [--out results/benchmarks/refinement-cost.txt] [--keep DIR]

--keep DIR keeps every run's results dir under DIR (else a temp dir, removed) and writes
DIR/planted-runs.json ({"<case>-<plan>": results dir}) for tests/fixtures/planted/record.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PLANTED = PROJECT / "tests" / "fixtures" / "patches" / "planted"
V2 = "github.com/containerd/containerd/v2/"


def header(patch: Path) -> dict[str, str]:
    return dict(re.findall(r"^planted-(\w+): (.*)$", patch.read_text(), re.M))


def annotrace(tree: Path, args: list[str], results: Path, timeout: float = 1800) -> tuple[float, dict | None, str]:
    env = {**os.environ, "ANNOTRACE_RESULTS": str(results)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=timeout)
    seconds = time.monotonic() - started
    try:
        document = json.loads(proc.stdout) if proc.returncode == 0 else None
    except json.JSONDecodeError:
        document = None
    return seconds, document, proc.stderr.strip().splitlines()[-1:][0] if proc.stderr.strip() else ""


def planted(plans: list[str], cases: list[str], results: Path, ran: dict[str, str]) -> list[str]:
    rows = ["| case | plan | named function | process | as planted | passes | wall s |",
            "|---|---|---|---|---|---|---|"]
    patches = [p for p in sorted(PLANTED.glob("*.patch")) if not cases or p.stem in cases]
    for patch in patches:  # builds first, untimed
        subprocess.run([sys.executable, "-m", "harness.cli", "build", "--containerd", "v2.1.4", "--patch", str(patch)],
                       cwd=PROJECT, check=True, capture_output=True)
    for patch in patches:
        want = header(patch)
        source, key = want["sentinel"].split("/", 1)
        for plan in plans:
            seconds, document, last = annotrace(PROJECT, ["run", want["scenario"], "--patch", str(patch), "--plan", plan,
                                                          "--no-transcript", "--json"], results)
            if document is None:
                rows.append(f"| {patch.stem} | {plan} | error: {last[:80]} | | no | | {seconds:.1f} |")
                continue
            ran[f"{patch.stem}-{plan}"] = document["results_dir"]
            sentinel = next(s for s in document["sentinels"] if s["source"] == source and s["key"] == key)
            drop = sentinel.get("drop") or {}
            named = drop.get("function", sentinel.get("verdict", "?"))
            ok = drop.get("function") == want["function"] and drop.get("process") == want["process"]
            rows.append(f"| {patch.stem} | {plan} | `{named.removeprefix(V2)}` | {drop.get('process', '-')} | "
                        f"{'yes' if ok else 'no'} | {len(document['probe']['passes'])} | {seconds:.1f} |")
            print(rows[-1], file=sys.stderr)
    return rows


def reproduce(baseline_ref: str, repeat: int, results: Path) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="annotrace-bench-") as scratch:
        then = Path(scratch) / "then"
        subprocess.run(["git", "worktree", "add", "--detach", str(then), baseline_ref], cwd=PROJECT, check=True,
                       capture_output=True)
        try:
            args = ["reproduce", "--json"]
            for tree in (PROJECT, then):  # warm-up: builds, delve, helpers, callee caches
                annotrace(tree, args, results)
            times: dict[str, list[float]] = {"now": [], "then": []}
            passes: dict[str, set[int]] = {"now": set(), "then": set()}
            for _ in range(repeat):
                for label, tree in (("now", PROJECT), ("then", then)):
                    seconds, document, last = annotrace(tree, args, results)
                    if document is None:
                        raise SystemExit(f"reproduce failed in {label} ({tree}): {last}")
                    times[label].append(seconds)
                    passes[label].add(len(document["probe"]["passes"]))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(then)], cwd=PROJECT, capture_output=True)
    now, then_median = statistics.median(times["now"]), statistics.median(times["then"])
    return ["| reproduce (seed, delve, warm) | median s | min s | max s | passes |", "|---|---|---|---|---|",
            f"| this tree | {now:.2f} | {min(times['now']):.2f} | {max(times['now']):.2f} | "
            f"{', '.join(map(str, sorted(passes['now'])))} |",
            f"| {baseline_ref} | {then_median:.2f} | {min(times['then']):.2f} | {max(times['then']):.2f} | "
            f"{', '.join(map(str, sorted(passes['then'])))} |",
            "", f"ratio this tree / {baseline_ref}: {now / then_median:.2f}x ({repeat} interleaved pairs)"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", default="default,empty")
    parser.add_argument("--cases", default="", help="planted cases to run (default: all)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-ref", default="f0f6a9d",
                        help="the commit to compare warm reproduce with (default: before the drop-finding work)")
    parser.add_argument("--skip-planted", action="store_true")
    parser.add_argument("--skip-reproduce", action="store_true")
    parser.add_argument("--out", default=str(PROJECT / "results" / "benchmarks" / "refinement-cost.txt"))
    parser.add_argument("--keep", default="", help="keep every run's results dir under this dir")
    args = parser.parse_args()
    ran: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="annotrace-bench-results-", dir="/var/tmp") as scratch:
        results = Path(args.keep).resolve() if args.keep else Path(scratch)
        results.mkdir(parents=True, exist_ok=True)
        lines = [f"# {' '.join(shlex.quote(a) for a in ['python3', 'benchmarks/refinement_cost.py', *sys.argv[1:]])}",
                 f"# {time.strftime('%Y-%m-%d %H:%M:%S')}, containerd v2.1.4, delve backend", ""]
        if not args.skip_planted:
            lines += planted([p for p in args.plans.split(",") if p], [c for c in args.cases.split(",") if c],
                             results, ran) + [""]
            if args.keep:
                (results / "planted-runs.json").write_text(json.dumps(ran, indent=1) + "\n")
        if not args.skip_reproduce:
            lines += reproduce(args.baseline_ref, args.repeat, results) + [""]
    text = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
