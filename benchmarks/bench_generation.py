"""Generation: the advisor's batched path vs a per-example `generate` loop, same prompts, same run.

    .venv/bin/python benchmarks/bench_generation.py [--n 32] [--max-new-tokens 48]

Prints tokens/s for both and the ratio. Prompts are the sample task's few-shot
prompts (long shared instructions), so prefix caching, length-sorted batches and
left padding are all exercised. Greedy, generation cache off. A third row is the
advisor's batches with a growing KV cache (transformers' DynamicCache, what it used
before its static cache): same batches, same shared prefix computed once.
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import DynamicCache

from advisor.run import quiet_libraries
from advisor.models import Generator, batch_layout
from advisor.task import load_task
from strategies.base import fewshot_messages
from strategies.prompting import fixed_shots


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="data/support")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    quiet_libraries()
    task = load_task(args.task)
    gen = Generator(task.spec.models.generator)
    shots = fixed_shots(task, task.spec.seed)
    prompts = [gen.chat_ids(fewshot_messages(task.instructions, shots, ex.input)) for ex in task.eval[: args.n]]

    t0 = time.perf_counter()
    naive_tokens = 0
    naive_texts = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            out = gen.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                     do_sample=False, pad_token_id=gen.tokenizer.pad_token_id)
            new = out[0, len(p):].tolist()
            n = new.index(gen.tokenizer.eos_token_id) + 1 if gen.tokenizer.eos_token_id in new else len(new)
            naive_tokens += n
            naive_texts.append(gen.tokenizer.decode(new[:n], skip_special_tokens=True).strip())
    naive = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = gen.generate(prompts, args.max_new_tokens, batch_size=args.batch_size, use_cache=False)
    fast = time.perf_counter() - t0
    fast_tokens = sum(g.completion_tokens for g in ours)
    same = sum(a == g.text for a, g in zip(naive_texts, ours))

    t0 = time.perf_counter()
    growing_texts = growing_cache(gen, prompts, args.max_new_tokens, args.batch_size)
    growing = time.perf_counter() - t0
    same_growing = sum(a == b for a, b in zip(growing_texts, (g.text for g in ours)))

    print(f"{len(prompts)} prompts, mean {sum(map(len, prompts)) / len(prompts):.0f} prompt tokens, "
          f"max_new_tokens {args.max_new_tokens}, torch threads {torch.get_num_threads()}")
    print(f"{'path':<38}{'seconds':>9}{'answer tok':>12}{'tok/s':>9}")
    print(f"{'naive: one generate() per prompt':<38}{naive:>9.1f}{naive_tokens:>12}{naive_tokens / naive:>9.1f}")
    print(f"{'advisor: batched, prefix-cached':<38}{fast:>9.1f}{fast_tokens:>12}{fast_tokens / fast:>9.1f}")
    print(f"{'same batches, growing KV cache':<38}{growing:>9.1f}{'':>12}{fast_tokens / growing:>9.1f}")
    print(f"speed-up (tok/s ratio): {(fast_tokens / fast) / (naive_tokens / naive):.1f}x; "
          f"identical answers: {same}/{len(prompts)}")
    print(f"static vs growing KV cache: {growing / fast:.2f}x; identical answers: {same_growing}/{len(prompts)}")


@torch.inference_mode()
def growing_cache(gen, prompts: list[list[int]], max_new_tokens: int, batch_size: int) -> list[str]:
    """The advisor's batches (length-sorted, [shared prefix | padding | suffix]) through a DynamicCache."""
    pad, texts = gen.tokenizer.pad_token_id, [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = [prompts[i] for i in idx]
        ids, mask, n = batch_layout(batch, pad)
        width = ids.shape[1]
        cache = DynamicCache()
        if n:
            gen.model(input_ids=torch.tensor([batch[0][:n]]), cache=cache, use_cache=True)
            cache.batch_repeat_interleave(len(batch))
        out = gen.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, pad_token_id=pad,
                                 cache=cache, do_sample=False)
        for row, i in enumerate(idx):
            new = out[row, width:].tolist()
            end = new.index(gen.tokenizer.eos_token_id) + 1 if gen.tokenizer.eos_token_id in new else len(new)
            texts[i] = gen.tokenizer.decode(new[:end], skip_special_tokens=True).strip()
    return texts


if __name__ == "__main__":
    main()
