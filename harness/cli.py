"""annotrace command line. Human output on stderr; `--json` puts one document on stdout.

Exit codes: 0 the run completed (whatever the verdict), 1 a regression check
found a change, 2 bad input or environment (one clear line on stderr).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from harness.console import err
from harness.errors import HarnessError
from harness.probes import BACKENDS
from harness.probes.plan import PLANS

DEFAULT_MAX_PASSES = 8
SEED_SCENARIO = "seed-ctr-run"
# The matrix's default versions: every release line, the newest tag, and main.
DEFAULT_MATRIX = ("v1.6", "v1.7", "v2.0", "v2.1", "v2.2", "v2.3", "v2.4", "main")


def _sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    # Turn SIGTERM into the same path as Ctrl-C so context managers tear the sandbox down.
    raise KeyboardInterrupt


def _emit(document: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")


def cmd_build(args: argparse.Namespace) -> int:
    from harness.toolchain import build_containerd
    from harness.toolchain.tools import delve_version, install_delve

    build = build_containerd(args.containerd, [Path(p) for p in args.patch], toolchain=args.toolchain)
    dlv = install_delve()
    document = {**build.manifest, "build_dir": str(build.directory), "reused": build.reused,
                "delve": {"path": str(dlv), "version": delve_version(dlv)}}
    if not args.json:
        err.print(f"containerd {build.version} ({build.module}) binaries in {build.bin_dir}"
                  f"{' (reused)' if build.reused else ''}; delve {document['delve']['version']}")
    _emit(document, args.json)
    return 0


def _check_max_passes(args: argparse.Namespace) -> None:
    if args.max_passes < 1:
        raise HarnessError("--max-passes must be at least 1")


def _run(scenario_name: str, args: argparse.Namespace) -> int:
    from harness.image.scenario import load_scenario
    from harness.pipeline import RunOptions, run_scenario
    from harness.report.stagetable import stage_table

    scenario = load_scenario(scenario_name)
    _check_max_passes(args)
    options = RunOptions(
        version=args.containerd,
        patches=tuple(Path(p) for p in args.patch),
        keep_sandbox=args.keep_sandbox,
        registry_port=args.registry_port,
        backend=args.backend,
        probes=tuple(args.probe),
        probe_only=args.probe_only,
        max_passes=args.max_passes,
        transcript=not args.no_transcript,
        plan=args.plan,
    )
    unpatched = None
    if args.compare_unpatched:
        if not options.patches:
            raise HarnessError("--compare-unpatched needs at least one --patch FILE")
        for patch in options.patches:  # fail now, not after the unpatched run
            if not patch.is_file():
                raise HarnessError(f"patch {patch} does not exist: give the path of a unified diff (see patches/)")
        from dataclasses import replace

        err.print("[bold]unpatched run first, for the before/after comparison[/]")
        unpatched = run_scenario(scenario, replace(options, patches=()))
        err.print(stage_table(unpatched))
        err.print(f"[bold]now with {', '.join(p.name for p in options.patches)}[/]")
    document = run_scenario(scenario, options)
    err.print(stage_table(document))
    if unpatched is not None:
        from harness.regress.beforeafter import before_after, write_before_after

        results_dir = Path(document["results_dir"])
        if not results_dir.is_absolute():
            results_dir = Path.cwd() / results_dir
        write_before_after(results_dir, document, before_after(unpatched, document))
        for line in document["compare_unpatched"]["changes"]:
            err.print(f"  {line['sentinel']}: {line['kind']}: {line['before']} -> {line['after']}")
    err.print(f"results: {document['results_dir']}")
    _emit(document, args.json)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return _run(args.scenario, args)


def cmd_reproduce(args: argparse.Namespace) -> int:
    return _run(SEED_SCENARIO, args)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.investigate import rerender

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise HarnessError(f"{run_dir} is not a directory: give a run's results dir (results/runs/<id>)")
    document = rerender(run_dir)
    err.print(f"report: {run_dir / 'report.md'}")
    _emit(document, args.json)
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from harness.image.scenario import load_scenario
    from harness.paths import scenarios_dir

    listed = []
    for path in sorted(scenarios_dir().glob("*.toml")):
        scenario = load_scenario(str(path))
        listed.append({"name": scenario.name, "path": str(path), "description": scenario.description})
        if not args.json:
            err.print(f"[bold]{scenario.name}[/]  {scenario.description}")
    _emit({"scenarios": listed}, args.json)
    return 0


def _scenarios(names: list[str]) -> list:
    from harness.image.scenario import load_scenario

    return [load_scenario(name) for name in (names or [SEED_SCENARIO])]


def _run_entry(evaluation) -> dict:
    """One entry of `runs`: the run's --json document (contract), plus outcome and timing."""
    verdict = evaluation.verdict
    document = evaluation.document or {
        "containerd": {"version": verdict.version, "module": verdict.module, "patches": list(verdict.patches)},
        "scenario": verdict.scenario, "backend": verdict.backend, "sentinels": [], "results_dir": None,
    }
    return {**document, "requested": evaluation.requested, "outcome": verdict.outcome, "reason": verdict.reason,
            "timing": evaluation.timing(), "verdict": verdict.to_dict()}


