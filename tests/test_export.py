"""`advisor export`: what vLLM (or a merged-weights engine) gets gives the answers `advisor serve` gives.

The GPU half (`vllm serve` on the export) is benchmarks/vllm_check.py; here the export is
loaded back the way an engine loads it, with transformers and peft, on CPU, after the
folder has moved (nothing in it may name the exporting machine's folders).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from openai import OpenAI

from tests.conftest import advisor, write_task
from tests.test_ci import SMALL
from tests.test_endpoint import free_port, start_advisor, stop

QUESTIONS = ["Thanks a lot!", "How much is the Zephyr Kettle?", "Can I return things?"]
MAX_TOKENS = 12


def served_answers(run, strategy: str) -> list[str]:
    port = free_port()
    proc = start_advisor("serve", str(run), "--strategy", strategy, "--port", str(port),
                         ready_url=f"http://127.0.0.1:{port}/health")
    try:
        c = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=300)
        return [c.chat.completions.create(model=strategy, messages=[{"role": "user", "content": q}],
                                          max_tokens=MAX_TOKENS, temperature=0).choices[0].message.content
                for q in QUESTIONS]
    finally:
        stop(proc)


def greedy(model, tokenizer, question: str, template: str | None = None) -> str:
    """One answer as an engine computes it: the chat template (earlier turns are dropped by it), greedy."""
    messages = [{"role": "user", "content": "an earlier turn the recipe drops"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": question}]
    enc = tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                        tokenize=True, return_dict=True, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=MAX_TOKENS, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def moved(export: Path, to: Path, machine_paths: list[Path]) -> Path:
    """The export moved elsewhere, after checking no file in it names a folder of the machine that exported it."""
    for f in (p for p in export.rglob("*") if p.is_file()):
        data = f.read_bytes()
        for path in machine_paths:
            assert str(path).encode() not in data, f"{f.relative_to(export)} names {path}"
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(export, to)
    return to


def test_lora_export_for_vllm_and_merged_answers_as_served_after_a_move(serve_run, tmp_path, monkeypatch):
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from advisor.results import load_results

    adapter = Path(load_results(serve_run).strategy("lora").setup.adapter)
    machine = [serve_run.resolve(), Path(os.environ["ADVISOR_CACHE"]).resolve(), adapter, tmp_path.resolve()]
    exported = tmp_path / "vllm"
    r = advisor("export", str(serve_run), str(exported), "--to", "vllm", "--strategy", "lora")
    assert r.returncode == 0, r.stderr[-2000:]
    dest = moved(exported, tmp_path.parent / f"{tmp_path.name}-elsewhere" / "lora", machine)
    for f in ("base/config.json", "base/model.safetensors", "adapter/adapter_config.json",
              "adapter/adapter_model.safetensors", "chat_template.jinja", "recipe.json", "serve.sh", "README.md"):
        assert (dest / f).is_file(), f
    recipe = json.loads((dest / "recipe.json").read_text())
    assert recipe["vllm_command"].startswith("vllm serve base --chat-template chat_template.jinja")
    assert "--enable-lora --lora-modules lora=adapter --max-lora-rank 8" in recipe["vllm_command"]
    assert recipe["vllm_command"] in (dest / "serve.sh").read_text()
    assert recipe["vllm_command"] in (dest / "README.md").read_text() and recipe["adapter_rank"] == 2
    assert json.loads((dest / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "base"

    expected = served_answers(serve_run, "lora")
    assert all(expected)
    template = (dest / "chat_template.jinja").read_text()
    # as the export's README says: from inside the folder, the adapter onto ./base
    monkeypatch.chdir(dest)
    tok = AutoTokenizer.from_pretrained("base")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("base"), "adapter").eval()
    assert [greedy(model, tok, q, template) for q in QUESTIONS] == expected
    auto = AutoPeftModelForCausalLM.from_pretrained("adapter").eval()  # finds its base by adapter_config.json
    assert [greedy(auto, tok, q, template) for q in QUESTIONS] == expected

    exported = tmp_path / "merged"
    r = advisor("export", str(serve_run), str(exported), "--to", "merged", "--strategy", "lora")
    assert r.returncode == 0, r.stderr[-2000:]
    merged_dir = moved(exported, tmp_path.parent / f"{tmp_path.name}-elsewhere" / "merged", machine)
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    merged_tok = AutoTokenizer.from_pretrained(merged_dir)  # the recipe is its own chat template
    assert [greedy(merged, merged_tok, q) for q in QUESTIONS] == expected


@pytest.mark.parametrize("strategy", ["few-shot", "rag"])
def test_exported_recipe_sends_the_strategys_prompt(serve_run, tmp_path, strategy):
    """The chat template (and for RAG the client's retrieval) make exactly the token ids advisor generates from."""
    from advisor.serve import load_strategy

    dest = tmp_path / strategy
    r = advisor("export", str(serve_run), str(dest), "--to", "vllm", "--strategy", strategy)
    assert r.returncode == 0, r.stderr[-2000:]
    template = (dest / "chat_template.jinja").read_text()
    rebuilt = load_strategy(serve_run, strategy, lambda line: None)
    gen = rebuilt.generator
    user = lambda q: q  # noqa: E731
    if strategy == "rag":
        assert (dest / "retrieval" / "index.faiss").is_file() and "client.py" in (dest / "README.md").read_text()
        spec = importlib.util.spec_from_file_location("exported_client", dest / "client.py")
        client = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(client)
        user = client.Retriever(dest).user_message
    for q in QUESTIONS:
        exported = gen.tokenizer.apply_chat_template(
            [{"role": "user", "content": "dropped"}, {"role": "user", "content": user(q)}], chat_template=template,
            add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        assert list(exported) == gen.chat_ids(rebuilt.strategy.prompt(q))


def test_export_refuses_bad_targets_and_folders(serve_run, tmp_path):
    r = advisor("export", str(serve_run), str(tmp_path / "x"), "--to", "tgi")
    assert r.returncode == 2 and "--to 'tgi': choose one of vllm, merged" in r.stderr and not (tmp_path / "x").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    r = advisor("export", str(serve_run), str(tmp_path / "full"), "--to", "vllm")
    assert r.returncode == 2 and "exists and is not empty" in r.stderr
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    r = advisor("export", str(serve_run), str(tmp_path / "y"), "--to", "vllm", "--strategy", "zero-shot")
    assert r.returncode == 2 and "not in this run" in r.stderr and not (tmp_path / "y").exists()
    assert "Traceback" not in r.stderr


INSTRUCTIONS = ("Tu es l'assistant du magasin 🛒: réponds en une ligne, 'Hi!' d'abord, 'Bye.' à la fin 🙂. "
                "店 {{ not code }} {% raw %} %} #} \\ \" — ok")


def test_chat_template_keeps_non_ascii_and_emoji(generator):
    """Rendered as vLLM renders it (transformers' apply_chat_template, jinja2's sandbox), the wrapped template gives
    exactly the messages' own rendering: emoji, accents, CJK, and Jinja syntax as plain text."""
    from advisor.export import wrap_chat_template

    tok = generator.tokenizer
    prefix = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": "Bonjour 👋"},
              {"role": "assistant", "content": "Hi! Salut 😀 Bye."}]
    template = wrap_chat_template(tok.chat_template, prefix)
    last = {"role": "user", "content": "Où est ma commande 📦?"}
    wrapped = tok.apply_chat_template([{"role": "user", "content": "dropped"}, last], chat_template=template,
                                      add_generation_prompt=True, tokenize=False)
    assert wrapped == tok.apply_chat_template(prefix + [last], add_generation_prompt=True, tokenize=False)
    assert INSTRUCTIONS in wrapped and "😀" in wrapped and "📦" in wrapped


@pytest.fixture(scope="module")
def emoji_run(tmp_path_factory) -> Path:
    """A small run of the tiny task whose instructions hold emoji, accents and Jinja syntax."""
    root = tmp_path_factory.mktemp("emoji-run")
    task = write_task(root / "task", instructions=INSTRUCTIONS, **SMALL)
    r = advisor("run", str(task), "--out", str(root / "out"), "--no-history", "-s", "few-shot", "--limit", "2",
                "--no-freshness", "--no-forgetting")
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "out"


def test_vllm_and_merged_exports_keep_emoji_instructions(emoji_run, tmp_path):
    from transformers import AutoTokenizer

    from advisor.serve import load_strategy

    rebuilt = load_strategy(emoji_run, "few-shot", lambda line: None)
    for to in ("vllm", "merged"):
        r = advisor("export", str(emoji_run), str(tmp_path / to), "--to", to, "--strategy", "few-shot")
        assert r.returncode == 0, r.stderr[-2000:]
        if to == "vllm":
            tok = AutoTokenizer.from_pretrained(tmp_path / to / "base")
            template = (tmp_path / to / "chat_template.jinja").read_text(encoding="utf-8")
        else:
            tok, template = AutoTokenizer.from_pretrained(tmp_path / to), None  # its own chat template
        for q in QUESTIONS + ["Où est ma commande 📦?"]:
            ids = tok.apply_chat_template([{"role": "user", "content": "dropped"}, {"role": "user", "content": q}],
                                          chat_template=template, add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"]
            assert list(ids) == rebuilt.generator.chat_ids(rebuilt.strategy.prompt(q)), (to, q)
            assert INSTRUCTIONS in tok.decode(ids)


def test_a_lora_rank_vllm_cannot_serve_is_refused_before_anything_is_written(serve_run, tmp_path):
    from advisor.export import VLLM_LORA_RANKS, max_lora_rank

    assert [max_lora_rank(r, "x") for r in (1, 2, 8, 9, 300, 320, 512)] == [1, 8, 8, 16, 320, 320, 512]
    assert VLLM_LORA_RANKS == (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm/config/lora.py MaxLoRARanks
    # The run as it is, but its lora row's adapter (a copy) says rank 1024, or 600 for one module.
    data = json.loads((serve_run / "results.json").read_text())
    row = next(s for s in data["strategies"] if s["name"] == "lora")
    trained = row["setup"]["adapter"]
    for rank, says in ((1024, "rank 1024"), (600, "rank 600")):
        big = tmp_path / f"adapter-{rank}"
        shutil.copytree(trained, big)
        config = json.loads((big / "adapter_config.json").read_text())
        config |= {"r": rank} if rank == 1024 else {"rank_pattern": {"q_proj": rank}}
        (big / "adapter_config.json").write_text(json.dumps(config))
        run = tmp_path / f"run-{rank}"
        run.mkdir()
        row["setup"]["adapter"] = str(big)
        (run / "results.json").write_text(json.dumps(data))
        r = advisor("export", str(run), str(tmp_path / f"x-{rank}"), "--to", "vllm", "--strategy", "lora")
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        err = " ".join(r.stderr.split())
        assert says in err and "vLLM serves ranks up to 512" in err and "--to merged" in err
        assert not (tmp_path / f"x-{rank}").exists()
