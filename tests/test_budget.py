"""Run budgets and progress: what `--budget` fills, what it leaves alone, and bars that follow the work."""
from __future__ import annotations

import io

import torch
from rich.console import Console
from rich.progress import Progress

from advisor import progress
from advisor.budget import BUDGETS, apply_budget, recorded
from advisor.kinds import Family
from advisor.models import Generator, resolve_dtype
from advisor.task import load_task
from tests.conftest import write_task


def test_a_budget_fills_only_what_the_task_file_leaves_unset(tmp_path):
    unset = load_task(write_task(tmp_path / "a", latency={}))
    fast, filled = apply_budget(unset, "fast")
    assert fast.spec.finetune.retrieval_aware == "warm-start" and fast.spec.finetune.lora_dropout == 0
    assert filled == {"finetune.retrieval_aware": "warm-start", "finetune.lora_dropout": 0.0, "latency.requests": 1}
    assert unset.spec.finetune.retrieval_aware == "separate"  # the loaded task is not changed
    full, filled = apply_budget(unset, "full")
    assert full.spec.finetune.retrieval_aware == "separate" and filled == {}
    assert BUDGETS["fast"].left_out and not BUDGETS["full"].left_out

    finetune = {"num_train_epochs": 1, "retrieval_aware": True}  # the earlier yes/no form, set explicitly
    explicit = load_task(write_task(tmp_path / "b", finetune=finetune, latency={}))
    assert explicit.spec.finetune.retrieval_aware == "separate"
    kept, filled = apply_budget(explicit, "fast")
    assert kept.spec.finetune.retrieval_aware == "separate"
    assert filled == {"finetune.lora_dropout": 0.0, "latency.requests": 1}


def test_a_run_records_only_the_filled_settings_that_change_one_of_its_rows(tmp_path):
    _, filled = apply_budget(load_task(write_task(tmp_path / "a", latency={})), "fast")
    with_row = recorded("fast", filled, [Family.PROMPTING, Family.FINETUNE_RAG])
    assert with_row["filled"] == {"finetune.retrieval_aware": "warm-start", "finetune.lora_dropout": 0.0,
                                  "latency.requests": 1}
    assert "lora+rag" in with_row["left_out"] and "dropout" in with_row["left_out"]
    # No lora+rag row: only the setting that changes a row this run measured is recorded as left out.
    plain = recorded("fast", filled, [Family.PROMPTING, Family.FINETUNE])
    assert plain["filled"] == {"finetune.lora_dropout": 0.0, "latency.requests": 1}
    assert "lora+rag" not in plain["left_out"]
    without = recorded("fast", filled, [Family.PROMPTING])
    # Every row is timed for latency, so that setting is recorded whatever the rows.
    assert without == {"name": "fast", "filled": {"latency.requests": 1},
                       "left_out": BUDGETS["fast"].settings["latency.requests"].left_out}


def test_progress_bars_count_generated_and_cached_answers(generator):
    prompts = [generator.chat_ids([{"role": "user", "content": f"Say the number {i}."}]) for i in range(5)]
    display = Progress(console=Console(file=io.StringIO()))
    with display, progress.showing(display):
        with progress.bar("answering", 10):
            generator.generate(prompts, 4, batch_size=2)
            generator.generate(prompts, 4, batch_size=2)  # all five from the cache: still counted
    (task,) = display.tasks
    assert task.completed == 10 and task.total == 10
    progress.advance(3)  # outside any display: reports to nothing, and does not fail


def test_weights_dtype_is_part_of_the_model_fingerprint(generator):
    assert resolve_dtype("float32") == torch.float32 and resolve_dtype("bfloat16") == torch.bfloat16
    other = "float32" if generator.dtype == torch.bfloat16 else "bfloat16"
    twin = Generator(generator.name, other)
    assert twin.model.dtype == resolve_dtype(other) and twin.dtype != generator.dtype
    # Cached generations and adapters are keyed by the fingerprint: another dtype never reuses them.
    assert twin.fingerprint != generator.fingerprint
