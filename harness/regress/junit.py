"""JUnit XML for CI systems: one test case per sentinel of each checked baseline."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.regress.compare import Change, render_diff


def junit_xml(checks: list[dict], seconds: float) -> str:
    """`checks`: dicts with baseline (RunVerdict), current (RunVerdict), changes (list[Change]), seconds."""
    suites = ET.Element("testsuites", name="annotrace check")
    total = failures = errors = 0
    for check in checks:
        before, after, changes = check["baseline"], check["current"], check["changes"]
        suite = ET.SubElement(suites, "testsuite", name=f"{before.scenario}@{before.version}",
                              time=f"{check.get('seconds', 0.0):.1f}")
        cases = [s.ident for s in before.sentinels] or ["run"]
        run_level = [c for c in changes if not c.sentinel]
        suite_failures = suite_errors = 0
        for ident in cases:
            case = ET.SubElement(suite, "testcase", classname=f"{before.scenario}.{before.version}", name=ident)
            mine: list[Change] = run_level + [c for c in changes if c.sentinel == ident]
            failing = [c for c in mine if c.failing]
            if after.outcome == "error" and before.outcome != "error":
                error = ET.SubElement(case, "error", message=after.reason[:200])
                error.text = render_diff(before, after, mine)
                suite_errors += 1
            elif failing:
                failure = ET.SubElement(case, "failure", message="; ".join(c.describe() for c in failing)[:500])
                failure.text = render_diff(before, after, mine)
                suite_failures += 1
            notes = [c for c in mine if not c.failing]
            if notes:
                ET.SubElement(case, "system-out").text = "\n".join(c.describe() for c in notes)
        for ident in sorted({c.sentinel for c in changes if c.sentinel and c.sentinel not in cases}):
            case = ET.SubElement(suite, "testcase", classname=f"{before.scenario}.{before.version}", name=ident)
            failure = ET.SubElement(case, "failure", message="not in the baseline")
            failure.text = render_diff(before, after, [c for c in changes if c.sentinel == ident])
            suite_failures += 1
            cases.append(ident)
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(suite_failures))
        suite.set("errors", str(suite_errors))
        total += len(cases)
        failures += suite_failures
        errors += suite_errors
    suites.set("tests", str(total))
    suites.set("failures", str(failures))
    suites.set("errors", str(errors))
    suites.set("time", f"{seconds:.1f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_junit(path: Path, checks: list[dict], seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(checks, seconds))
