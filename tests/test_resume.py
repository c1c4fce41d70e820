"""Crashes and determinism, with real subprocesses and SIGKILL.

Under `--budget full` (row by row), one run is killed while it evaluates (after its
first strategy finished), started again and killed while it trains (after a finished
epoch), then started a third time. Under the default budget (sequential: every row
prepared, then the eval items in rounds), one run is killed in the middle of a round
and started again. Neither may redo finished work (the log says what was served from
the cache and where training resumed), and each must end with the same results as an
uninterrupted run of its budget made in a separate, empty cache: which is also the
determinism check (same task, seed and models -> same results.json apart from timing).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advisor.budget import DEFAULT as DEFAULT_BUDGET
from tests.conftest import write_task

STRATEGIES = ["-s", "few-shot", "-s", "rag", "-s", "lora"]
# Timing and what follows from it (costs, hence reasons and flip points); paths that name the cache or output;
# whether the adapter was found in the cache (a resumed run reuses the one its killed attempt trained, the
# reference trains its own: the tests check it from the log and state it).
TIMING = {"seconds", "started", "train_seconds", "index_seconds", "latency", "throughput", "tokens_per_second",
          "peak_memory_mb", "economics", "command", "adapter", "reasons", "cautions", "sensitivity",
          "sensitivity_text", "hardware", "reused"}


def comparable(obj):
    if isinstance(obj, dict):
        return {k: comparable(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [comparable(v) for v in obj]
    return obj


def _cache_with_converted_model(path: Path) -> Path:
    """An empty cache holding only the converted base model (converting it again only costs time)."""
    from advisor.models import embedded_generator_dir

    converted, _ = embedded_generator_dir()  # in the test session's cache
    shutil.copytree(converted, path / "models" / converted.name)
    return path


def _start(task: Path, out: Path, cache: Path, budget: str) -> subprocess.Popen:
    """`advisor run` of `task` in `cache` under `budget`: `full` is the row-by-row flow (a row prepared and
    answering, then the next); the others evaluate sequentially (every row prepared, then the items in rounds)."""
    env = os.environ | {"ADVISOR_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "advisor.cli", "run", str(task), "--out", str(out), *STRATEGIES,
                             "--no-forgetting", "--budget", budget],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _uninterrupted(task: Path, root: Path, budget: str) -> dict:
    """results.json of a run of `task` under `budget` that nothing interrupts, in its own cache."""
    cache = _cache_with_converted_model(root / "cache")
    proc = _start(task, root / "out", cache, budget)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-3000:]
    return json.loads((root / "out" / "results.json").read_text())


def _kill_when_logged(proc: subprocess.Popen, log: Path, marker: str | re.Pattern[str], timeout: float = 600) -> str:
    """SIGKILL the run as soon as its log shows `marker` (a string, or a pattern searched for); return the log
    as it was then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if marker.search(text) if isinstance(marker, re.Pattern) else marker in text:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return text
        if proc.poll() is not None:
            pytest.fail(f"run ended (exit {proc.returncode}) before {marker!r}:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {marker!r} in {log} after {timeout} s")


def _attempt(log_text: str, n: int) -> str:
    """The log lines of the n-th attempt (the log is appended to across attempts)."""
    starts = [i for i, line in enumerate(log_text.splitlines()) if "run started" in line]
    lines = log_text.splitlines()
    end = starts[n + 1] if n + 1 < len(starts) else len(lines)
    return "\n".join(lines[starts[n]:end])


def _all_from_cache(attempt: str, strategy: str) -> bool:
    """Did every generation of this strategy's evaluation come from the cache in this attempt?"""
    section = attempt.split(f"{strategy}: answering")[1].split(f"{strategy}: done")[0]
    counts = [line for line in section.splitlines() if "answered" in line]
    return bool(counts) and all(" 0 generated" in line for line in counts)


def _first_round(attempt: str) -> dict[str, str]:
    """Each row's log line of round 1 in a sequential attempt, for the rows that got that far.

    Every row is prepared first (its "preparing" line, in the run's order); the next generations logged are
    round 1's, one call a row in that same order (evaluate.evaluate_sequentially), and training logs no
    generations of its own."""
    lines = attempt.splitlines()
    rows = [line.split(" advisor ")[1].removesuffix(": preparing") for line in lines if line.endswith(": preparing")]
    last = max(i for i, line in enumerate(lines) if line.endswith(": preparing"))
    answered = [line for line in lines[last:] if "answered" in line and "prompts:" in line]
    return dict(zip(rows, answered))


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    # Three epochs and no validation split, so the kill lands between epochs, not after training.
    return write_task(tmp_path_factory.mktemp("resume") / "task", finetune={
        "num_train_epochs": 3, "per_device_train_batch_size": 4, "r": 4, "lora_alpha": 8, "learning_rate": 0.002, "val_fraction": 0.0})


@pytest.fixture(scope="module")
def reference(task, tmp_path_factory) -> dict:
    return _uninterrupted(task, tmp_path_factory.mktemp("reference"), "full")


