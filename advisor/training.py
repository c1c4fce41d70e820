"""The LoRA training engine: supervised fine-tuning of a peft adapter on (prompt, answer) pairs.

Any row that uses an adapter trains it here (`lora` on the bare questions, `lora+rag`
on questions with retrieved passages). Loss is computed on answer tokens only, and
the output layer is applied only at those positions (the vocabulary projection is
most of a small model's compute). Batches group examples of similar length. The loop
runs on HF accelerate, so the same code runs on a GPU in bf16, and under `accelerate
launch` / `torchrun` with N processes (`advisor train`) each process takes every N-th
example of each batch: the same optimizer steps on the same batches, N times the
hardware per step. The adapter is saved in peft's format and reused when the pairs,
config and base model match.
"""
from __future__ import annotations

import contextlib
import json
import logging
import random
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from advisor import progress
from advisor.cache import atomic_dir, atomic_write_text, cache_dir, hash_json
from advisor.models import Generator, chat_template_ids, release_memory, rss_bytes
from advisor.task import Example, FinetuneSpec

FORMAT_VERSION = 3  # bump when the way examples become tokens or gradients change (2: summed pieces; 3: kernel by width)
log = logging.getLogger("advisor.train")


class AdapterMissing(Exception):
    pass


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # -100 on prompt tokens


