"""Run history, `advisor history` and `advisor compare`, end to end on the real tiny model.

Two real runs of the tiny task (zero-shot and few-shot rows, no experiments), the
second after an edit of the instructions, record into a history store in a temp dir.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from itertools import product

import pytest
import yaml

from advisor import compare, history
from advisor.results import load_results
from tests.conftest import advisor, write_task
from tests.test_ci import SMALL  # the same small runs: one xdist group, one generation cache

ROWS = ["-s", "zero-shot", "-s", "few-shot", "--no-freshness", "--no-forgetting"]
EDITED = "You are the <b>shop</b> assistant. Answer in one short line, starting 'Hi!' and ending 'Bye.'"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("history")
    task = write_task(root / "task", **SMALL)
    store = root / "history.sqlite"
    original = (task / "task.yaml").read_text()
    a = advisor("run", str(task), "--out", str(root / "a"), "--history", str(store), *ROWS)
    assert a.returncode == 0, a.stderr[-3000:]
    spec = yaml.safe_load(original)
    spec["instructions"] = EDITED
    (task / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    b = advisor("run", str(task), "--out", str(root / "b"), "--history", str(store), *ROWS)
    assert b.returncode == 0, b.stderr[-3000:]
    results = [load_results(root / x) for x in ("a", "b")]
    return root, store, original, results


def test_every_run_is_recorded_with_its_answers_and_task_snapshot(two_runs):
    root, store, original, (ra, rb) = two_runs
    runs = history.list_runs(store, "tiny")
    assert [r.id for r in runs] == [1, 2]
    first = history.get_run(store, 1)
    assert first.task_yaml == original
    assert yaml.safe_load(history.get_run(store, 2).task_yaml)["instructions"] == EDITED
    assert first.task_hash != runs[1].task_hash  # the content hash follows the edit
    assert first.out_dir == str((root / "a").resolve()) and first.seed == ra.run.seed
    assert first.verdict == ra.recommendation.strategy and list(first.reasons) == list(ra.recommendation.reasons)
    assert [r.strategy for r in first.rows] == ["zero-shot", "few-shot"]
    fragile = ra.recommendation.fragility  # the verdict's fragility, as the report states it
    assert first.fragility == fragile.count and fragile.text
    assert [(i["id"], i["row"], i["from"], i["to"]) for i in first.fragility_items] == \
        [(i.id, i.row, i.from_, i.to) for i in fragile.items]
    for s in ra.strategies:
        row = first.row(s.name)
        assert row.accuracy == s.accuracy.mean
        assert row.cost_per_request == s.economics.cost_per_request
    for ex in ra.examples:
        for name, ans in ex.answers.items():
            assert first.scores[name][ex.id] == ans.score and first.answers[name][ex.id] == ans.text
    assert first.models and all(first.models.values()) and first.retries == 0


def test_history_command_lists_both_runs(two_runs):
    _, store, _, (ra, rb) = two_runs
    r = advisor("history", "tiny", "--history", str(store))
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if " tiny " in f" {line} "]
    assert len(lines) == 2, r.stdout
    for line, res in zip(lines, (ra, rb)):
        best = max(s.accuracy.mean for s in res.strategies)
        assert res.recommendation.strategy in line and f"{best:.0%}" in line
    other = advisor("history", "no-such-task", "--history", str(store))
    assert other.returncode == 0 and "no runs recorded" in other.stdout


def exact_p(b: list[float], a: list[float]) -> float:
    """The two-sided p-value of B against A on paired scores, computed here by full enumeration: McNemar's exact
    test (a binomial on the discordant items) for pass/fail scores, else the sign-flip permutation test of the
    mean difference over all 2^n flips (twice the smaller tail, at most 1)."""
    if set(a) | set(b) <= {0.0, 1.0}:
        only_b = sum(1 for x, y in zip(b, a) if x > y)
        only_a = sum(1 for x, y in zip(b, a) if x < y)
        n = only_a + only_b
        return 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n)
    d = [x - y for x, y in zip(b, a)]
    if not any(d):
        return 1.0
    observed = sum(d)
    sums = [sum(s * x for s, x in zip(signs, d)) for signs in product((1, -1), repeat=len(d))]
    tol = 1e-9 * max(1.0, abs(observed))
    upper = sum(v >= observed - tol for v in sums) / len(sums)
    lower = sum(v <= observed + tol for v in sums) / len(sums)
    return min(1.0, 2 * min(upper, lower))


def test_exact_p_by_hand():
    """The reference above on cases worked on paper: 0 vs 5 discordant is 2/32; a 1-item gain of 0.5 is 2/2 = 1;
    gains on all 3 items (0.5, 0.25, 0.25) are beaten only by the all-plus flip and matched by its mirror: 2/8."""
    assert exact_p([0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1]) == pytest.approx(2 / 32)
    assert exact_p([0.5], [0.0]) == 1.0
    assert exact_p([0.5, 0.5, 0.25], [0.0, 0.25, 0.0]) == pytest.approx(2 / 8)


def test_compare_shows_the_edit_paired_tests_and_the_verdict(two_runs, tmp_path):
    root, store, _, (ra, rb) = two_runs
    page = tmp_path / "compare.html"
    r = advisor("compare", "1", "2", "--history", str(store), "--html", str(page), env={"COLUMNS": "120"})
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "field instructions" in out and "<b>shop</b>" in out  # the terminal shows the edit as text
    assert max(len(line) for line in r.stdout.splitlines()) <= 120
    for name in ("zero-shot", "few-shot"):
        a = [ex.answers[name].score for ex in ra.examples]
        b = [ex.answers[name].score for ex in rb.examples]
        row = next(line for line in r.stdout.splitlines() if line.strip().startswith(name + " "))
        # one line per row at 120 columns, every cell whole on it: name, acc A, acc B, "+d pp (lo…hi)", items, p, test
        cells = row.split()
        assert cells[0] == name and cells[6] == str(len(a)) and cells[7] == f"{exact_p(b, a):.3g}", row
        assert cells[8] == ("McNemar" if set(a) | set(b) <= {0.0, 1.0} else "permutation"), row
        assert cells[1] == f"{100 * sum(a) / len(a):.0f}%" and cells[2] == f"{100 * sum(b) / len(b):.0f}%"
    va, vb = ra.recommendation, rb.recommendation
    said = (f"verdict changed: {va.strategy} ({va.status}) -> {vb.strategy} ({vb.status})"
            if (va.strategy, va.status) != (vb.strategy, vb.status) else f"verdict unchanged: {vb.strategy} ({vb.status})")
    assert said in out
    html = page.read_text()
    assert "&lt;b&gt;shop&lt;/b&gt;" in html and "<b>shop</b>" not in html and "<script" not in html
    assert "field instructions" in html and "-instructions: You are the shop assistant." in html

    by_folder = advisor("compare", str(root / "a"), str(root / "b"), "--history", str(store))
    assert by_folder.returncode == 0 and "(run 1)" in by_folder.stdout and "field instructions" in by_folder.stdout


def test_compare_pairs_only_the_items_both_runs_answered(two_runs):
    _, _, original, (ra, _) = two_runs
    full = history.record_from_results(ra, original, None)
    fewer = ra.model_copy(update={"examples": ra.examples[:2]})
    part = history.record_from_results(fewer, original, None)
    c = compare.compare(full, part)
    assert all(r.shared == 2 for r in c.rows)
    assert c.pairing.only_a == tuple(ex.id for ex in ra.examples[2:]) and not c.pairing.changed
    assert [x.what for x in c.changes] == []  # same task and models; only the eval items differ in the record
    bad = advisor("compare", "1", "99", "--history", str(two_runs[1]))
    assert bad.returncode == 2 and "no run 99" in bad.stderr and "Traceback" not in bad.stderr


def _renumbered(res, insert_at: int | None = None, edit_first: bool = False):
    """The results as if their items had automatic ids (eval-1, eval-2, ...): a new item inserted at `insert_at`
    shifts the ids of those after it; `edit_first` rewords the first item's question under its id."""
    examples = list(res.examples)
    if insert_at is not None:
        examples.insert(insert_at, examples[0].model_copy(update={"input": "A brand new question?"}))
    if edit_first:
        examples[0] = examples[0].model_copy(update={"input": examples[0].input + " (reworded)"})
    return res.model_copy(update={"examples": tuple(ex.model_copy(update={"id": f"eval-{k}"})
                                                   for k, ex in enumerate(examples, 1))})