def _command_line() -> str:
    import shlex

    return "annotrace " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def cmd_matrix(args: argparse.Namespace) -> int:
    import time

    from harness.paths import results_root
    from harness.pipeline import require_root
    from harness.regress.baseline import write_baseline
    from harness.regress.matrix import matrix_table, new_results_dir, parse_versions, timing, write_matrix
    from harness.regress.runner import evaluate

    require_root()
    _check_max_passes(args)
    versions = parse_versions(args.containerd)
    scenarios = _scenarios(args.scenario)
    patches = tuple(Path(p) for p in args.patch)
    if args.write_baselines and patches:
        raise HarnessError("--write-baselines records unpatched builds only: drop --patch")
    started = time.monotonic()
    evaluations = [evaluate(scenario, version, args.backend, patches, args.max_passes)
                   for scenario in scenarios for version in versions]
    document = {
        "command": _command_line(),
        "backend": args.backend,
        "scenarios": [s.name for s in scenarios],
        "versions": list(versions),
        "runs": [_run_entry(e) for e in evaluations],
        "timing": timing(evaluations, time.monotonic() - started),
    }
    out_dir = new_results_dir(results_root(), "matrix")
    document["results_dir"] = str(out_dir)
    write_matrix(out_dir, evaluations, document)
    if args.write_baselines:
        from harness.toolchain.tools import tool_versions

        for evaluation in evaluations:
            if evaluation.verdict.outcome == "error":
                err.print(f"[yellow]no baseline for {evaluation.requested}: {evaluation.verdict.reason}[/]")
                continue
            tools = (evaluation.document or {}).get("tools") or tool_versions(None)
            path = write_baseline(Path(args.write_baselines), evaluation.verdict, document["command"], tools)
            err.print(f"baseline: {path}")
    err.print(matrix_table(evaluations))
    t = document["timing"]
    err.print(f"matrix: {len(evaluations)} runs in {t['wall_seconds']} s ({t['cache']} cache: "
              f"{t['builds_done']} builds done, {t['builds_reused']} reused; {t['build_seconds']} s building, "
              f"{t['run_seconds']} s running); saved in {out_dir}")
    _emit(document, args.json)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import time

    from harness.image.scenario import load_scenario
    from harness.paths import results_root
    from harness.pipeline import require_root
    from harness.regress.baseline import load_baselines
    from harness.regress.compare import compare_runs, render_diff
    from harness.regress.junit import write_junit
    from harness.regress.matrix import new_results_dir, parse_versions
    from harness.regress.runner import evaluate

    require_root()
    _check_max_passes(args)
    versions = parse_versions(args.containerd) if args.containerd else ()
    baselines = load_baselines(Path(args.baseline), versions, tuple(args.scenario))
    scenarios = {b.verdict.scenario: load_scenario(b.verdict.scenario) for b in baselines}
    patches = tuple(Path(p) for p in args.patch)
    started = time.monotonic()
    checks = []
    for baseline in baselines:
        before = baseline.verdict
        evaluation = evaluate(scenarios[before.scenario], before.version, before.backend, patches, args.max_passes)
        changes = compare_runs(before, evaluation.verdict, strict_lines=args.strict_lines)
        checks.append({"baseline": before, "current": evaluation.verdict, "changes": changes,
                       "seconds": evaluation.build_seconds + evaluation.run_seconds, "path": baseline.path,
                       "results_dir": evaluation.results_dir})
        err.print(render_diff(before, evaluation.verdict, changes))
    seconds = time.monotonic() - started
    out_dir = new_results_dir(results_root(), "check")
    junit = Path(args.junit) if args.junit else out_dir / "junit.xml"
    write_junit(junit, checks, seconds)
    failing = [c for check in checks for c in check["changes"] if c.failing]
    document = {
        "command": _command_line(),
        "baseline": args.baseline,
        "passed": not failing,
        "checks": [{"baseline": str(c["path"]), "scenario": c["baseline"].scenario, "version": c["baseline"].version,
                    "patches": list(c["current"].patches), "results_dir": c["results_dir"],
                    "changes": [x.to_dict() for x in c["changes"]], "verdict": c["current"].to_dict()}
                   for c in checks],
        "junit": str(junit),
        "seconds": round(seconds, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "check.json").write_text(json.dumps(document, indent=2) + "\n")
    if failing:
        err.print(f"[bold red]check: {len(failing)} change(s) against {args.baseline}[/] (JUnit: {junit})")
    else:
        err.print(f"[bold green]check: {len(checks)} baseline(s) match[/] (JUnit: {junit})")
    _emit(document, args.json)
    return 1 if failing else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.compare import compare_backends, markdown
    from harness.image.scenario import load_scenario
    from harness.paths import results_root
    from harness.pipeline import require_root
    from harness.probes import PROBE_BACKENDS
    from harness.regress.matrix import new_results_dir
    from harness.toolchain.resolve import resolve_version
    from harness.versions import DEFAULT_VERSION

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in PROBE_BACKENDS]
    if unknown or len(set(backends)) < 2:
        raise HarnessError(f"--backends needs two or more of {','.join(PROBE_BACKENDS)} "
                           f"(got {args.backends!r}); e.g. --backends delve,gdb,gotrace")
    require_root()
    _check_max_passes(args)
    scenario = load_scenario(args.scenario)
    version = resolve_version(args.containerd or scenario.containerd or DEFAULT_VERSION).version
    patches = tuple(Path(p) for p in args.patch)
    for patch in patches:
        if not patch.is_file():
            raise HarnessError(f"patch file {patch} does not exist")
    document = compare_backends(scenario, version, list(dict.fromkeys(backends)), patches, args.max_passes)
    document["command"] = _command_line()
    out_dir = new_results_dir(results_root(), f"compare-{scenario.name}")
    out_dir.mkdir(parents=True)
    document["results_dir"] = str(out_dir)
    (out_dir / "compare.json").write_text(json.dumps(document, indent=2) + "\n")
    text = markdown(document)
    (out_dir / "compare.md").write_text(text)
    (out_dir / "COMMAND").write_text(document["command"] + "\n")
    err.print(text)
    err.print(f"compare: {out_dir}")
    _emit(document, args.json)
    agree = all(v.get("agrees") for v in document["agreement"]["backends"].values())
    return 0 if agree else 1


