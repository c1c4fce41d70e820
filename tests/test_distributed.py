"""Splitting a batch changes the memory and the hardware, not what is learned.

`advisor train` under torchrun: several processes share each batch and train the same adapter
as one process. Within a process, a batch computed in pieces (`micro_batch_tokens`) learns
what the whole batch learns.

CPU processes talk over gloo, which is what CI has; on GPUs the same code runs
under `accelerate launch --multi_gpu` with NCCL. Three processes and batches of
5 over 12 examples (5, 5, 2) make the last batch leave one process empty-handed,
the case where it must still join the gradient all-reduce at weight 0.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from advisor.task import FinetuneSpec
from advisor.training import train_lora
from tests.conftest import TRAIN, write_task
from tests.test_resume import _cache_with_converted_model

# No dropout: its masks are drawn per process, so with it the two runs are equally valid but not equal.
# One epoch is three optimizer steps (batches of 5, 5, 2): enough to compare, and the last batch is the uneven one.
FINETUNE = {"num_train_epochs": 1, "per_device_train_batch_size": 5, "r": 4, "lora_alpha": 8, "learning_rate": 0.002, "val_fraction": 0.0,
            "lora_dropout": 0.0}


def _train(task: Path, cache: Path, processes: int) -> subprocess.CompletedProcess:
    env = os.environ | {"ADVISOR_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd = (launcher if processes > 1 else [sys.executable]) + ["-m", "advisor.cli", "train", str(task),
                                                               "-s", "lora", "-s", "lora+rag"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _assert_same_training(a: tuple[dict, dict], b: tuple[dict, dict], what: str) -> None:
    """Same loss per epoch (float rounding aside) and LoRA weights within 2% of each other.

    The weights get the looser bound: Adam divides by the gradient's running size, so on
    near-zero gradients it turns rounding differences into visible ones (0.8% seen here).
    """
    (ma, wa), (mb, wb) = a, b
    assert ma["tokens"] == mb["tokens"]
    for ha, hb in zip(ma["history"], mb["history"], strict=True):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-5), what
    for name in wb:
        diff = (wa[name] - wb[name]).norm() / wb[name].norm()
        assert diff < 2e-2, f"{what}, {name}: weights differ by {diff:.3%}"


def _adapters(cache: Path) -> dict[str, tuple[dict, dict]]:
    """Adapter key -> (metrics, LoRA weights) for every adapter in a cache."""
    return {d.name: (json.loads((d / "metrics.json").read_text()), load_file(str(d / "adapter_model.safetensors")))
            for d in sorted((cache / "adapters").iterdir()) if (d / "adapter_model.safetensors").exists()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    # float32: this checks that the work is shared out exactly; in bf16 each process's other shapes round otherwise.
    task = write_task(root / "task", finetune=FINETUNE, models={"dtype": "float32"})
    many = _cache_with_converted_model(root / "cache-3")
    one = _cache_with_converted_model(root / "cache-1")
    proc = _train(task, many, 3)
    _train(task, one, 1)
    return task, proc, _adapters(many), _adapters(one)


def test_each_process_trains_on_its_share_of_every_batch(trained):
    _, proc, many, _ = trained
    assert len(many) == 2, "one adapter for lora, one retrieval-aware adapter for lora+rag"
    for metrics, _ in many.values():
        assert metrics["processes"] == 3
        shares = metrics["tokens_per_process"]
        assert len(shares) == 3 and sum(shares) == metrics["tokens"]
        assert max(shares) < 0.5 * metrics["tokens"], f"a process computed more than its share: {shares}"
    assert proc.stdout.count("3 process(es)") == 2  # printed once (main process), for each adapter


def test_several_processes_learn_what_one_process_learns(trained):
    """Same batches, same optimizer steps: the losses and weights match one process up to float rounding.

    The adapter key does not depend on the process count, so `advisor run` afterwards reuses these adapters.
    """
    _, _, many, one = trained
    assert many.keys() == one.keys()
    for key in many:
        assert one[key][0]["processes"] == 1
        _assert_same_training(many[key], one[key], f"adapter {key}: 3 processes vs 1")


def test_a_batch_in_pieces_learns_what_the_whole_batch_learns(generator, tmp_path, monkeypatch):
    """Pieces of at most 16 tokens (every row alone) vs the whole batch in one forward pass, in float64.

    Pieces are meant to be exact: the loss is a sum over answer tokens divided once by the batch's count,
    so the pieces' gradients add up to the batch's gradient in real arithmetic. In float32 they differ
    by rounding alone (other matrix shapes, paddings and summation orders: the first step's gradients
    differ by about 2e-6 of their norm), and Adam turns that into weight differences no tolerance can
    bound: lora_B starts at zero and each Adam step moves every element by about the learning rate
    whatever its gradient's size, so an element whose gradient is within rounding of zero can end up
    anywhere in +-steps*lr, and how many there are depends on the CPU's kernels and thread count
    (2.7% on one fresh 2-core machine, under 2% on the one that wrote this test). In float64 the model's
    rounding is 1e-16 and what is left is the cross-entropy's, which is taken in float32: measured, the
    losses agree to 1e-7 and the weights to 6e-8 of their norm (worst tensor), 15x inside the bound.
    """
    runs = {}
    dtype = generator.model.dtype
    generator.model.to(torch.float64)
    try:
        for budget in (16, 100_000):
            monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / str(budget)))  # the key ignores the budget
            spec = FinetuneSpec(**FINETUNE, micro_batch_tokens=budget)
            folder, metrics = train_lora(generator, TRAIN, spec, seed=0)
            runs[budget] = metrics, load_file(str(folder / "adapter_model.safetensors"))
    finally:
        generator.model.to(dtype)  # the session's generator, exactly as it was (float32 or bf16 -> 64 -> back)
    (pieces, wp), (whole, ww) = runs[16], runs[100_000]
    assert pieces["tokens"] == whole["tokens"]
    for hp, hw in zip(pieces["history"], whole["history"], strict=True):
        assert hp["train_loss"] == pytest.approx(hw["train_loss"], rel=1e-6)
    assert ww and all(w.dtype == torch.float64 for w in ww.values())
    diffs = {name: float((wp[name] - ww[name]).norm() / ww[name].norm()) for name in ww}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < 1e-6, f"pieces vs whole batches, {worst}: weights differ by {diffs[worst]:.3e} of their norm"


def test_run_refuses_to_start_as_several_processes(tiny_task_dir, tmp_path):
    env = os.environ | {"WORLD_SIZE": "2", "RANK": "0"}
    proc = subprocess.run([sys.executable, "-m", "advisor.cli", "run", str(tiny_task_dir), "--out", str(tmp_path / "o")],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "advisor train" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
