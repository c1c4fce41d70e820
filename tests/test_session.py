"""The test session itself: `make test` leaves a user's cache and history as they were.

A user's ADVISOR_CACHE and ADVISOR_HISTORY are replaced for the session (tests/conftest.py);
the xdist workers' caches (`worker-gw*`) go into the session's own cache.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


def test_a_test_session_leaves_a_users_cache_and_history_as_they_were(tmp_path):
    from advisor.models import embedded_generator_dir

    user = tmp_path / "user-cache"
    (user / "models").mkdir(parents=True)
    (user / "notes.txt").write_text("the user's own")
    user_history = tmp_path / "user-history.sqlite"
    # The nested session's kept test cache, with this session's converted model linked in: no conversion again.
    kept = tmp_path / "test-cache"
    (kept / "models").mkdir(parents=True)
    model, _ = embedded_generator_dir()
    (kept / "models" / model.name).symlink_to(model.resolve(), target_is_directory=True)
    before = snapshot(user)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ADVISOR_"))} | {
        "ADVISOR_CACHE": str(user), "ADVISOR_HISTORY": str(user_history), "ADVISOR_TEST_CACHE": str(kept),
        "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                        "tests/test_tracking.py::test_an_unknown_tracker_is_bad_input_before_any_model_runs",
                        "tests/test_history.py::test_a_store_from_a_newer_advisor_is_refused"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert snapshot(user) == before and not user_history.exists()
    workers = sorted(p.name for p in kept.iterdir() if p.name.startswith("worker-"))
    assert workers == ["worker-gw0", "worker-gw1"]  # the workers' caches were made, in the test cache