def test_compare_pairs_the_same_question_not_the_same_id(two_runs, tmp_path):
    """B inserts a question at line 2 (the later automatic ids shift) and rewords line 1: each question is paired
    with itself, the reworded one is listed as changed, the new one as only in B, and neither is tested."""
    _, _, original, (ra, rb) = two_runs
    a = history.record_from_results(_renumbered(ra), original, None)
    b = history.record_from_results(_renumbered(rb, insert_at=1, edit_first=True), original, None)
    c = compare.compare(a, b)
    assert c.pairing.pairs == (("eval-2", "eval-3"), ("eval-3", "eval-4"), ("eval-4", "eval-5"))
    assert c.pairing.changed == ("eval-1",) and c.pairing.only_b == ("eval-2",) and c.pairing.only_a == ()
    for row in c.rows:
        gains = [rb.examples[k].answers[row.strategy].score - ra.examples[k].answers[row.strategy].score
                 for k in (1, 2, 3)]
        assert row.shared == 3 and row.diff == pytest.approx(sum(gains) / 3)
    store = tmp_path / "h.sqlite"
    for rec in (a, b):
        history.record(store, rec)
    r = advisor("compare", "1", "2", "--history", str(store))
    out = " ".join(r.stdout.split())
    assert r.returncode == 0, r.stderr
    assert "3 paired by content under another id (A -> B): eval-2 -> eval-3, eval-3 -> eval-4, eval-4 -> eval-5" in out
    assert "1 changed (same id, another question or reference; not compared): eval-1" in out
    assert "1 only in B (not compared): eval-2" in out