@pytest.fixture(scope="module")
def small_task(tmp_path_factory) -> Path:
    """The tiny task as conftest writes it: four eval items (one round), one epoch (no kill aims at training)."""
    return write_task(tmp_path_factory.mktemp("resume-sequential") / "task")


@pytest.fixture(scope="module")
def sequential_reference(small_task, tmp_path_factory) -> dict:
    results = _uninterrupted(small_task, tmp_path_factory.mktemp("sequential-reference"), DEFAULT_BUDGET)
    assert results["run"].get("sequential"), "the default budget no longer evaluates sequentially"
    return results


def test_killed_twice_resumes_without_redoing_work_and_matches_uninterrupted_run(task, reference, tmp_path):
    cache = _cache_with_converted_model(tmp_path / "cache")
    out = tmp_path / "out"
    log = out / "advisor.log"

    # 1. Killed while evaluating the second strategy: few-shot's answers are finished and cached.
    _kill_when_logged(_start(task, out, cache, "full"), log, "rag: answering")
    assert not (out / "results.json").exists()

    # 2. Started again, killed while training, after an epoch's checkpoint.
    text = _kill_when_logged(_start(task, out, cache, "full"), log, "checkpoint saved")
    second = _attempt(text, 1)
    assert _all_from_cache(second, "few-shot"), f"few-shot answers were generated again:\n{second}"
    assert not (out / "results.json").exists()
    adapters = cache / "adapters"
    assert [p.name for p in adapters.iterdir() if p.name.endswith(".partial")], "no training checkpoint was left"
    assert not list(adapters.glob("*/adapter_model.safetensors")), "training finished before the kill"

    # 3. Third start: finishes, training resumed from the checkpoint (not from scratch).
    proc = _start(task, out, cache, "full")
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-3000:]
    third = _attempt(log.read_text(), 2)
    assert "training: resuming from the checkpoint after epoch" in third, third
    assert _all_from_cache(third, "few-shot") and _all_from_cache(third, "rag"), third
    assert not [p for p in adapters.iterdir() if p.name.endswith(".partial")], "checkpoint left behind"

    resumed = json.loads((out / "results.json").read_text())
    assert comparable(resumed) == comparable(reference)
    # The reference ran uninterrupted in another empty cache: this is also the determinism check.
    assert resumed["recommendation"]["strategy"] == reference["recommendation"]["strategy"]
    assert resumed["recommendation"]["contenders"] == reference["recommendation"]["contenders"]
    lora = next(s for s in resumed["strategies"] if s["name"] == "lora")
    assert lora["setup"]["training"]["epochs_run"] == 3


def test_sequential_run_killed_in_a_round_resumes_without_redoing_work_and_matches_uninterrupted_run(
        small_task, sequential_reference, tmp_path):
    """The default budget's flow, killed in the middle of round 1, then started again to the end.

    The kill point: the tiny task's four eval items fit in one round (advisor.sequential.ROUND_ITEMS), so there
    is no point between rounds. The run is killed as soon as the first row's round-1 answers are logged (the
    first generations of the run: none are logged while the rows are prepared), so every row is prepared, lora's
    adapter is trained, and some rows' round answers are cached while the others' are not yet: the finer case of
    a kill between rounds (whole rounds cached, read back the same way). Answers are cached per generation when
    they are made, so a row that finished its call in the few milliseconds before the kill is cached as well;
    only the rows the killed log shows answered are required to come from the cache.
    """
    cache = _cache_with_converted_model(tmp_path / "cache")
    out = tmp_path / "out"
    log = out / "advisor.log"

    # 1. Killed in round 1, after the first row's answers are generated and cached.
    first = _attempt(_kill_when_logged(_start(small_task, out, cache, DEFAULT_BUDGET), log,
                                       re.compile(r"answered \d+ prompts")), 0)
    assert "training: done" in first, f"killed before every row was prepared:\n{first}"
    answered = _first_round(first)
    assert answered and all(" 0 from the cache" in line for line in answered.values()), first
    assert not (out / "results.json").exists()

    # 2. Started again: finishes without training again or answering again what was answered.
    proc = _start(small_task, out, cache, DEFAULT_BUDGET)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-3000:]
    second = _attempt(log.read_text(), 1)
    assert "training: reusing the adapter trained earlier" in second, second
    assert not re.search(r"training: \d+ examples", second), f"lora's adapter was trained again:\n{second}"
    resumed_round = _first_round(second)
    assert list(resumed_round) == [row for row in STRATEGIES if row != "-s"], second
    for row in answered:
        assert " 0 generated" in resumed_round[row], f"{row}'s round-1 answers were generated again:\n{second}"

    resumed = json.loads((out / "results.json").read_text())
    assert comparable(resumed) == comparable(sequential_reference)
    assert resumed["run"]["sequential"]["items"] == len(resumed["examples"])  # one round held every item
    assert resumed["recommendation"]["strategy"] == sequential_reference["recommendation"]["strategy"]
    training = [s["setup"]["training"] for r in (resumed, sequential_reference) for s in r["strategies"]
                if s["name"] == "lora"]
    assert [t["reused"] for t in training] == [True, False]  # the killed attempt's adapter; the reference's own
