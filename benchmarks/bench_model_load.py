"""Model load: the cached, already de-quantized weights vs de-quantizing the GGUF on every start.

    python benchmarks/bench_model_load.py [--repeats 3]

Baseline: `from_pretrained(gguf_file=...)`, what a tool without a weights cache
pays on every start. Advisor: `Generator()` with the converted safetensors in the
cache (the first run pays the conversion once; timed here too, in a fresh cache).
Library imports are paid once per process by both and timed separately.
Goal (issue 8): warm load under 2 s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile

from common import machine, print_table, quiet, timed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    os.environ["ADVISOR_CACHE"] = tempfile.mkdtemp(prefix="bench-load-")
    with timed() as imports:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from advisor import models
    quiet()
    print(machine())

    gguf_dir = models._package_dir(models._GGUF_PACKAGE, "")
    with timed() as first:  # empty cache: de-quantize, save, load
        models.Generator()
    naive, warm, embed = [], [], []
    for _ in range(args.repeats):
        with timed() as t:
            AutoTokenizer.from_pretrained(gguf_dir, gguf_file=models._GGUF_FILE)
            AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=models._GGUF_FILE, dtype=torch.float32).eval()
        naive.append(t.seconds)
        with timed() as t:
            models.Generator()
        warm.append(t.seconds)
        with timed() as t:
            models.Embedder()
        embed.append(t.seconds)
    n, w = statistics.median(naive), statistics.median(warm)
    print_table(
        f"Model load, SmolLM2-135M (median of {args.repeats})",
        ["path", "seconds", "vs warm"],
        [["imports (torch, transformers; once per process)", imports.seconds, ""],
         ["naive: de-quantize GGUF on every start", n, f"{n / w:.1f}x"],
         ["advisor first run: de-quantize + save to cache + load", first.seconds, f"{first.seconds / w:.1f}x"],
         ["advisor warm: load cached safetensors", w, "1.0x"],
         ["embedder (MiniLM, sentence-transformers)", statistics.median(embed), ""]],
        note=f"speed-up warm vs GGUF every start: {n / w:.1f}x; goal warm < 2 s: {'met' if w < 2 else 'MISSED'}",
    )


if __name__ == "__main__":
    main()