def cmd_engines(args: argparse.Namespace) -> int:
    from harness.engines import ENGINES, run_engines, table
    from harness.image.scenario import load_scenario
    from harness.paths import results_root
    from harness.pipeline import require_root
    from harness.regress.matrix import new_results_dir
    from harness.toolchain import build_containerd
    from harness.versions import DEFAULT_VERSION

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise HarnessError(f"unknown engine(s) {', '.join(unknown) or '(none)'}: use some of {','.join(ENGINES)}")
    require_root()
    scenario = load_scenario(args.scenario)
    build = build_containerd(args.containerd or scenario.containerd or DEFAULT_VERSION)
    out_dir = new_results_dir(results_root(), f"engines-{scenario.name}")
    out_dir.mkdir(parents=True)
    results = run_engines(list(dict.fromkeys(engines)), build, scenario, out_dir, probe=not args.no_probe)
    text = table(results)
    document = {"command": _command_line(), "scenario": scenario.name, "containerd": build.version,
                "engines": [r.to_dict() for r in results], "results_dir": str(out_dir)}
    (out_dir / "engines.json").write_text(json.dumps(document, indent=2) + "\n")
    (out_dir / "engines.md").write_text(f"# {scenario.name}: which annotations reach the runtime, per engine\n\n"
                                        + text + "\nyes: in the config.json the OCI runtime received; "
                                        "no (last: S): absent there, last seen at stage S; -: not a source of "
                                        "this engine.\n")
    (out_dir / "COMMAND").write_text(document["command"] + "\n")
    err.print(text)
    err.print(f"engines: {out_dir}")
    _emit(document, args.json)
    return 0


