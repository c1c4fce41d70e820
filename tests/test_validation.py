"""Validation catches every mistake at once: exit 2, each named with file and line or field, nothing written.

The property test writes task files with any combination of the mistake classes
from issue 21 (out-of-range seeds, unknown or empty strategy lists, infinite or
NaN numbers, duplicate YAML keys, mutually exclusive fields, a file that is not
UTF-8) and runs the real CLI on them. Fine-tuning names, leakage and
`advisor init --from` are here too.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from advisor import leakage
from advisor.cli import app
from advisor.task import (FINETUNE_RENAMED, LORA_CONFIG_NAMES, SEED_LIMIT, TRAINING_ARGUMENT_NAMES, Example,
                          FinetuneSpec, TaskError, load_task)
from tests.conftest import advisor, write_task

# Each mistake: (what it does to the task folder, words the one error message must contain for it).
MISTAKES = {
    "negative seed": (lambda t: t.replace_field("seed", "-3"), "field seed"),
    "huge seed": (lambda t: t.replace_field("seed", str(SEED_LIMIT)), "field seed"),
    "unknown strategy": (lambda t: t.unknown_strategy(), "unknown strategy 'no-such-row'"),
    "empty strategies": (lambda t: t.set_field("strategies", []), "field strategies"),
    "infinite price": (lambda t: t.set_nested("economics", "input_price_per_mtok", ".inf"),
                       "economics.input_price_per_mtok: must be a finite number"),
    "nan rate": (lambda t: t.set_nested("finetune", "learning_rate", ".nan"), "finetune.learning_rate: must be a finite"),
    "duplicate key": (lambda t: t.append("name: tiny-again"), "field name: duplicate key"),
    "both instructions": (lambda t: t.both_instructions(), "give `instructions` or `instructions_file`, not both"),
    "latin-1 eval": (lambda t: t.latin1_eval(), "eval.jsonl: line 1: is not valid UTF-8 text"),
    "old and new name": (lambda t: t.set_nested("finetune", "lora_alpha", "16"), "give lora_alpha or its old name alpha"),
}


class TaskText:
    """A task folder whose task.yaml is edited as text (duplicate keys cannot be written through a dict)."""

    def __init__(self, root):
        self.root = root
        spec = yaml.safe_load((root / "task.yaml").read_text())
        spec["finetune"]["alpha"] = spec["finetune"].pop("lora_alpha")  # an old name: a notice, not an error
        spec.pop("seed", None)
        self.top = {k: v for k, v in spec.items()}
        self.extra: list[str] = []

    def set_field(self, key, value):
        self.top[key] = value

    def unknown_strategy(self):
        if "strategies" in self.top:  # `strategies: []` is already another mistake: name it in models.use instead
            self.top["models"] = {"use": {"no-such-row": "default"}}
        else:
            self.top["strategies"] = ["few-shot", "no-such-row"]

    def replace_field(self, key, text):
        self.extra.append(f"{key}: {text}")

    def set_nested(self, section, key, text):
        self.top[section] = dict(self.top.get(section) or {})
        self.top[section][key] = f"@@{text}@@"

    def append(self, line):
        self.extra.append(line)

    def both_instructions(self):
        (self.root / "style.md").write_text("Be brief.")
        self.top["instructions_file"] = "style.md"

    def latin1_eval(self):
        (self.root / "eval.jsonl").write_bytes('{"input": "café?", "answers": ["x"]}\n'.encode("latin-1"))

    def write(self, bom: bool):
        text = yaml.safe_dump(self.top, sort_keys=False)
        text = text.replace("'@@", "").replace("@@'", "")  # unquote .inf / .nan / numbers put in as text
        text += "".join(line + "\n" for line in self.extra)
        (self.root / "task.yaml").write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(chosen=st.sets(st.sampled_from(sorted(MISTAKES)), min_size=1, max_size=len(MISTAKES)), bom=st.booleans())
def test_every_mistake_is_named_in_one_message(tmp_path_factory, chosen, bom):
    base = tmp_path_factory.mktemp("mistakes")
    if "negative seed" in chosen and "huge seed" in chosen:
        chosen = chosen - {"huge seed"}  # two seeds would be a duplicate key, another class
    task = TaskText(write_task(base / "task"))
    for name in sorted(chosen):
        MISTAKES[name][0](task)
    task.write(bom)  # a byte-order mark is accepted, so it never adds a problem
    out = base / "out"
    result = CliRunner().invoke(app, ["run", str(base / "task"), "--out", str(out)])
    text = " ".join(result.output.split())  # one message; rich may wrap long lines
    assert result.exit_code == 2, (chosen, result.output)
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    for name in chosen:
        assert MISTAKES[name][1] in text, (name, result.output)
    if chosen - {"latin-1 eval"}:
        assert "task.yaml: line" in text  # problems in task.yaml name their line
    assert not out.exists()


def test_one_clean_task_passes_the_same_cli(tmp_path):
    task = TaskText(write_task(tmp_path / "task"))
    task.write(bom=True)
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "task")])
    assert result.exit_code == 0, result.output
    assert "`alpha` is deprecated; use `lora_alpha`" in " ".join(result.output.split())


def test_cli_seed_override_is_range_checked(tmp_path):
    root = write_task(tmp_path / "task")
    for seed in ("-1", str(SEED_LIMIT)):
        result = CliRunner().invoke(app, ["run", str(root), "--out", str(tmp_path / "out"), "--seed", seed])
        assert result.exit_code == 2 and "--seed" in result.output and not (tmp_path / "out").exists()


def test_roi_refuses_infinite_assumptions(finished_run):
    before = (finished_run.out / "results.json").read_bytes()
    result = CliRunner().invoke(app, ["roi", str(finished_run.out), "--requests-per-day", "inf", "--write"])
    assert result.exit_code == 2 and "finite" in result.output and "Traceback" not in result.output
    assert (finished_run.out / "results.json").read_bytes() == before


def test_strategy_names_are_checked_only_against_what_the_caller_knows(tmp_path):
    root = write_task(tmp_path / "t", strategies=["few-shot", "mystery"])
    assert load_task(root).spec.strategies == ["few-shot", "mystery"]  # library use: no registry, no check
    with pytest.raises(TaskError) as e:
        load_task(root, strategies={"few-shot": "prompting", "lora": "finetune"})
    assert e.value.where.startswith("line ") and e.value.where.endswith("field strategies.1")
    assert "unknown strategy 'mystery'" in e.value.message
    imports = [line for line in open("advisor/task.py").read().splitlines() if line.lstrip().startswith(("import", "from"))]
    assert imports and not any("strategies" in line for line in imports)  # no import cycle with the strategies


# ----------------------------------------------------------------- fine-tuning names


def test_finetune_names_are_the_installed_libraries_names():
    from peft import LoraConfig
    from transformers import TrainingArguments

    lora = {f.name for f in dataclasses.fields(LoraConfig)}
    training = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(LORA_CONFIG_NAMES) <= lora and set(TRAINING_ARGUMENT_NAMES) <= training
    assert set(LORA_CONFIG_NAMES + TRAINING_ARGUMENT_NAMES) <= set(FinetuneSpec.model_fields)
    assert set(FINETUNE_RENAMED.values()) <= set(LORA_CONFIG_NAMES + TRAINING_ARGUMENT_NAMES)
    old = FinetuneSpec.model_validate({"alpha": 8, "epochs": 3, "batch_size": 2, "grad_accum": 2, "dropout": 0.1,
                                       "warmup_ratio": 0.2})
    assert old == FinetuneSpec(lora_alpha=8, num_train_epochs=3, per_device_train_batch_size=2,
                               gradient_accumulation_steps=2, lora_dropout=0.1, warmup_steps=0.2)
    assert [FinetuneSpec(warmup_steps=w).warmup(50) for w in (0.0, 0.1, 0.5, 7)] == [1, 5, 25, 7]
    with pytest.raises(ValueError, match="whole number"):
        FinetuneSpec(warmup_steps=2.5)


def test_a_library_setting_advisor_does_not_use_is_named_as_such(tmp_path):
    root = write_task(tmp_path / "t", finetune={"r": 4, "bias": "all", "lr_scheduler_type": "cosine", "colour": 1})
    with pytest.raises(TaskError) as e:
        load_task(root)
    text = str(e.value)
    assert "finetune.bias: unknown field: bias is a peft LoraConfig setting advisor does not use" in text
    assert "lr_scheduler_type is a transformers TrainingArguments setting" in text
    assert "finetune.colour: unknown field (check the spelling)" in text


def test_warmup_and_weight_decay_take_effect(generator, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from advisor.training import train_lora

    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "cache"))
    pairs = [("What does the kettle cost?", "Hi! $73. Bye."), ("Toaster slots?", "Hi! 4 slots. Bye.")] * 2  # 2 steps
    base = dict(r=2, lora_alpha=4, num_train_epochs=1, per_device_train_batch_size=2, val_fraction=0.0,
                lora_dropout=0.0, learning_rate=0.01, target_modules=["q_proj"])
    weights = {}
    for name, extra in {"base": {}, "decay": {"weight_decay": 0.5}, "warmup": {"warmup_steps": 2}}.items():
        folder, _ = train_lora(generator, pairs, FinetuneSpec(**base, **extra), seed=0)
        weights[name] = load_file(str(folder / "adapter_model.safetensors"))
    for name in ("decay", "warmup"):
        assert any(not weights[name][k].equal(weights["base"][k]) for k in weights["base"]), name


# ----------------------------------------------------------------------- leakage


def _ex(i, text):
    return Example(id=i, input=text, output="x")


def test_leakage_finds_duplicates_and_near_duplicates_only():
    train = [_ex("t1", "How much is the Zephyr Kettle?"), _ex("t2", "Do you ship abroad to Canada or Mexico today?"),
             _ex("t3", "What colours does the toaster come in?")]
    evaluated = [_ex("e1", "how much is the zephyr kettle"),                  # same words: a duplicate
                 _ex("e2", "Do you ship abroad to Canada or Mexico, today??"),  # punctuation only
                 _ex("e3", "Do you ship abroad to Canada or Mexico tomorrow?"),  # one word changed
                 _ex("e4", "What is the return window?")]
    found = {(o.eval_id, o.train_id): o.similarity for o in leakage.find_overlaps(train, evaluated)}
    assert found[("e1", "t1")] == 1.0 and found[("e2", "t2")] == 1.0
    assert ("e3", "t2") not in found  # 6 of 8 word 3-grams shared: 0.75, below the default 0.8
    loose = {(o.eval_id, o.train_id): o.similarity for o in leakage.find_overlaps(train, evaluated, threshold=0.7)}
    assert loose[("e3", "t2")] == 0.75
    assert not any(e == "e4" for e, _ in loose)


def test_strict_refuses_a_leaking_task_and_names_the_pair(tmp_path):
    root = write_task(tmp_path / "t")
    rows = [json.loads(line) for line in (root / "eval.jsonl").read_text().splitlines()]
    rows[2]["input"] = "thanks a LOT!"  # train has "Thanks a lot!"
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    warn = CliRunner().invoke(app, ["validate", str(root)])
    assert warn.exit_code == 0 and "eval 's1' duplicates train 'train-4'" in warn.output
    strict = CliRunner().invoke(app, ["run", str(root), "--out", str(tmp_path / "out"), "--strict"])
    assert strict.exit_code == 2 and "--strict refuses" in strict.output and not (tmp_path / "out").exists()


# Pairs data/README.md explains (n-gram check, embedding check); anything else found fails the test.
EXPLAINED = {"json_orders": (set(), set()), "quick_facts": (set(), {("q04", "train-75")}), "support": (set(), set())}


@pytest.mark.parametrize("name", sorted(EXPLAINED))
def test_sample_tasks_do_not_leak(name, embedder):
    task = load_task(f"data/{name}")
    ngram = leakage.check_task(task)
    assert {(o.eval_id, o.train_id) for o in ngram} == EXPLAINED[name][0], [str(o) for o in ngram]
    similar = leakage.find_similar(task.train, task.eval + task.eval_updated, embedder)
    assert {(o.eval_id, o.train_id) for o in similar} == EXPLAINED[name][1], [str(o) for o in similar]


def test_support_freshness_set_asks_about_facts_only_its_updated_documents_state():
    """Each changed fact (issue 31: at least 20, so the freshness check can tell rows apart) is scored by the
    task's own scoring: its updated sentence scores 1 and the original sentence 0, and no original document,
    other updated document or training row states the new value."""
    from advisor.scoring import score

    task = load_task("data/support")
    sc, original = task.spec.scoring, {d.id: d.text for d in task.documents}
    updated = {d.id: d.text for d in task.updated_documents}
    assert len(task.eval_updated) >= 20 and len({ex.id for ex in task.eval_updated}) == len(task.eval_updated)
    for ex in task.eval_updated:
        assert ex.tags == ("knowledge", "changed") and ex.source in updated, ex.id
        changed = [(old, new) for old, new in zip(original[ex.source].splitlines(), updated[ex.source].splitlines())
                   if old != new and score(new, ex, sc) == 1]
        assert len(changed) >= 1 and all(score(old, ex, sc) == 0 for old, _ in changed), ex.id
        assert score(ex.output, ex, sc) == 1, ex.id
        assert not [d for d, text in original.items() if score(text, ex, sc)], ex.id
        assert not [d for d, text in updated.items() if d != ex.source and score(text, ex, sc)], ex.id
        assert not [e.id for e in task.train if score(f"{e.input} {e.output}", ex, sc)], ex.id


def test_support_knowledge_items_ask_facts_only_their_source_document_states():
    """Each knowledge item is answerable from its `source` and only from it (task's own scoring: the document
    scores 1, every other document 0), no training row states the fact (so a fine-tuned row cannot learn it),
    and the question does not give its answer away; the items cover all 10 documents."""
    from advisor.scoring import score

    task = load_task("data/support")
    sc, docs = task.spec.scoring, {d.id: d.text for d in task.documents}
    knowledge = [ex for ex in task.eval if "knowledge" in ex.tags]
    assert {ex.source for ex in knowledge} == set(docs)
    for ex in knowledge:
        assert score(docs[ex.source], ex, sc) == 1 and score(ex.output, ex, sc) == 1, ex.id
        assert not [d for d, text in docs.items() if d != ex.source and score(text, ex, sc)], ex.id
        assert not [e.id for e in task.train if score(f"{e.input} {e.output}", ex, sc)], ex.id
        assert not [q for q in (ex.input, *ex.paraphrases) if score(q, ex, sc)], ex.id


def test_embedding_check_finds_rewordings_the_ngram_check_misses(embedder):
    train = [_ex("t1", "How much does the Zephyr Kettle cost?"), _ex("t2", "Which cities do you deliver to?")]
    evaluated = [_ex("e1", "What is the price of the Zephyr Kettle?"), _ex("e2", "Can I pay by card?")]
    assert leakage.find_overlaps(train, evaluated) == []
    found = leakage.find_similar(train, evaluated, embedder)  # cosine 0.97 with MiniLM
    assert [(o.eval_id, o.train_id, o.method) for o in found] == [("e1", "t1", "embedding")]


# ---------------------------------------------------------------- init --from


def test_init_from_csv_guesses_the_mapping_and_makes_a_valid_task(tmp_path):
    data = tmp_path / "export.csv"
    lines = ["ticket_id,question,answer,category"]
    lines += [f"{i},How do I do thing {i}?,You do thing {i} like this.,{'billing' if i % 3 else 'tech'}" for i in range(20)]
    data.write_text("\n".join(lines) + "\n")
    folder = tmp_path / "task"
    r = advisor("init", str(folder), "--from", str(data), input="y\n")
    assert r.returncode == 0, r.stderr
    assert "input        <- question" in r.stdout and "output       <- answer" in r.stdout
    assert "tags         <- category" in r.stdout and "id           <- ticket_id" in r.stdout
    t = load_task(folder)
    assert len(t.train) == 16 and len(t.eval) == 4 and t.split["stratified_by"] == "first tag"
    assert t.train[0].input.startswith("How do I do thing")
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [
        {"role": "system", "content": "Answer with the number only."}, {"role": "user", "content": f"What is {i} plus {i}?"},
        {"role": "assistant", "content": str(2 * i)}]}) + "\n" for i in range(10)))
    r = advisor("init", str(tmp_path / "chat-task"), "--from", str(chat), "--yes")
    assert r.returncode == 0 and "messages     <- messages" in r.stdout, r.stderr
    t = load_task(tmp_path / "chat-task")
    assert t.instructions == "Answer with the number only." and len(t.eval) == 2 and t.train[0].output.isdigit()
    refused = advisor("init", str(tmp_path / "no"), "--from", str(data), input="n\n")  # then no picks
    assert refused.returncode != 0 and not (tmp_path / "no").exists()
    picked = advisor("init", str(tmp_path / "picked"), "--from", str(data), input="n\nquestion\nanswer\n-\n")
    assert picked.returncode == 0, picked.stderr
    assert load_task(tmp_path / "picked").spec.columns.model_dump(exclude_none=True) == {
        "input": "question", "output": "answer", "id": "ticket_id"}