def encode_example(gen: Generator, user: str, answer: str, max_length: int) -> Encoded:
    """Prompt + answer through the chat template; only the answer tokens are learned."""
    prompt = gen.chat_ids([{"role": "user", "content": user}])
    full = chat_template_ids(gen.tokenizer, [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                             add_generation_prompt=False)
    if full[: len(prompt)] != prompt:  # template renders the prompt differently inside a dialogue
        full = prompt + gen.tokenizer(answer, add_special_tokens=False)["input_ids"] + [gen.tokenizer.eos_token_id]
    # Drop trailing whitespace tokens after the end-of-turn marker (they are template padding).
    end = gen.tokenizer.eos_token_id
    if end in full[len(prompt):]:
        full = full[: len(prompt) + full[len(prompt):].index(end) + 1]
    full = full[:max_length]
    labels = [-100] * min(len(prompt), len(full)) + full[len(prompt):]
    return Encoded(full, labels)


class AnswerOnlyLoss(nn.Module):
    """Causal-LM loss at answer positions only, projecting to the vocabulary only there."""

    def __init__(self, causal_lm: nn.Module):
        super().__init__()
        self.lm = causal_lm

    def forward(self, input_ids, attention_mask, labels, reduction: str = "mean"):
        base = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != -100
        logits = base.get_output_embeddings()(hidden[:, :-1][keep])
        return nn.functional.cross_entropy(logits.float(), targets[keep], reduction=reduction)


# A training may hold this much memory above where it started (one batch's activations in pieces of 512 tokens
# take ~0.8 GB) before freed pages go back to the system. Handing them back after every batch cost 15-30% of the
# training time (each batch faulted them in again); never, RSS climbed batch after batch, as pieces of other widths
# fragment the heap (+1.3 GB over an epoch with retrieved passages). benchmarks/README.md has the figures.
TRAINING_RSS_ALLOWANCE = 1 << 30
MATH_KERNEL_MAX_WIDTH = 160  # bf16 CPU pieces up to this many padded tokens train with the math kernel


def attention_for_piece(model: nn.Module, width: int):
    """The attention kernel for one training piece: on a CPU in bf16, the math kernel for short pieces.

    The fused (flash) kernel's CPU backward is slow in bf16 on short sequences, while the
    math kernel keeps every attention matrix (rows x heads x width^2) for the backward.
    Measured on 2 cores: 8 examples of ~90 tokens took 2.3 s with the math kernel and
    3.5 s fused; 8 with retrieved passages (~250 tokens) 9.7 s math and 8.8 s fused, and
    the math kernel raised the training's peak memory by ~0.4 GB there. Elsewhere
    (float32, a GPU) the default kernel stays.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if model.dtype == torch.bfloat16 and model.device.type == "cpu" and width <= MATH_KERNEL_MAX_WIDTH:
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def _answer_tokens(batch: list[Encoded]) -> int:
    """Positions the loss is taken at (the labels shifted by one)."""
    return sum(sum(1 for t in r.labels[1:] if t != -100) for r in batch)


def split_pieces(rows: list[Encoded], max_tokens: int) -> list[list[Encoded]]:
    """Split rows into pieces of at most `max_tokens` padded tokens (a longer row goes alone)."""
    pieces: list[list[Encoded]] = []
    for r in sorted(rows, key=lambda r: len(r.input_ids)):
        if pieces and (len(pieces[-1]) + 1) * len(r.input_ids) <= max_tokens:
            pieces[-1].append(r)
        else:
            pieces.append([r])
    return pieces


def _backward_batch(loss_fn, batch: list[Encoded], pad: int, accelerator, max_tokens: int, model: nn.Module) -> float:
    """Backpropagate one batch's loss, the mean over its answer tokens; return that mean.

    It is computed in pieces that fit `max_tokens`, each backpropagated at once, so
    activation memory is bounded by the piece, not the batch: the summed gradients are
    the whole batch's. Under N processes each takes every N-th example and scales its
    sum by N, so the gradients DDP averages equal the one-process gradient; only the
    last piece's backward synchronizes. A process whose share is empty (a last batch
    smaller than N) runs one example at weight 0: every process joins each all-reduce.
    """
    n, rank = accelerator.num_processes, accelerator.process_index
    mine = batch[rank::n]
    weight = n / _answer_tokens(batch) if mine else 0.0
    pieces = split_pieces(mine or batch[:1], max_tokens)
    total = torch.zeros((), device=accelerator.device)
    for i, piece in enumerate(pieces):
        width = max(len(r.input_ids) for r in piece)
        with (accelerator.no_sync(loss_fn) if i < len(pieces) - 1 else contextlib.nullcontext(),
              attention_for_piece(model, width)):
            loss = loss_fn(**collate(piece, pad, accelerator.device), reduction="sum") * weight
            accelerator.backward(loss)
        total += loss.detach()
    return accelerator.reduce(total, "mean").item()  # each process holds its scaled share


def length_batches(rows: list[Encoded], size: int, rng: random.Random | None) -> list[list[Encoded]]:
    """Group examples of similar length (less padding); shuffle batch order when training."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].input_ids))
    batches = [[rows[i] for i in order[s : s + size]] for s in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def collate(batch: list[Encoded], pad: int, device) -> dict[str, torch.Tensor]:
    width = max(len(r.input_ids) for r in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, r in enumerate(batch):
        ids[i, : len(r.input_ids)] = torch.tensor(r.input_ids)
        labels[i, : len(r.labels)] = torch.tensor(r.labels)
        mask[i, : len(r.input_ids)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def split_train_val(rows: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    if fraction <= 0 or len(rows) < 10:
        return list(rows), []
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    n_val = max(1, round(len(rows) * fraction))
    return shuffled[n_val:], shuffled[:n_val]


def train_lora(gen: Generator, pairs: list[tuple[str, str]], spec: FinetuneSpec, seed: int,
               val_pairs: list[tuple[str, str]] = (), reuse_only: bool = False,
               start_from: Path | None = None) -> tuple[Path, dict]:
    """Train (or reuse) a LoRA adapter on (user message, answer) pairs; return its folder and metrics.

    `reuse_only` (serving a finished run) refuses to train: a missing adapter is an error.
    `start_from` is a saved adapter (same LoRA settings) whose weights training starts from.
    """
    from accelerate import Accelerator, DataLoaderConfiguration
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    # The key holds what shapes the weights; which row uses the adapter does not.
    shaping = spec.model_dump(exclude={"retrieval_aware", "micro_batch_tokens"})
    # A warm start is keyed by its start's own key (the adapter folder's name: what shaped it), not by its
    # bits, which differ in the last place when several processes trained it; keys never depend on that.
    start = start_from.name if start_from else None
    key = hash_json([FORMAT_VERSION, gen.fingerprint, pairs, list(val_pairs), shaping, seed] + ([start] if start else []))[:24]
    folder = cache_dir() / "adapters" / key
    if (folder / "adapter_model.safetensors").exists():
        log.info("training: reusing the adapter trained earlier (%s)", folder.name)
        return folder, json.loads((folder / "metrics.json").read_text()) | {"reused": True}
    if reuse_only:
        raise AdapterMissing(f"the run's LoRA adapter is not in the cache ({folder}); it was made by "
                             f"`advisor run` with another cache (ADVISOR_CACHE) or has been deleted: run the task again")

    torch.manual_seed(seed)
    rng = random.Random(seed)
    # cpu=True on a machine without CUDA lets `torchrun` start several CPU processes (gloo); alone it changes nothing.
    # split_batches: the processes split each batch (below), so the schedule takes one step per batch, not N.
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no",
                              cpu=not torch.cuda.is_available(), gradient_accumulation_steps=spec.gradient_accumulation_steps,
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    train_rows = [encode_example(gen, u, a, spec.max_length) for u, a in pairs]
    val_rows = [encode_example(gen, u, a, spec.max_length) for u, a in val_pairs]
    config = LoraConfig(r=spec.r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                        target_modules=list(spec.target_modules), task_type="CAUSAL_LM")
    peft_model = get_peft_model(gen.model, config)
    if start_from is not None:
        from safetensors.torch import load_file

        set_peft_model_state_dict(peft_model, load_file(start_from / "adapter_model.safetensors"))
    loss_fn = AnswerOnlyLoss(peft_model)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=spec.learning_rate,
                                  weight_decay=spec.weight_decay)
    steps_per_epoch = -(-len(train_rows) // spec.per_device_train_batch_size)
    total = max(1, steps_per_epoch * spec.num_train_epochs // spec.gradient_accumulation_steps)
    warmup = spec.warmup(total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - s / total))
    loss_fn, optimizer, scheduler = accelerator.prepare(loss_fn, optimizer, scheduler)
    pad = gen.tokenizer.pad_token_id

    history, best, best_state, bad_epochs, tokens, done_seconds = [], float("inf"), None, 0, 0, 0.0
    own_tokens = 0  # what this process computed (all of `tokens` unless several processes share the batches)
    main = accelerator.is_main_process
    partial = folder.with_name(folder.name + ".partial")
    start_epoch = 1
    if (partial / "state.json").exists():  # an interrupted run of the same training: go on from its last epoch
        meta = _load_checkpoint(partial, peft_model, optimizer, scheduler, rng)
        history, best, bad_epochs, tokens, done_seconds = (meta["history"], meta["best"], meta["bad_epochs"],
                                                           meta["tokens"], meta["seconds"])
        shares = meta["tokens_per_process"]  # resumed on another process count: this process counts from here
        own_tokens = shares[accelerator.process_index] if len(shares) == accelerator.num_processes else 0
        best_state = meta["best_state"]
        start_epoch = meta["epoch"] + 1
        log.info("training: resuming from the checkpoint after epoch %d of %d", meta["epoch"], spec.num_train_epochs)
    log.info("training: %d examples, epochs %d..%d, %d process(es)", len(train_rows), start_epoch, spec.num_train_epochs,
             accelerator.num_processes)
    ceiling = rss_bytes() + TRAINING_RSS_ALLOWANCE
    t0 = time.perf_counter() - done_seconds  # a resumed run counts the time its earlier attempt measured
    steps_left = steps_per_epoch * (spec.num_train_epochs - start_epoch + 1)
    with progress.bar(f"training the adapter: {len(train_rows)} examples", steps_left):
        try:
            for epoch in range(start_epoch, spec.num_train_epochs + 1):
                loss_fn.train()
                losses = []
                for batch in length_batches(train_rows, spec.per_device_train_batch_size, rng):
                    with accelerator.accumulate(loss_fn):
                        losses.append(_backward_batch(loss_fn, batch, pad, accelerator, spec.micro_batch_tokens, gen.model))
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad()
                    tokens += sum(len(r.input_ids) for r in batch)
                    own_tokens += sum(len(r.input_ids) for r in batch[accelerator.process_index::accelerator.num_processes])
                    progress.advance()
                    if rss_bytes() > ceiling:
                        release_memory()
                val = _evaluate(loss_fn, val_rows, spec.per_device_train_batch_size, pad, accelerator.device) if val_rows else None
                history.append({"epoch": epoch, "train_loss": sum(losses) / len(losses), "val_loss": val})
                score = val if val is not None else history[-1]["train_loss"]
                if score < best - 1e-4:
                    best, bad_epochs = score, 0
                    best_state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
                else:
                    bad_epochs += 1
                    if val is not None and bad_epochs > spec.patience:
                        break  # early stopping on validation loss
                if epoch < spec.num_train_epochs:
                    shares = _tokens_per_process(accelerator, own_tokens)  # every process takes part
                    if main:
                        _save_checkpoint(partial, epoch, peft_model, optimizer, scheduler, rng, best_state,
                                         {"history": history, "best": best, "bad_epochs": bad_epochs, "tokens": tokens,
                                          "tokens_per_process": shares, "seconds": time.perf_counter() - t0})
                        log.info("training: epoch %d done, checkpoint saved", epoch)
            seconds = time.perf_counter() - t0
            per_process = _tokens_per_process(accelerator, own_tokens)
            set_peft_model_state_dict(peft_model, best_state)
            metrics = {
                "train_seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds,
                "answer_tokens_per_epoch": sum(sum(1 for t in r.labels if t != -100) for r in train_rows),
                "examples": len(train_rows), "val_examples": len(val_rows), "epochs_run": len(history),
                "best_epoch": min(history, key=lambda h: h["val_loss"] if h["val_loss"] is not None else h["train_loss"])["epoch"],
                "history": history, "peak_memory_mb": _peak_memory_mb(), "device": str(accelerator.device),
                "trainable_parameters": sum(p.numel() for p in peft_model.parameters() if p.requires_grad),
                "processes": accelerator.num_processes, "tokens_per_process": per_process,
            }
            if main:
                with atomic_dir(folder) as tmp:
                    peft_model.save_pretrained(tmp)
                    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1))
                shutil.rmtree(partial, ignore_errors=True)
                log.info("training: done in %.1f s, adapter saved", seconds)
            accelerator.wait_for_everyone()  # the other processes return once the adapter is on disk
        finally:
            gen.model = peft_model.unload()  # restore the plain base model for every other strategy
            gen.model.eval()
            release_memory()  # the pieces' activations: see advisor.models.release_memory
    return folder, metrics | {"reused": False}


def _tokens_per_process(accelerator, own_tokens: int) -> list[int]:
    return accelerator.gather(torch.tensor([own_tokens], device=accelerator.device)).tolist()


def _save_checkpoint(folder: Path, epoch: int, peft_model, optimizer, scheduler, rng: random.Random,
                     best_state: dict | None, state: dict) -> None:
    """Everything training needs to go on exactly where it stopped: weights, optimizer, schedule, RNGs.

    Tensors go to safetensors and the rest to JSON (nothing that executes on load), written atomically.
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tensors = {f"model/{k}": v.detach().contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}
    tensors |= {f"best/{k}": v.contiguous() for k, v in (best_state or {}).items()}
    opt = optimizer.state_dict()
    for pid, slots in opt["state"].items():
        for slot, v in slots.items():
            tensors[f"optimizer/{pid}/{slot}"] = v.contiguous() if torch.is_tensor(v) else torch.tensor(v)
    tensors["rng/torch"] = torch.get_rng_state()
    meta = state | {"epoch": epoch, "param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(),
                    "python_rng": rng.getstate(), "has_best": best_state is not None}
    with atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        atomic_write_text(tmp / "state.json", json.dumps(meta))


def _load_checkpoint(folder: Path, peft_model, optimizer, scheduler, rng: random.Random) -> dict:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "state.safetensors"))
    meta = json.loads((folder / "state.json").read_text())

    def group(prefix: str) -> dict:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    set_peft_model_state_dict(peft_model, group("model/"))
    opt_state: dict[int, dict] = {}
    for k, v in group("optimizer/").items():
        pid, slot = k.split("/")
        opt_state.setdefault(int(pid), {})[slot] = v
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng/torch"])
    version, internal, gauss = meta["python_rng"]
    rng.setstate((version, tuple(internal), gauss))
    meta["best_state"] = group("best/") if meta["has_best"] else None
    return meta


@torch.no_grad()
def _evaluate(loss_fn, rows, batch_size, pad, device) -> float:
    loss_fn.eval()
    total, n = 0.0, 0
    for batch in length_batches(rows, batch_size, None):
        count = _answer_tokens(batch)
        total += loss_fn(**collate(batch, pad, device)).item() * count
        n += count
    return total / max(1, n)