def test_a_change_of_status_is_a_change_of_verdict(two_runs, tmp_path):
    """The same leading row, recommended in A and not in B, is a changed verdict: in words and for the gate."""
    _, _, original, (ra, _) = two_runs
    a = history.record_from_results(ra, original, None)
    leader = a.verdict
    recommended, unsure = (dataclasses.replace(a, status=s) for s in ("recommended", "not enough evidence"))
    c = compare.compare(recommended, unsure)
    assert c.verdict_changed
    assert compare.verdict_line(c) == f"verdict changed: {leader} (recommended) -> {leader} (not enough evidence)"
    assert not compare.compare(unsure, unsure).verdict_changed
    store = tmp_path / "h.sqlite"
    for rec in (recommended, unsure, unsure):
        history.record(store, rec)
    gate = advisor("compare", "1", "2", "--history", str(store), "--fail-on-verdict-change")
    assert gate.returncode == 1 and "FAIL --fail-on-verdict-change" in gate.stderr, gate.stdout + gate.stderr
    assert f"verdict changed: {leader} (recommended) -> {leader} (not enough evidence)" in " ".join(gate.stdout.split())
    same = advisor("compare", "2", "3", "--history", str(store), "--fail-on-verdict-change")
    assert same.returncode == 0 and f"verdict unchanged: {leader} (not enough evidence)" in " ".join(same.stdout.split())


def _store(path, records) -> None:
    for rec in records:
        history.record(path, rec)


