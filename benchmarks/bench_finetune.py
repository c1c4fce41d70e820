"""LoRA fine-tuning: the advisor's loop vs a plain HF Trainer + peft, same data and settings.

    python benchmarks/bench_finetune.py [--epochs 1] [--task data/support]

Both train the same LoRA (the task's r, alpha, dropout, target modules, lr, batch
size) on the same encoded examples (the task's train split, prompt tokens masked
with -100), for the same epochs, no validation. The baseline is what one writes
with the libraries' defaults: `Trainer` + `DataCollatorForSeq2Seq` (random order,
pad to the batch's longest, logits over every position and the whole vocabulary).
The advisor's `train_lora` batches by length and projects to the vocabulary only
at answer positions. tokens/s counts real (unpadded) tokens, the same for both.
"""
from __future__ import annotations

import argparse
import random
import tempfile

import torch

from common import fresh_cache, machine, print_table, quiet, timed


def baseline_trainer(gen, rows, spec, epochs: int, seed: int) -> tuple[float, float]:
    """HF Trainer + peft, library defaults; returns (seconds in `train()`, mean training loss)."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model = get_peft_model(gen.model, LoraConfig(r=spec.r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                                                 target_modules=list(spec.target_modules), task_type="CAUSAL_LM"))
    steps = -(-len(rows) // spec.per_device_train_batch_size) * epochs
    data = [{"input_ids": r.input_ids, "labels": r.labels} for r in rows]
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="bench-trainer-"), per_device_train_batch_size=spec.per_device_train_batch_size,
                             num_train_epochs=epochs, learning_rate=spec.learning_rate, warmup_steps=max(1, steps // 10),
                             lr_scheduler_type="linear", save_strategy="no", logging_strategy="no", report_to=[],
                             disable_tqdm=True, use_cpu=not torch.cuda.is_available(), seed=seed,
                             dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      data_collator=DataCollatorForSeq2Seq(gen.tokenizer, padding=True, label_pad_token_id=-100))
    try:
        with timed() as t:
            loss = trainer.train().training_loss
        return t.seconds, loss
    finally:
        gen.model = model.unload()


def padded_tokens(rows, batches) -> int:
    return sum(len(b) * max(len(r.input_ids) for r in b) for b in batches)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="data/support")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="first N training examples only (quick check)")
    args = ap.parse_args()
    fresh_cache("bench-ft-")  # no reused adapter
    from advisor.models import Generator
    from advisor.task import load_task
    from advisor.training import encode_example, length_batches, split_pieces, split_train_val, train_lora

    quiet()
    print(machine())
    task = load_task(args.task)
    spec = task.spec.finetune.model_copy(update={"num_train_epochs": args.epochs})
    train, _ = split_train_val(task.train, spec.val_fraction, task.spec.seed)
    pairs = [(e.input, e.output) for e in train[: args.limit]]
    gen = Generator(task.spec.models.generator)
    rows = [encode_example(gen, u, a, spec.max_length) for u, a in pairs]
    real = sum(len(r.input_ids) for r in rows) * args.epochs

    base_s, base_loss = baseline_trainer(gen, rows, spec, args.epochs, task.spec.seed)
    _, m = train_lora(gen, pairs, spec, task.spec.seed)
    ours_s = m["train_seconds"]
    ours_loss = m["history"][-1]["train_loss"]

    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    pad_base = padded_tokens(rows, [[rows[i] for i in order[s : s + spec.per_device_train_batch_size]]
                                    for s in range(0, len(rows), spec.per_device_train_batch_size)]) * args.epochs
    pieces = [p for b in length_batches(rows, spec.per_device_train_batch_size, None) for p in split_pieces(b, spec.micro_batch_tokens)]
    pad_ours = padded_tokens(rows, pieces) * args.epochs
    answer = sum(sum(1 for t in r.labels if t != -100) for r in rows) * args.epochs
    print_table(
        f"LoRA training, {len(rows)} examples x {args.epochs} epoch(s), batch {spec.per_device_train_batch_size}, r={spec.r}, "
        f"{real:,} real tokens ({answer:,} answer tokens)",
        ["path", "seconds", "padded tokens", "tokens/s", "mean train loss", "speed-up"],
        [["naive: HF Trainer + peft, default collator", base_s, pad_base, real / base_s, base_loss, "1.0x"],
         [f"advisor: train_lora (answer-only logits, length buckets, {spec.micro_batch_tokens}-token pieces)", ours_s, pad_ours, real / ours_s, ours_loss,
          f"{base_s / ours_s:.1f}x"]],
        note="padded tokens for the baseline: one random order (the Trainer's own shuffle differs slightly). "
             f"after: {machine()}",
    )


if __name__ == "__main__":
    main()
