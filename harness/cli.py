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

SEED_SCENARIO = "seed-ctr-run"


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


def _run(scenario_name: str, args: argparse.Namespace) -> int:
    from harness.image.scenario import load_scenario
    from harness.pipeline import RunOptions, run_scenario
    from harness.report.stagetable import stage_table

    scenario = load_scenario(scenario_name)
    if args.max_passes < 1:
        raise HarnessError("--max-passes must be at least 1")
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
    )
    document = run_scenario(scenario, options)
    err.print(stage_table(document))
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


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--containerd", metavar="VERSION",
                        help="tag (v2.1.4), release line (v1.7), latest, main or commit; default: the scenario's pin")
    parser.add_argument("--patch", action="append", default=[], metavar="FILE",
                        help="unified diff to apply to containerd before the build (repeatable)")
    parser.add_argument("--keep-sandbox", action="store_true", help="leave the sandbox's temp dir for inspection")
    parser.add_argument("--registry-port", type=int, metavar="PORT",
                        help="loopback port for the local registry (default: a free one)")
    parser.add_argument("--backend", default="delve", choices=["delve", "state"],
                        help="how to watch containerd: delve (probes + localization) or state (stage map only)")
    parser.add_argument("--probe", action="append", default=[], metavar="[PROCESS:]REGEX",
                        help="also probe functions matching REGEX in ctr, containerd or both (repeatable)")
    parser.add_argument("--probe-only", action="store_true",
                        help="watch only the --probe patterns, not the default plan (refinement finds the rest)")
    parser.add_argument("--max-passes", type=int, default=4, metavar="N",
                        help="refinement passes at most (default 4)")
    parser.add_argument("--no-transcript", action="store_true", help="skip the delve terminal transcript")
    parser.add_argument("--json", action="store_true", help="print the result document on stdout")


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