def test_history_fits_80_columns_with_every_field_whole(two_runs, tmp_path):
    """The issue's case: at 80 columns the task name, verdict, date and models wrapped inside words."""
    _, _, original, (ra, rb) = two_runs
    runs = [history.record_from_results(res, original, None) for res in (ra, rb)]
    runs.append(dataclasses.replace(runs[1], task_name="nimbus-support", verdict="zero-shot", status="recommended"))
    store = tmp_path / "h.sqlite"
    _store(store, runs)
    r = advisor("history", "--history", str(store), env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # The title names the store's path: one token that the terminal, not the table, may wrap.
    assert lines[0].startswith("advisor history: ") and max(map(len, lines[1:])) <= 80, r.stdout
    for run_id, rec in enumerate(runs, 1):
        line = next(x for x in lines if re.match(rf"\s*{run_id}\s+\d{{4}}-", x))
        verdict = rec.verdict if rec.status == "recommended" else f"({rec.verdict})"  # not enough evidence
        cost = next(x.cost_per_request for x in rec.rows if x.strategy == rec.verdict)
        best = max(x.accuracy for x in rec.rows)
        words = line.split()  # each field whole, as a word of the run's own line
        verdict += "!" if rec.fragility == 1 else ""  # one changed item score would change it
        for field in (rec.created[:10], rec.created[11:16], rec.task_name, "m1", str(rec.seed), verdict,
                      f"{100 * best:.0f}%"):
            assert field in words, (field, line)
        assert words[-1].startswith("$") and float(words[-1][1:]) == pytest.approx(cost, rel=0.05), line
    text = " ".join(r.stdout.split())
    assert all(f"{role} {name}" in text for role, name in runs[0].models.items())  # the legend of m1
    wide = advisor("history", "--history", str(store), "--wide", env={"COLUMNS": "80"})
    line = next(x for x in wide.stdout.splitlines() if re.match(r"\s*1\s+\d{4}-", x))
    assert all(f"{role} {name}" in line for role, name in runs[0].models.items()), wide.stdout
    assert "fragility" in wide.stdout and line.split()[-1] == ("–" if runs[0].fragility is None
                                                               else str(runs[0].fragility)), wide.stdout
    fragile = dataclasses.replace(runs[0], fragility=1)  # a verdict one item could overturn is marked
    assert "!" in history.verdict_cell(fragile) and "!" not in history.verdict_cell(fragile, wide=True)


def test_history_json_and_csv_for_scripts(two_runs):
    _, store, _, results = two_runs
    j = advisor("history", "--history", str(store), "--json", env={"COLUMNS": "80"})
    assert j.returncode == 0, j.stderr
    tool = subprocess.run([sys.executable, "-m", "json.tool"], input=j.stdout, capture_output=True, text=True)
    assert tool.returncode == 0, tool.stderr
    c = advisor("history", "--history", str(store), "--csv")
    assert c.returncode == 0, c.stderr
    table = list(csv.DictReader(io.StringIO(c.stdout)))
    runs = json.loads(j.stdout)
    assert [x["id"] for x in runs] == [1, 2] and [x["id"] for x in table] == ["1", "2"]
    for x, line, res in zip(runs, table, results):
        rec = res.recommendation
        best = max(s.accuracy.mean for s in res.strategies)
        assert (x["task"], x["seed"], x["verdict"], x["status"]) == ("tiny", res.run.seed, rec.strategy, rec.status)
        assert x["best_accuracy"] == best and x["n_eval"] == res.task.n_eval == 4
        assert x["fragility"] == rec.fragility.count and line["fragility"] == ("" if rec.fragility.count is None
                                                                             else str(rec.fragility.count))
        assert x["cost_per_request"] == res.strategy(rec.strategy).economics.cost_per_request
        assert {r["strategy"]: r["accuracy"] for r in x["rows"]} == {s.name: s.accuracy.mean for s in res.strategies}
        assert (line["verdict"], line["status"], line["seed"]) == (rec.strategy, rec.status, str(res.run.seed))
        assert float(line["best_accuracy"]) == best and "generator=" in line["models"]
    both = advisor("history", "--history", str(store), "--json", "--csv")
    assert both.returncode == 2 and "choose one" in both.stderr


def test_delete_and_prune_ask_first_and_keep_the_newest_of_each_task(two_runs, tmp_path):
    _, _, original, (ra, _) = two_runs
    tiny = history.record_from_results(ra, original, None)
    other = dataclasses.replace(tiny, task_name="other")
    store = tmp_path / "h.sqlite"
    _store(store, [tiny, other, tiny, other, tiny])  # tiny: 1, 3, 5; other: 2, 4

    def ids():
        return [r.id for r in history.list_runs(store)]

    def answers(run_id):
        with sqlite3.connect(store) as con:
            return con.execute("SELECT COUNT(*) FROM answers WHERE run_id = ?", (run_id,)).fetchone()[0]

    refused = advisor("history", "--history", str(store), "--delete", "3", input="n\n")
    assert refused.returncode == 0 and "nothing deleted" in refused.stdout and ids() == [1, 2, 3, 4, 5]
    deleted = advisor("history", "--history", str(store), "--delete", "3", input="y\n")
    assert deleted.returncode == 0 and "deleted 1 run" in deleted.stdout and ids() == [1, 2, 4, 5]
    assert answers(3) == 0 and answers(1) == sum(len(ex.answers) for ex in ra.examples) > 0  # its answers went too
    missing = advisor("history", "--history", str(store), "--delete", "99", "--yes")
    assert missing.returncode == 2 and "no run 99" in missing.stderr and ids() == [1, 2, 4, 5]
    pruned = advisor("history", "--history", str(store), "--prune", "--keep", "1", "--yes")
    assert pruned.returncode == 0 and "deleted 2 runs" in pruned.stdout and ids() == [4, 5]
    assert answers(1) == 0
    again = advisor("history", "--history", str(store), "--prune", "--keep", "1", "--yes")
    assert again.returncode == 0 and "nothing to prune" in again.stdout
    no_keep = advisor("history", "--history", str(store), "--prune")
    assert no_keep.returncode == 2 and "--keep" in no_keep.stderr and ids() == [4, 5]


def _copy(store, target):
    """A consistent copy of a store (SQLite's backup: the WAL's pages too)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(store) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def test_a_read_only_store_is_read_and_never_written(two_runs, tmp_path):
    _, store, _, (ra, rb) = two_runs
    ro = _copy(store, tmp_path / "ro" / "h.sqlite")
    before = {p.name: p.read_bytes() for p in ro.parent.iterdir()}
    os.chmod(ro, 0o444)
    os.chmod(ro.parent, 0o555)
    try:
        assert not history.writable(ro)
        listed = advisor("history", "--history", str(ro), "--json")
        assert listed.returncode == 0, listed.stderr
        assert [x["verdict"] for x in json.loads(listed.stdout)] == [ra.recommendation.strategy,
                                                                      rb.recommendation.strategy]
        compared = advisor("compare", "1", "2", "--history", str(ro))
        assert compared.returncode == 0 and "field instructions" in compared.stdout, compared.stderr
        refused = advisor("history", "--history", str(ro), "--delete", "1", "--yes")
        assert refused.returncode == 2 and "read-only" in refused.stderr
    finally:
        os.chmod(ro.parent, 0o755)
        os.chmod(ro, 0o644)
    assert {p.name: p.read_bytes() for p in ro.parent.iterdir()} == before  # not a byte, not a -shm file


def test_an_older_store_is_read_as_it_is_when_read_only_and_migrated_when_not(two_runs, tmp_path):
    _, store, _, (ra, rb) = two_runs
    old = _copy(store, tmp_path / "old" / "h.sqlite")
    with sqlite3.connect(old) as con:  # back to schema version 1, as every store before this one
        con.execute("ALTER TABLE runs DROP COLUMN status")
        con.execute("ALTER TABLE runs DROP COLUMN items")
        con.execute("ALTER TABLE runs DROP COLUMN reviewed")
        con.execute("ALTER TABLE runs DROP COLUMN fragility")
        con.execute("ALTER TABLE runs DROP COLUMN fragility_items")
        con.execute("PRAGMA user_version = 1")
    os.chmod(old, 0o444)
    try:
        runs = history.list_runs(old)
        assert [r.verdict for r in runs] == [ra.recommendation.strategy, rb.recommendation.strategy]
        assert all(r.status is None and r.items == {} and r.fragility is None for r in runs)
        r = advisor("compare", "1", "2", "--history", str(old))
        assert r.returncode == 0 and "paired by id alone" in " ".join(r.stdout.split()), r.stdout + r.stderr
        with sqlite3.connect(f"{old.as_uri()}?mode=ro", uri=True) as con:
            assert con.execute("PRAGMA user_version").fetchone()[0] == 1  # not migrated
    finally:
        os.chmod(old, 0o644)
    history.list_runs(old)  # writable again: migrated on open
    with sqlite3.connect(old) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(history.MIGRATIONS)
    empty = tmp_path / "empty" / "h.sqlite"  # an SQLite file at version 0: no tables to read
    empty.parent.mkdir()
    empty.write_bytes(b"")
    os.chmod(empty, 0o444)
    try:
        with pytest.raises(history.HistoryError, match="too old to read, and the store is read-only"):
            history.list_runs(empty)
    finally:
        os.chmod(empty, 0o644)


def test_two_processes_recording_at_once_keep_every_record(two_runs, tmp_path):
    """Two real processes write 20 runs each into one fresh store at the same moment."""
    root, _, original, _ = two_runs
    store, go = tmp_path / "shared.sqlite", tmp_path / "go"
    script = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from advisor import history
        from advisor.results import load_results
        results = load_results(Path({str(root / 'a')!r}))
        while not Path({str(go)!r}).exists():
            time.sleep(0.01)
        for k in range(20):
            rec = history.record_from_results(results, {original!r}, f"writer-{{sys.argv[1]}}-{{k}}")
            history.record(Path({str(store)!r}), rec)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)], stderr=subprocess.PIPE, text=True,
                              env=os.environ) for w in (1, 2)]
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    runs = history.list_runs(store)
    assert sorted(r.out_dir for r in runs) == sorted(f"writer-{w}-{k}" for w in (1, 2) for k in range(20))
    n_answers = sum(len(ex.answers) for ex in load_results(root / "a").examples)
    with sqlite3.connect(store) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        per_run = con.execute("SELECT run_id, COUNT(*) FROM answers GROUP BY run_id").fetchall()
        assert len(per_run) == 40 and {n for _, n in per_run} == {n_answers}
        assert con.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == 40 * 2


def test_a_store_from_a_newer_advisor_is_refused(tmp_path):
    store = tmp_path / "new.sqlite"
    with sqlite3.connect(store) as con:
        con.execute(f"PRAGMA user_version = {len(history.MIGRATIONS) + 1}")
    with pytest.raises(history.HistoryError, match="newer than this advisor knows"):
        history.list_runs(store)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all, just bytes" * 100)
    r = advisor("history", "--history", str(garbage))
    assert r.returncode == 2 and "not a usable advisor history store" in r.stderr and "Traceback" not in r.stderr
