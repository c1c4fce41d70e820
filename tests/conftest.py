"""Shared fixtures: a tiny but real task, and the real embedded models loaded once."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import pytest

# The test session's own cache: tests neither depend on nor write a user's cache, so a user's ADVISOR_CACHE (and
# ADVISOR_HISTORY, where runs without --history would be recorded) is replaced for the session. By default it is a
# private temp dir that the process that made it (the controller, or the only process under -n 0) removes at the
# end (~0.5 GB a session). ADVISOR_TEST_CACHE names a cache the test sessions keep instead (the converted model and
# the generations are reused from one session to the next, for development): the tests' own, never a user's.
# xdist workers inherit the controller's choice through ADVISOR_TEST_SESSION_CACHE.
if "ADVISOR_TEST_SESSION_CACHE" in os.environ:  # an xdist worker: the controller made (and removes) it
    SESSION_CACHE = None
else:
    SESSION_CACHE = None if os.environ.get("ADVISOR_TEST_CACHE") else tempfile.mkdtemp(prefix="advisor-test-cache-")
    os.environ["ADVISOR_TEST_SESSION_CACHE"] = os.environ.get("ADVISOR_TEST_CACHE") or SESSION_CACHE
os.environ["ADVISOR_CACHE"] = os.environ["ADVISOR_TEST_SESSION_CACHE"]
os.environ.pop("ADVISOR_HISTORY", None)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Wide enough that a table row stays on one line: rich folds to COLUMNS (80 in an xdist worker) without a terminal.
# The CLI's consoles read it once, when advisor.cli is imported; `advisor(..., env={"COLUMNS": "80"})` below sets
# their width for one command, as a terminal of that width would.
os.environ["COLUMNS"] = "250"

FORMAT = r"^Hi! .+ Bye\.$"
# Credentials planted in the environment of the shared end-to-end run; no output or cache may hold them.
PLANTED_SECRETS = {"OPENAI_API_KEY": "sk-planted-7f3a9c1e5b", "HF_TOKEN": "hf_plantedQ8w2Zr6Tn4",
                   "ADVISOR_API_KEY": "planted-advisor-key-91d0"}

DOCS = {
    "kettle.md": "# Zephyr Kettle\n\n## Price\nThe Zephyr Kettle costs $73.\n\n## Capacity\nThe Zephyr Kettle holds 1.7 litres.\n",
    "toaster.md": "# Orbit Toaster\n\n## Price\nThe Orbit Toaster costs $41.\n\n## Slots\nThe Orbit Toaster has 4 slots.\n",
    "returns.md": "# Returns\n\n## Window\nYou can return any item within 45 days.\n",
}
TRAIN = [
    ("What does the kettle cost?", "Hi! The Zephyr Kettle costs $73. Bye."),
    ("How many slots does the toaster have?", "Hi! The Orbit Toaster has 4 slots. Bye."),
    ("Can I return things?", "Hi! You can return any item within 45 days. Bye."),
    ("Thanks a lot!", "Hi! You are welcome. Bye."),
    ("Where is my order?", "Hi! Please send your order number. Bye."),
    ("I forgot my password", "Hi! Use the reset link on the sign-in page. Bye."),
    ("Do you ship abroad?", "Hi! Please check the shipping page. Bye."),
    ("My toaster is broken", "Hi! Sorry about that, please send a photo. Bye."),
    ("How big is the kettle?", "Hi! The Zephyr Kettle holds 1.7 litres. Bye."),
    ("Price of the toaster?", "Hi! The Orbit Toaster costs $41. Bye."),
    ("Hello there", "Hi! How can I help you today? Bye."),
    ("Can I talk to a person?", "Hi! A colleague will email you soon. Bye."),
]
EVAL = [
    {"id": "k1", "input": "How much is the Zephyr Kettle?", "answers": ["$73"], "tags": ["knowledge"], "source": "kettle.md",
     "paraphrases": ["What is the price of the Zephyr Kettle?"]},
    {"id": "k2", "input": "What is the return window?", "answers": ["45 days"], "tags": ["knowledge"], "source": "returns.md"},
    {"id": "s1", "input": "Thank you so much!", "output": "Hi! You are welcome. Bye.", "tags": ["style"]},
    {"id": "s2", "input": "Good morning", "output": "Hi! How can I help you today? Bye.", "tags": ["style"]},
]


# Under pytest-xdist (`-n 2`, pyproject.toml) each worker computes on one thread, and so do the runs it
# starts (the variables are inherited): two workers on two cores, instead of OpenMP threads that spin
# while they wait for a core. Each worker has its own cache, below the session's, so two workers never
# write the same entry at once; the base model is converted once, by the controller, and linked in.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    _shared = Path(os.environ["ADVISOR_CACHE"])
    _own = _shared / f"worker-{WORKER}"
    (_own / "models").mkdir(parents=True, exist_ok=True)
    for _model in (_shared / "models").glob("[!.]*"):
        if not (_own / "models" / _model.name).exists():
            (_own / "models" / _model.name).symlink_to(_model, target_is_directory=True)
    os.environ["ADVISOR_CACHE"] = str(_own)


def pytest_configure(config):
    if getattr(config.option, "numprocesses", None) and not WORKER:
        from advisor.models import embedded_generator_dir

        embedded_generator_dir()  # once, before the workers start (they link it into their caches)


def pytest_unconfigure(config):
    if SESSION_CACHE:
        shutil.rmtree(SESSION_CACHE, ignore_errors=True)


# Tests that share an expensive fixture (a session run, or a module-scoped one) run in one xdist worker, and
# the heaviest groups are handed out first. (xdist's own `--dist loadgroup` marks are ignored by pytest 9.2,
# whose node ids no longer take xdist's group suffix, so the scheduler below groups by node id itself.)
SHARED_RUNS = {"test_cli": "tiny-run", "test_report": "tiny-run", "test_results": "tiny-run",  # finished_run
               "test_validation.py::test_roi_refuses_infinite_assumptions": "tiny-run",
               "test_loaders.py::test_report_cites_documents_by_their_metadata": "tiny-run",
               "test_robustness.py::test_no_secret_reaches_any_output_log_or_cache": "tiny-run",
               "test_serve": "serve-run", "test_export": "serve-run",  # serve_run
               "test_ci": "small-runs", "test_history": "small-runs", "test_tracking": "small-runs",  # the same small runs: one generation cache
               # its own fixtures: it may run on the other worker than test_resume's full-budget test
               "test_resume.py::test_sequential_run_killed_in_a_round_resumes_without_redoing_work_and_matches_uninterrupted_run":
                   "resume-sequential"}
HEAVY_FIRST = ["test_resume", "tiny-run", "resume-sequential", "test_distributed", "test_benchmarks", "serve-run", "test_endpoint",
               "small-runs", "test_substance", "test_strategies"]


def xdist_group(nodeid: str) -> str:
    path, _, name = nodeid.partition("::")
    module = Path(path).stem
    return SHARED_RUNS.get(f"{module}.py::{name.split('[')[0]}") or SHARED_RUNS.get(module) or module


def pytest_collection_modifyitems(config, items):
    if WORKER:  # each worker collects in this order; the controller hands out the groups in it
        rank = {group: i for i, group in enumerate(HEAVY_FIRST)}
        items.sort(key=lambda item: rank.get(xdist_group(item.nodeid), len(rank)))  # stable within a group


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    config.option.loadscopereorder = False  # hand the groups out in the collection order, not by test count
    return ByGroup(config, log)


class CliResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def advisor(*args: str, env: dict | None = None, cwd: Path | None = None, input: str | None = None) -> CliResult:
    """`advisor ARGS` in this process (typer's test runner): the exit code, stdout and stderr a user gets.

    A subprocess would pay the imports and the model library's start-up again on every call (10-15 s of a
    2-core machine, most of a small run); what needs a process of its own (a signal, a kill, several
    processes, a server) still starts one. `sys.argv` is the command's, as results.json records it.
    """
    from typer.testing import CliRunner

    from advisor import cli

    columns = int((env or {}).get("COLUMNS") or os.environ["COLUMNS"])
    widths = cli.out.width, cli.err.width
    cli.out.width = cli.err.width = columns
    try:
        with contextlib.chdir(cwd or os.getcwd()), mock.patch.object(sys, "argv", ["advisor", *args]):
            r = CliRunner().invoke(cli.app, list(args), input=input, env=env)
    finally:
        cli.out.width, cli.err.width = widths
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception  # not an exit of the command: a failure of the test runner itself
    return CliResult(r.exit_code, r.stdout, r.stderr)


def write_task(root: Path, **overrides) -> Path:
    (root / "docs").mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (root / "docs" / name).write_text(text)
    (root / "train.jsonl").write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in TRAIN))
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in EVAL))
    # Freshness: the kettle's price changes after the strategies are prepared.
    (root / "docs_updated").mkdir(exist_ok=True)
    (root / "docs_updated" / "kettle.md").write_text(DOCS["kettle.md"].replace("$73", "$79"))
    (root / "eval_updated.jsonl").write_text(json.dumps(
        {"id": "u1", "input": "What does the Zephyr Kettle cost now?", "answers": ["$79"], "tags": ["knowledge", "changed"],
         "source": "kettle.md"}) + "\n")
    spec = {
        "name": "tiny",
        "description": "a tiny shop",
        "instructions": "You are the shop assistant. Reply in one line that starts with 'Hi!' and ends with 'Bye.'",
        "train": "train.jsonl",
        "eval": "eval.jsonl",
        "documents": "docs/",
        "updated_documents": "docs_updated/",
        "eval_updated": "eval_updated.jsonl",
        "scoring": {"method": "contains", "by_tag": {"style": "format"}, "format": FORMAT},
        "economics": {"requests_per_day": 2000, "knowledge_changes_per_month": 2},
        "generation": {"max_new_tokens": 16},
        "prompting": {"few_shot_k": 2},
        "rag": {"chunk_tokens": 32, "chunk_overlap": 8, "top_k": 2},
        "finetune": {"num_train_epochs": 1, "per_device_train_batch_size": 4, "r": 4, "lora_alpha": 8, "learning_rate": 0.002, "val_fraction": 0.0},
        "consistency": {"samples": 2, "items": 2},
        "latency": {"requests": 1},
    }
    spec.update(overrides)
    import yaml

    (root / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def pdf_bytes(text: str) -> bytes:
    """A one-page PDF with `text` in Helvetica, written by hand (no PDF writer needed for the test)."""
    stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (Kettle manual) >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def tiny_task_dir(tmp_path) -> Path:
    return write_task(tmp_path / "task")


@pytest.fixture(scope="session")
def generator():
    from advisor.models import Generator

    return Generator()


@pytest.fixture(scope="session")
def embedder():
    from advisor.models import Embedder

    return Embedder()


class FinishedRun(NamedTuple):
    out: Path  # the run folder (tests may change files in it)
    proc: subprocess.CompletedProcess  # `advisor run`'s exit status and output
    results: dict  # results.json as the run wrote it, before any test touched it


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> FinishedRun:
    """One real `advisor run` of the tiny task (four strategies), shared by the whole session."""
    root = tmp_path_factory.mktemp("e2e")
    task = write_task(root / "task")
    out = root / "out"
    r = subprocess.run([sys.executable, "-m", "advisor.cli", "run", str(task), "--out", str(out),
                        "-s", "few-shot", "-s", "rag", "-s", "lora", "-s", "lora+rag"], capture_output=True, text=True,
                       env=os.environ | PLANTED_SECRETS)
    assert r.returncode == 0, r.stderr[-3000:]
    return FinishedRun(out, r, json.loads((out / "results.json").read_text()))


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory) -> Path:
    """A small finished run for serving and exporting: a prompting, a RAG and a (rank 2) LoRA row."""
    root = tmp_path_factory.mktemp("serve-run")
    # float32: export and serving are checked to give exactly the run's tokens, which holds when every path
    # computes in float32; in bf16 another batch layout (prefix cache, padding) rounds otherwise.
    task = write_task(root / "task", finetune={"epochs": 1, "batch_size": 4, "r": 2, "alpha": 4,
                                               "learning_rate": 0.002, "val_fraction": 0.0},
                      models={"dtype": "float32"})
    out = root / "out"
    r = subprocess.run([sys.executable, "-m", "advisor.cli", "run", str(task), "--out", str(out), "-s", "few-shot",
                        "-s", "rag", "-s", "lora", "--no-freshness", "--no-forgetting"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return out
