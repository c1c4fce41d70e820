"""Each strategy on a tiny task with the real models: answers, token counts, retrieval, LoRA."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from advisor.task import load_task
from strategies import Context, registry
from advisor.training import AnswerOnlyLoss, collate, encode_example, train_lora
from advisor.retrieval import RagIndex, build_faiss, chunk_documents


@pytest.fixture
def ctx(tiny_task_dir, generator, embedder, tmp_path):
    task = load_task(tiny_task_dir)
    return Context(task, task.spec.seed, generator, lambda: embedder, tmp_path)


def test_registry_finds_every_strategy_file():
    names = list(registry())
    assert names[:3] == ["zero-shot", "few-shot", "few-shot-dynamic"]
    assert {"rag", "few-shot+rag", "lora", "lora+rag"} <= set(names)


def test_every_strategy_answers_with_token_counts(ctx):
    inputs = [ex.input for ex in ctx.task.eval]
    prompt_tokens = {}
    for name, cls in registry().items():
        s = cls(ctx)
        s.prepare()
        answers = s.answer(inputs)
        assert len(answers) == len(inputs), name
        for a, text in zip(answers, inputs):
            assert a.prompt_tokens == len(ctx.generator.chat_ids(s.messages(text)))
            assert 0 < a.completion_tokens <= ctx.task.spec.generation.max_new_tokens
            assert isinstance(a.text, str)
        prompt_tokens[name] = np.mean([a.prompt_tokens for a in answers])
    # The fine-tuned model answers without the long instructions: a shorter prompt.
    assert prompt_tokens["lora"] < prompt_tokens["few-shot"]
    assert prompt_tokens["lora+rag"] < prompt_tokens["few-shot+rag"]


def test_dynamic_few_shot_picks_nearest(ctx):
    from strategies.prompting import nearest_examples

    shots = nearest_examples(ctx, ["How many slots does the Orbit toaster have?"], 2)[0]
    assert shots[0].input == "How many slots does the toaster have?"


def test_retrieval_finds_the_planted_document(ctx):
    rag = registry()["rag"](ctx)
    rag.prepare()
    assert rag.retrieve("What does the Zephyr Kettle cost?")[0].source == "kettle.md"
    assert rag.retrieve("How long do I have to return an item?")[0].source == "returns.md"
    msgs = rag.messages("What does the Zephyr Kettle cost?")
    assert "(source: kettle.md" in msgs[-1]["content"] and ctx.task.instructions in msgs[0]["content"]


def test_chunks_overlap_and_keep_sections(embedder):
    from advisor.task import Document

    text = "# T\n\n## Part one\n" + " ".join(f"word{i}" for i in range(200)) + "\n\n## Part two\nshort section"
    chunks = chunk_documents([Document("d.md", text)], embedder.model.tokenizer, size=40, overlap=10)
    assert {c.section for c in chunks} == {"Part one", "Part two"}
    first, second = chunks[0].text.split(), chunks[1].text.split()
    assert set(first[-3:]) & set(second[:8])  # consecutive windows share tokens
    assert all(c.source == "d.md" for c in chunks)


def test_persisted_index_is_reused_and_only_changes_reembed(ctx, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "fresh-cache"))  # nothing embedded yet
    docs = ctx.task.documents
    e = ctx.embedder
    before = e.encode_calls
    first = RagIndex.build(docs, e, 32, 8, 20000)
    encoded_first = e.encode_calls - before
    assert encoded_first == len(first.chunks)
    again = RagIndex.build(docs, e, 32, 8, 20000)
    assert e.encode_calls - before == encoded_first  # loaded from disk, nothing re-embedded
    assert len(again.chunks) == len(first.chunks)
    from advisor.task import Document

    changed = [Document(d.id, d.text.replace("$73", "$79")) if d.id == "kettle.md" else d for d in docs]
    before = e.encode_calls
    RagIndex.build(changed, e, 32, 8, 20000)
    reembedded = e.encode_calls - before
    assert 0 < reembedded < len(first.chunks)  # only the kettle document's changed chunk


def test_approximate_index_recall_against_exact():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5000, 64)).astype("float32")
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[:200] + 0.05 * rng.standard_normal((200, 64)).astype("float32")
    exact, approx = build_faiss(base, approximate_above=10**9), build_faiss(base, approximate_above=100)
    assert type(approx).__name__ == "IndexHNSWFlat" and type(exact).__name__ == "IndexFlatIP"
    _, truth = exact.search(queries, 10)
    _, found = approx.search(queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall >= 0.95


def test_prompt_tokens_are_masked_in_labels(generator):
    enc = encode_example(generator, "What does the kettle cost?", "Hi! $73. Bye.", 256)
    prompt = generator.chat_ids([{"role": "user", "content": "What does the kettle cost?"}])
    assert enc.input_ids[: len(prompt)] == prompt
    assert enc.labels[: len(prompt)] == [-100] * len(prompt)
    learned = [t for t in enc.labels if t != -100]
    assert generator.tokenizer.decode(learned).startswith("Hi! $73. Bye.")
    assert learned[-1] == generator.tokenizer.eos_token_id


def test_lora_steps_lower_the_loss(generator):
    from peft import LoraConfig, get_peft_model

    rows = [encode_example(generator, "Say the code", "The code is ZEBRA-42.", 64)] * 4
    model = get_peft_model(generator.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    try:
        loss_fn = AnswerOnlyLoss(model)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
        batch = collate(rows, generator.tokenizer.pad_token_id, "cpu")
        losses = []
        for _ in range(5):
            loss = loss_fn(**batch)
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        assert losses[-1] < losses[0] * 0.8
    finally:
        generator.model = model.unload()


def test_saved_adapter_reloads_and_reproduces_answers(ctx, generator, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "fresh-cache"))  # really train, not reuse
    spec = ctx.task.spec.finetune
    pairs = [(e.input, e.output) for e in ctx.task.train]
    folder, metrics = train_lora(generator, pairs, spec, seed=0)
    assert (folder / "adapter_config.json").exists() and (folder / "adapter_model.safetensors").exists()
    assert metrics["tokens"] > 0 and metrics["history"] and not metrics["reused"]
    assert not any("lora" in n for n, _ in generator.model.named_modules())  # base restored

    from peft import PeftModel

    prompts = [generator.chat_ids([{"role": "user", "content": "Thanks a lot!"}])]
    with generator.adapter(folder):
        ours = generator.generate(prompts, 12, use_cache=False)[0].text
    peft_model = PeftModel.from_pretrained(generator.model, str(folder))
    ids = torch.tensor(prompts)
    out = peft_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    generator.model = peft_model.unload()
    theirs = generator.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert ours == theirs
    again, m2 = train_lora(generator, pairs, spec, seed=0)
    assert again == folder and m2["reused"]  # same task + config + base: reused, not retrained


@pytest.fixture(scope="module")
def generator_fp32():
    from advisor.models import Generator

    return Generator(dtype="float32")


def test_prefix_cache_gives_the_same_tokens_as_left_padding(generator_fp32):
    """The same computation laid out otherwise. In float32 the tokens match; in bf16 the other layout rounds
    otherwise, and greedy decoding can then pick another of two near-tied tokens (so this checks float32)."""
    generator = generator_fp32
    long_system = "You are a careful assistant. " * 20
    prompts = [generator.chat_ids([{"role": "system", "content": long_system}, {"role": "user", "content": q}])
               for q in ("What is 2+2?", "Name a colour.", "Say hello in French please.")]
    fast = generator.generate(prompts, 10, use_cache=False)
    import advisor.models as m

    old, m.PREFIX_CACHE_MIN = m.PREFIX_CACHE_MIN, 10**9
    try:
        plain = generator.generate(prompts, 10, use_cache=False)
    finally:
        m.PREFIX_CACHE_MIN = old
    assert [g.text for g in fast] == [g.text for g in plain]


def test_the_last_position_is_projected_without_copying_the_vocabulary_weight(generator):
    """Generate keeps only the last position when it prefills a batch: a strided slice, which torch.matmul
    multiplied row by row with the output weight expanded and copied for every row (864 MB for 16 rows)."""
    from torch.profiler import profile

    ids = torch.tensor([generator.chat_ids([{"role": "user", "content": f"Name a colour, {i}."}]) for i in range(4)])
    weight = generator.model.get_output_embeddings().weight
    with torch.inference_mode(), profile(profile_memory=True) as prof:
        logits = generator.model(input_ids=ids, logits_to_keep=1).logits
    assert logits.shape == (4, 1, weight.shape[0])
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert largest < weight.numel() * weight.element_size(), f"an allocation of {largest >> 20} MB"


def test_a_kept_prefix_gives_the_same_tokens_as_a_fresh_prefill(generator):
    long_system = "You are a careful assistant. " * 20
    prompts = [generator.chat_ids([{"role": "system", "content": long_system}, {"role": "user", "content": q}])
               for q in ("What is 2+2?", "Name a colour.", "Say hello in French please.")]
    generator._prefix_kv = None
    fresh = generator.generate(prompts, 10, use_cache=False)
    kept = generator._prefix_kv
    again = generator.generate(prompts, 10, use_cache=False)  # reuses the kept prefix
    assert kept is not None and generator._prefix_kv is kept
    assert [g.text for g in fresh] == [g.text for g in again]


def test_batches_are_bounded_by_rows_and_by_cache_tokens():
    """Short prompts fill large batches; long ones get as many rows as the cache budget allows."""
    from advisor.models import token_batches

    lengths = [900, 40, 950, 35, 45, 920]
    assert token_batches(lengths, 64, None, 48) == [[3, 1, 4, 0, 5, 2]]  # rows only: one batch, by length
    assert token_batches(lengths, 2, None, 48) == [[3, 1], [4, 0], [5, 2]]
    # 3 short prompts: 3 x (45 + 48) tokens; then 2 x (950 + 48) > 1,500, so each long prompt goes alone
    assert token_batches(lengths, 64, 1500, 48) == [[3, 1, 4], [0], [5], [2]]
    assert token_batches([5000], 64, 1500, 48) == [[0]]  # a prompt over the budget still gets its batch


def test_samples_are_seeded_per_sample_and_never_served_for_another(generator):
    prompt = [generator.chat_ids([{"role": "user", "content": "Write a random word."}])]
    s0 = generator.generate(prompt * 6, 8, temperature=1.5, sample_index=0)
    s1 = generator.generate(prompt * 6, 8, temperature=1.5, sample_index=1)
    s0_again = generator.generate(prompt * 6, 8, temperature=1.5, sample_index=0, use_cache=False)
    assert [g.text for g in s0] == [g.text for g in s0_again]  # seeded: reproducible
    assert [g.text for g in s0] != [g.text for g in s1]        # another sample is really sampled again


def test_several_samples_of_a_prompt_share_a_batch_and_keep_their_own_keys(generator):
    """Self-agreement draws every sample in one call; each is cached under its own sample index."""
    prompts = [generator.chat_ids([{"role": "user", "content": f"Write a random word about {w}."}])
               for w in ("tea", "rain")]
    both = generator.generate(prompts * 2, 8, temperature=1.5, sample_index=[1, 1, 2, 2])
    assert both[0].text != both[2].text or both[1].text != both[3].text  # draws differ within the batch
    again = generator.generate(prompts * 2, 8, temperature=1.5, sample_index=[1, 1, 2, 2], use_cache=False)
    assert [g.text for g in both] == [g.text for g in again]  # seeded by the batch's sample indices
    second = generator.generate(prompts, 8, temperature=1.5, sample_index=2)  # same keys: from the cache
    assert [g.text for g in second] == [both[2].text, both[3].text]


def test_too_long_prompt_drops_examples_then_fails_clearly(ctx, generator, monkeypatch):
    from strategies.base import ContextTooLong

    few = registry()["few-shot"](ctx)
    few.prepare()
    text = ctx.task.eval[0].input
    full = generator.chat_ids(few._fit(text)[0])
    bare = len(generator.chat_ids(few.messages(text, drop=len(few.shots))))
    max_new = ctx.task.spec.generation.max_new_tokens
    # A window that fits the prompt with one example fewer: one example is dropped, and that is recorded.
    monkeypatch.setattr(generator, "context_window", len(full) - 1 + max_new)
    messages, dropped = few._fit(text)
    ids = generator.chat_ids(messages)
    assert dropped >= 1 and len(ids) + max_new <= generator.context_window
    # A window too small even with no examples: a clear error, never a silent cut.
    monkeypatch.setattr(generator, "context_window", bare - 1 + max_new)
    with pytest.raises(ContextTooLong, match="even with no few-shot examples"):
        few._fit(text)


def test_lora_rag_trains_its_own_adapter_on_prompts_with_passages(ctx):
    """Retrieval-aware fine-tuning: the lora+rag adapter learns from the prompts it will see (passages included)."""
    import safetensors.torch

    def finetune(mode):
        return ctx.task.spec.finetune.model_copy(update={"retrieval_aware": mode})

    reg = registry()
    lora, lora_rag = reg["lora"](ctx), reg["lora+rag"](ctx)
    lora.prepare()
    ctx.task.spec.finetune = finetune("separate")
    lora_rag.prepare()
    plain, aware = lora.setup.details["training"], lora_rag.setup.details["training"]
    assert lora_rag.adapter_path != lora.adapter_path
    assert (lora_rag.adapter_path / "adapter_model.safetensors").exists()
    # Same answers learned (same answer tokens), from longer prompts: the passages were in them.
    assert aware["answer_tokens_per_epoch"] == plain["answer_tokens_per_epoch"]
    assert aware["tokens"] > 1.5 * plain["tokens"]
    assert lora_rag.setup.train_seconds == aware["train_seconds"]

    # warm-start (the fast budget): the plain adapter, trained one more epoch with passages.
    ctx.task.spec.finetune = finetune("warm-start")
    warm = reg["lora+rag"](ctx)
    warm.prepare()
    extra = warm.setup.details["training"]
    assert warm.adapter_path not in (lora.adapter_path, lora_rag.adapter_path)
    assert warm.setup.details["started_from"] == str(lora.adapter_path)
    assert extra["epochs_run"] == 1 and extra["tokens"] > 1.5 * plain["tokens"] / plain["epochs_run"]
    # Making this adapter takes both trainings, and the economics must charge both.
    assert warm.setup.train_seconds == extra["train_seconds"] + plain["train_seconds"]
    weights = safetensors.torch.load_file(warm.adapter_path / "adapter_model.safetensors")
    started = safetensors.torch.load_file(lora.adapter_path / "adapter_model.safetensors")
    assert weights.keys() == started.keys() and any(not (weights[k] == started[k]).all() for k in weights)

    ctx.task.spec.finetune = finetune("off")
    shared = reg["lora+rag"](ctx)
    shared.prepare()
    assert shared.adapter_path == lora.adapter_path
