"""`advisor export`: what vLLM (or a merged-weights engine) gets gives the answers `advisor serve` gives.

The GPU half (`vllm serve` on the export) is benchmarks/vllm_check.py; here the export is
loaded back the way an engine loads it, with transformers and peft, on CPU.
"""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from openai import OpenAI

from tests.conftest import advisor
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


def test_lora_export_for_vllm_and_merged_answers_as_served(serve_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = tmp_path / "vllm"
    r = advisor("export", str(serve_run), str(dest), "--to", "vllm", "--strategy", "lora")
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ("base/config.json", "base/model.safetensors", "adapter/adapter_config.json",
              "adapter/adapter_model.safetensors", "chat_template.jinja", "recipe.json", "serve.sh", "README.md"):
        assert (dest / f).is_file(), f
    recipe = json.loads((dest / "recipe.json").read_text())
    assert recipe["vllm_command"].startswith("vllm serve base --chat-template chat_template.jinja")
    assert "--enable-lora --lora-modules lora=adapter --max-lora-rank 8" in recipe["vllm_command"]
    assert recipe["vllm_command"] in (dest / "serve.sh").read_text()
    assert recipe["vllm_command"] in (dest / "README.md").read_text() and recipe["adapter_rank"] == 2

    expected = served_answers(serve_run, "lora")
    assert all(expected)
    tok = AutoTokenizer.from_pretrained(dest / "base")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(dest / "base"), dest / "adapter").eval()
    template = (dest / "chat_template.jinja").read_text()
    assert [greedy(model, tok, q, template) for q in QUESTIONS] == expected

    merged_dir = tmp_path / "merged"
    r = advisor("export", str(serve_run), str(merged_dir), "--to", "merged", "--strategy", "lora")
    assert r.returncode == 0, r.stderr[-2000:]
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
