"""The code's shape: imports go one way (no cycles) and no module reaches for another's private names.

Walks the source with `ast` (nothing is imported), so a new cycle or private import
fails here, in CI, instead of surfacing as an ImportError in some user's run.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("advisor", "strategies")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: set[str]) -> list[tuple[str, list[str], int]]:
    """(project module imported, names taken from it, line) for every import, at any depth of the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            names = [a.name for a in node.names]
            out.append((node.module, [n for n in names if f"{node.module}.{n}" not in known], node.lineno))
            # `from advisor import report` imports the module advisor.report
            out += [(f"{node.module}.{n}", [], node.lineno) for n in names if f"{node.module}.{n}" in known]
    return [(m, names, line) for m, names, line in out if m in known]


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m, _, _ in imports(path, set(mods)) if m != name} for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (a -> b -> ... -> a), or None. Depth-first search with colours."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_project_has_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_imports_another_modules_private_names():
    mods = modules()
    offences = []
    for name, path in mods.items():
        for module, names, line in imports(path, set(mods)):
            private = [n for n in names if n.startswith("_") and not n.endswith("__")]
            if module != name and private:
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {', '.join(private)} from {module}")
    assert not offences, "\n".join(offences)


def test_lower_stages_never_import_the_run_or_the_report():
    """Data flows task -> strategies -> scores -> economics -> verdict -> results -> report: a stage below
    the run never imports the run, the report or the CLI."""
    top = {"advisor.run", "advisor.report", "advisor.charts", "advisor.cli", "advisor.serve"}
    lower = {"advisor.task", "advisor.models", "advisor.endpoint", "advisor.backends", "advisor.training",
             "advisor.retrieval", "advisor.economics", "advisor.recommend", "advisor.stats", "advisor.scoring",
             "advisor.evaluate", "advisor.experiments", "strategies"}
    edges = graph()
    bad = [f"{a} imports {b}" for a, targets in edges.items() for b in targets
           if any(a == low or a.startswith(low + ".") for low in lower) and b in top]
    assert not bad, "\n".join(bad)


def test_checking_the_input_loads_no_heavy_library():
    """A command that fails on bad input (a gate, a task, --to) fails at once: what checks the input never
    imports torch, transformers, sklearn or fastapi (5-15 s of imports before a one-line error)."""
    code = ("import advisor.cli, advisor.estimate, advisor.export, advisor.gates, advisor.history, advisor.task, "
            "advisor.tracking, strategies; strategies.families(); import sys; "
            "print(sorted(m for m in ('torch', 'transformers', 'sklearn', 'fastapi') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"imported: {done.stdout.strip()}"
