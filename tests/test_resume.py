"""Crashes and determinism, with real subprocesses and SIGKILL.

One run is killed while it evaluates (after its first strategy finished), started
again and killed while it trains (after a finished epoch), then started a third
time. It must not redo finished work (the log says what was served from the cache
and where training resumed) and must end with the same results as an
uninterrupted run made in a separate, empty cache: which is also the determinism
check (same task, seed and models -> same results.json apart from timing).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_task

STRATEGIES = ["-s", "few-shot", "-s", "rag", "-s", "lora"]
# Timing and what follows from it (costs, hence reasons and flip points); paths that name the cache or output.
TIMING = {"seconds", "started", "train_seconds", "index_seconds", "latency", "throughput", "tokens_per_second",
          "peak_memory_mb", "economics", "command", "adapter", "reasons", "cautions", "sensitivity",
          "sensitivity_text", "hardware"}


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


def _start(task: Path, out: Path, cache: Path) -> subprocess.Popen:
    """`--budget full`: the row-by-row flow whose stages (a row answering, then training) the kills aim at; the
    sequential flow of `--budget fast` (every row prepared, then rounds) resumes through the same caches but its
    kill points are not tested here."""
    env = os.environ | {"ADVISOR_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "advisor.cli", "run", str(task), "--out", str(out), *STRATEGIES,
                             "--no-forgetting", "--budget", "full"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_when_logged(proc: subprocess.Popen, log: Path, marker: str, timeout: float = 600) -> str:
    """SIGKILL the run as soon as its log shows `marker`; return the log as it was then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if marker in text:
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


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    # Three epochs and no validation split, so the kill lands between epochs, not after training.
    return write_task(tmp_path_factory.mktemp("resume") / "task", finetune={
        "num_train_epochs": 3, "per_device_train_batch_size": 4, "r": 4, "lora_alpha": 8, "learning_rate": 0.002, "val_fraction": 0.0})


@pytest.fixture(scope="module")
def reference(task, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("reference")
    cache = _cache_with_converted_model(root / "cache")
    proc = _start(task, root / "out", cache)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-3000:]
    return json.loads((root / "out" / "results.json").read_text())


def test_killed_twice_resumes_without_redoing_work_and_matches_uninterrupted_run(task, reference, tmp_path):
    cache = _cache_with_converted_model(tmp_path / "cache")
    out = tmp_path / "out"
    log = out / "advisor.log"

    # 1. Killed while evaluating the second strategy: few-shot's answers are finished and cached.
    _kill_when_logged(_start(task, out, cache), log, "rag: answering")
    assert not (out / "results.json").exists()

    # 2. Started again, killed while training, after an epoch's checkpoint.
    text = _kill_when_logged(_start(task, out, cache), log, "checkpoint saved")
    second = _attempt(text, 1)
    assert _all_from_cache(second, "few-shot"), f"few-shot answers were generated again:\n{second}"
    assert not (out / "results.json").exists()
    adapters = cache / "adapters"
    assert [p.name for p in adapters.iterdir() if p.name.endswith(".partial")], "no training checkpoint was left"
    assert not list(adapters.glob("*/adapter_model.safetensors")), "training finished before the kill"

    # 3. Third start: finishes, training resumed from the checkpoint (not from scratch).
    proc = _start(task, out, cache)
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