def cmd_bisect(args: argparse.Namespace) -> int:
    from harness.image.scenario import load_scenario
    from harness.pipeline import require_root
    from harness.regress.bisect import bisect, proxy_tags, tags_between
    from harness.regress.runner import evaluate

    require_root()
    _check_max_passes(args)
    scenario = load_scenario(args.scenario)
    tags = tags_between(args.good, args.bad, proxy_tags(args.good, args.bad), prereleases=args.prereleases)
    err.print(f"bisect: {len(tags)} tags from {args.good} to {args.bad}; at most about "
              f"{max(1, (len(tags) - 2).bit_length()) + 2} runs")
    evaluations = {}

    def verdict_of(tag: str):
        evaluation = evaluate(scenario, tag, args.backend, (), args.max_passes)
        evaluations[tag] = evaluation
        err.print(f"bisect: {tag}: {evaluation.verdict.outcome}, "
                  f"{'built' if evaluation.build_reused is False else 'build reused'}")
        return evaluation.verdict

    result = bisect(tags, verdict_of, strict_lines=args.strict_lines)
    builds_done = sum(1 for e in evaluations.values() if e.build_reused is False)
    document = {"command": _command_line(), "scenario": scenario.name, "backend": args.backend, **result.to_dict(),
                "builds_done": builds_done, "builds_reused": sum(1 for e in evaluations.values() if e.build_reused),
                "runs": [_run_entry(e) for e in evaluations.values()]}
    if result.first_bad is None:
        err.print(f"bisect: {args.good} and {args.bad} agree on every verdict; nothing to find "
                  f"({len(result.tested)} runs, {builds_done} builds)")
    else:
        from harness.regress.compare import compare_runs, render_diff

        before, after = result.tested[result.last_good], result.tested[result.first_bad]
        err.print(render_diff(before, after, compare_runs(before, after, args.strict_lines)))
        err.print(f"[bold]bisect: first tag whose verdict differs from {args.good}: {result.first_bad}[/] "
                  f"(last matching: {result.last_good}; {len(result.tested)} runs, {builds_done} builds, "
                  f"{document['builds_reused']} reused from the cache)")
        unsure = [t for t in result.skipped if tags.index(result.last_good) < tags.index(t) < tags.index(result.first_bad)]
        if unsure:
            err.print(f"[yellow]skipped (could not run) between them: {', '.join(unsure)}[/]")
    _emit(document, args.json)
    return 0


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--containerd", metavar="VERSION",
                        help="tag (v2.1.4), release line (v1.7), latest, main or commit; default: the scenario's pin")
    parser.add_argument("--patch", action="append", default=[], metavar="FILE",
                        help="unified diff to apply to containerd before the build (repeatable)")
    parser.add_argument("--compare-unpatched", action="store_true",
                        help="with --patch: run the unpatched build first and report before/after side by side")
    parser.add_argument("--keep-sandbox", action="store_true", help="leave the sandbox's temp dir for inspection")
    parser.add_argument("--registry-port", type=int, metavar="PORT",
                        help="loopback port for the local registry (default: a free one)")
    parser.add_argument("--backend", default="delve", choices=list(BACKENDS),
                        help="how to watch containerd: delve, gdb or gotrace (probes + localization), "
                             "or state (stage map only)")
    parser.add_argument("--probe", action="append", default=[], metavar="[PROCESS:]REGEX",
                        help="also probe functions matching REGEX in ctr, containerd, containerd-shim-runc-v2 "
                             "or all of them (repeatable)")
    parser.add_argument("--probe-only", action="store_true",
                        help="watch only the --probe patterns, not the default plan (refinement finds the rest)")
    parser.add_argument("--plan", default="default", choices=list(PLANS),
                        help="default: the version table's plan; empty: only where values enter each process "
                             "and the runtime sink (refinement finds the rest)")
    parser.add_argument("--max-passes", type=int, default=DEFAULT_MAX_PASSES, metavar="N",
                        help=f"refinement passes at most (default {DEFAULT_MAX_PASSES})")
    parser.add_argument("--no-transcript", action="store_true", help="skip the delve terminal transcript")
    parser.add_argument("--json", action="store_true", help="print the result document on stdout")


