"""advisor: measure prompting vs RAG vs LoRA fine-tuning on one task, and recommend."""

__version__ = "0.1.0"
