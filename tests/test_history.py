"""Run history, `advisor history` and `advisor compare`, end to end on the real tiny model.

Two real runs of the tiny task (zero-shot and few-shot rows, no experiments), the
second after an edit of the instructions, record into a history store in a temp dir.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest
import yaml

from advisor import compare, history
from advisor.results import load_results
from advisor.stats import paired_compare
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


def test_compare_shows_the_edit_paired_tests_and_the_verdict(two_runs, tmp_path):
    root, store, _, (ra, rb) = two_runs
    page = tmp_path / "compare.html"
    r = advisor("compare", "1", "2", "--history", str(store), "--html", str(page))
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "field instructions" in out and "<b>shop</b>" in out  # the terminal shows the edit as text
    for name in ("zero-shot", "few-shot"):
        a = {ex.id: ex.answers[name].score for ex in ra.examples}
        b = {ex.id: ex.answers[name].score for ex in rb.examples}
        expected = paired_compare("B", [b[i] for i in a], "A", [a[i] for i in a], rb.run.seed)
        row = next(line for line in r.stdout.splitlines() if line.strip().startswith(name + " "))
        assert f"{expected.p_value:.3g}" in row and expected.test.split(" (")[0] in " ".join(r.stdout.split())
    va, vb = ra.recommendation.strategy, rb.recommendation.strategy
    assert (f"verdict changed: {va} -> {vb}" if va != vb else f"verdict unchanged: {va}") in out
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
    assert [x.what for x in c.changes] == []  # same task and models; only the eval items differ in the record
    bad = advisor("compare", "1", "99", "--history", str(two_runs[1]))
    assert bad.returncode == 2 and "no run 99" in bad.stderr and "Traceback" not in bad.stderr


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
