"""CI gates on a finished run: minimum accuracy per row, an expected verdict, a cost ceiling, a minimum fragility.

A gate is checked after the run has written its outputs, so a failing build still
leaves the report to look at. Each gate becomes one JUnit test case, so CI systems
(GitHub Actions, GitLab, Jenkins) show which gate failed and by how much.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from advisor.cache import atomic_write_bytes
from advisor.results import Results


class GateSpecError(ValueError):
    """A gate option that cannot be read (bad input: names the option and the expected form)."""


@dataclass(frozen=True)
class Gates:
    fail_under: tuple[tuple[str, float], ...] = ()  # (row, minimum accuracy)
    expect: str | None = None  # the verdict the run must reach
    max_cost_per_request: float | None = None  # USD, for the recommended row
    min_fragility: int | None = None  # `--gate fragility>=N`: at least N item scores must change to overturn it

    @property
    def any(self) -> bool:
        return bool(self.fail_under or self.expect or self.max_cost_per_request is not None
                    or self.min_fragility is not None)


@dataclass(frozen=True)
class GateResult:
    name: str  # e.g. "fail-under few-shot=0.70"
    passed: bool
    message: str  # what was measured, in words


def parse_fail_under(values: list[str]) -> tuple[tuple[str, float], ...]:
    """`ROW=0.70` (or `ROW=70%`) -> (ROW, 0.70); the row names are checked against the run later."""
    out = []
    for v in values:
        row, sep, number = v.rpartition("=")
        try:
            threshold = float(number[:-1]) / 100 if number.endswith("%") else float(number)
        except ValueError:
            threshold = None
        if not sep or not row or threshold is None or not 0 <= threshold <= 1:
            raise GateSpecError(f"--fail-under {v!r}: expected ROW=ACCURACY with ACCURACY in [0, 1] or a "
                                "percentage, e.g. --fail-under few-shot=0.70")
        out.append((row, threshold))
    return tuple(out)


def parse_gate(values: list[str]) -> int | None:
    """`--gate fragility>=N` -> N (the fewest item scores that may overturn the verdict); the last one counts."""
    minimum = None
    for v in values:
        name, sep, number = v.replace(" ", "").partition(">=")
        if name != "fragility" or not sep or not number.isdigit() or int(number) < 1:
            raise GateSpecError(f"--gate {v!r}: expected fragility>=N with N a whole number from 1, "
                                "e.g. --gate fragility>=3")
        minimum = int(number)
    return minimum


def check_rows(gates: Gates, rows: list[str]) -> None:
    """Before any model runs: a gate on a row this run will not have is a typo, not a failure."""
    named = [r for r, _ in gates.fail_under] + ([gates.expect] if gates.expect else [])
    unknown = [r for r in named if r not in rows]
    if unknown:
        raise GateSpecError(f"gate on {', '.join(map(repr, unknown))}, which this run does not have; "
                            f"its rows: {', '.join(rows)}")


def _measured(results: Results) -> tuple[dict[str, float], str | None, dict[str, float]]:
    """(row -> accuracy, recommended row or None when there is not enough evidence, row -> cost per request):
    all this module reads from results."""
    accuracy = {s.name: s.accuracy.mean for s in results.strategies}
    cost = {s.name: s.economics.cost_per_request for s in results.strategies if s.economics}
    rec = results.recommendation
    return accuracy, rec.strategy if rec.status == "recommended" else None, cost


def evaluate(gates: Gates, results: Results) -> list[GateResult]:
    accuracy, verdict, cost = _measured(results)
    out = []
    for row, minimum in gates.fail_under:
        acc = accuracy[row]
        out.append(GateResult(f"fail-under {row}={minimum:g}", acc >= minimum,
                              f"{row} accuracy {acc:.3f} {'>=' if acc >= minimum else '<'} {minimum:g}"))
    none = (f"no row is recommended: not enough evidence "
            f"({results.recommendation.evidence.why if results.recommendation.evidence else 'see the report'})")
    if gates.expect:
        ok = verdict == gates.expect
        said = f"recommended {verdict}" if verdict else none
        out.append(GateResult(f"expect {gates.expect}", ok, said + ("" if ok else f", expected {gates.expect}")))
    if gates.max_cost_per_request is not None:
        limit = gates.max_cost_per_request
        if verdict is None:
            out.append(GateResult(f"max-cost-per-request {limit:g}", False, none))
        else:
            c = cost[verdict]
            out.append(GateResult(f"max-cost-per-request {limit:g}", c <= limit,
                                  f"{verdict} costs ${c:.6g} per request, limit ${limit:g}"))
    if gates.min_fragility is not None:
        out.append(_fragility_gate(gates.min_fragility, results))
    return out


def _fragility_gate(minimum: int, results: Results) -> GateResult:
    """Passes when no fewer than `minimum` item scores must change to overturn the verdict; a verdict the
    search could not overturn at all is above any minimum."""
    f = results.recommendation.fragility
    name = f"fragility>={minimum}"
    if f is None:
        return GateResult(name, False, "this results file has no fragility (written by an older advisor)")
    if f.count is None:
        return GateResult(name, True, f.text)
    return GateResult(name, f.count >= minimum, f"fragility {f.count} {'>=' if f.count >= minimum else '<'} "
                                                f"{minimum}: {f.text}")


def junit_xml(results: list[GateResult], suite: str) -> bytes:
    """One <testcase> per gate; a failed gate carries a <failure> with the measured numbers."""
    failures = sum(not r.passed for r in results)
    root = ET.Element("testsuites", tests=str(len(results)), failures=str(failures))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)), failures=str(failures), errors="0")
    for r in results:
        case = ET.SubElement(ts, "testcase", classname=f"advisor.{suite}", name=r.name)
        if r.passed:
            ET.SubElement(case, "system-out").text = r.message
        else:
            ET.SubElement(case, "failure", message=r.message, type="gate").text = r.message
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(path: Path, results: list[GateResult], suite: str) -> None:
    atomic_write_bytes(path, junit_xml(results, suite))