def _add_regress_options(parser: argparse.ArgumentParser, single: bool = False,
                         scenario_help: str = f"scenario name or .toml path (repeatable; default {SEED_SCENARIO})") -> None:
    if single:
        parser.add_argument("--scenario", required=True, help="scenario name or .toml path")
    else:
        parser.add_argument("--scenario", action="append", default=[], help=scenario_help)
    parser.add_argument("--backend", default="delve", choices=list(BACKENDS),
                        help="delve, gdb or gotrace: stage map and drop point; state: stage map only (faster)")
    parser.add_argument("--max-passes", type=int, default=DEFAULT_MAX_PASSES, metavar="N",
                        help=f"refinement passes at most (default {DEFAULT_MAX_PASSES})")
    parser.add_argument("--json", action="store_true", help="print one document on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="annotrace", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build containerd with debug info (cached) and the pinned delve")
    build.add_argument("--containerd", required=True, metavar="VERSION",
                       help="tag (v2.1.4), release line (v1.7), latest, main or commit")
    build.add_argument("--patch", action="append", default=[], metavar="FILE", help="diff to apply (repeatable)")
    build.add_argument("--toolchain", default="auto",
                       help="Go toolchain: auto (installed Go, then fallbacks), local, or e.g. go1.22.12")
    build.add_argument("--json", action="store_true", help="print the build manifest on stdout")
    build.set_defaults(func=cmd_build)

    run = commands.add_parser("run", help="run a scenario and print its stage map")
    run.add_argument("scenario", help="a scenario name from scenarios/ or a path to a .toml file")
    _add_run_options(run)
    run.set_defaults(func=cmd_run)

    reproduce = commands.add_parser("reproduce", help=f"run the seed investigation's scenario ({SEED_SCENARIO})")
    _add_run_options(reproduce)
    reproduce.set_defaults(func=cmd_reproduce)

    report = commands.add_parser("report", help="re-render a run's report and graph from its saved events")
    report.add_argument("run_dir", help="the run's results dir (results/runs/<id>)")
    report.add_argument("--json", action="store_true", help="print the recomputed document on stdout")
    report.set_defaults(func=cmd_report)

    matrix = commands.add_parser("matrix", help="run scenarios on several containerd versions and tabulate the verdicts")
    matrix.add_argument("--containerd", default=",".join(DEFAULT_MATRIX), metavar="V1,V2,...",
                        help=f"versions: tags, release lines, latest, main (default {','.join(DEFAULT_MATRIX)})")
    _add_regress_options(matrix)
    matrix.add_argument("--patch", action="append", default=[], metavar="FILE", help="diff to apply to every build")
    matrix.add_argument("--write-baselines", metavar="DIR", help="also write each verdict as DIR/<scenario>/<version>.json")
    matrix.set_defaults(func=cmd_matrix)

    check = commands.add_parser("check", help="rerun committed baselines; exit 1 when a verdict changed")
    check.add_argument("--baseline", default="results/baselines", metavar="DIR",
                       help="dir of <scenario>/<version>.json baselines (default results/baselines)")
    check.add_argument("--containerd", metavar="V1,V2,...", help="only the baselines of these exact versions")
    check.add_argument("--patch", action="append", default=[], metavar="FILE",
                       help="apply this diff before building (to see whether a change moves a verdict)")
    check.add_argument("--junit", metavar="FILE", help="where to write JUnit XML (default: in the check's results dir)")
    check.add_argument("--strict-lines", action="store_true",
                       help="also fail when a drop stays in its function but moves to another line")
    _add_regress_options(check, scenario_help="only baselines of this scenario (repeatable)")
    check.set_defaults(func=cmd_check)

    bisect = commands.add_parser("bisect", help="find the first tag whose verdict differs from a good tag's")
    bisect.add_argument("--good", required=True, metavar="TAG", help="older tag (its verdict is the reference)")
    bisect.add_argument("--bad", required=True, metavar="TAG", help="newer tag (its verdict differs)")
    bisect.add_argument("--prereleases", action="store_true", help="also walk -rc/-beta tags")
    bisect.add_argument("--strict-lines", action="store_true",
                        help="also count a drop that moved to another line of the same function as a difference")
    _add_regress_options(bisect, single=True)
    bisect.set_defaults(func=cmd_bisect)

    compare = commands.add_parser("compare", help="run one scenario under several probe backends; "
                                  "exit 1 when their drop points, verdicts or stage maps differ")
    compare.add_argument("scenario", nargs="?", default=SEED_SCENARIO,
                         help=f"scenario name or .toml path (default {SEED_SCENARIO})")
    compare.add_argument("--backends", default="delve,gdb,gotrace", metavar="B1,B2,...",
                         help="probe backends to run, the first is the reference (default delve,gdb,gotrace)")
    compare.add_argument("--containerd", metavar="VERSION", help="default: the scenario's pin")
    compare.add_argument("--patch", action="append", default=[], metavar="FILE", help="diff to apply (repeatable)")
    compare.add_argument("--max-passes", type=int, default=DEFAULT_MAX_PASSES, metavar="N",
                         help=f"refinement passes at most (default {DEFAULT_MAX_PASSES})")
    compare.add_argument("--json", action="store_true", help="print the comparison document on stdout")
    compare.set_defaults(func=cmd_compare)

    engines = commands.add_parser("engines", help="run one image through ctr, CRI (crictl), nerdctl, podman and docker; "
                                  "print which annotation sources reach the runtime")
    engines.add_argument("--scenario", default=SEED_SCENARIO, help=f"scenario name or .toml path (default {SEED_SCENARIO})")
    engines.add_argument("--engines", default="ctr,cri,cri-urunc,nerdctl,podman,docker", metavar="E1,E2,...",
                         help="which engines (default ctr,cri,cri-urunc,nerdctl,podman,docker)")
    engines.add_argument("--containerd", metavar="VERSION", help="containerd for ctr, CRI and nerdctl (default: the scenario's pin)")
    engines.add_argument("--no-probe", action="store_true",
                         help="skip delve on the CRI path (by default it localizes where the image's annotations stop)")
    engines.add_argument("--json", action="store_true", help="print the engines document on stdout")
    engines.set_defaults(func=cmd_engines)

    scenarios = commands.add_parser("scenarios", help="list the scenarios in scenarios/")
    scenarios.add_argument("--json", action="store_true")
    scenarios.set_defaults(func=cmd_scenarios)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        return args.func(args)
    except HarnessError as exc:
        sys.stderr.write(f"annotrace: error: {' '.join(str(exc).split())}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("annotrace: interrupted; the sandbox was torn down\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
