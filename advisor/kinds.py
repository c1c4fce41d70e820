"""The closed vocabularies the stages share: what family a strategy is, how a row is priced.

One place, so a family or pricing kind is compared as a value, never as a string
spelled five different ways. Both are `str` enums: they read and write as their
plain value in results.json.
"""
from __future__ import annotations

from enum import Enum


class Family(str, Enum):
    """What a strategy is made of; decides its ownership costs and what a knowledge change costs it."""

    PROMPTING = "prompting"
    RAG = "rag"
    FINETUNE = "finetune"
    FINETUNE_RAG = "finetune+rag"

    def __str__(self) -> str:
        return self.value

    @property
    def parts(self) -> tuple[str, ...]:
        """The approaches it combines ("finetune+rag" pays for both), as named in `economics.ownership`."""
        return tuple(self.value.split("+"))

    @property
    def trains(self) -> bool:
        return "finetune" in self.parts

    @property
    def retrieves(self) -> bool:
        return "rag" in self.parts


class PricingKind(str, Enum):
    """How a row's requests are priced (stated beside each row in the report)."""

    SELF_HOSTED = "self-hosted"  # measured seconds per request x the serving machine's price per hour
    HOSTED = "hosted"  # an endpoint's token prices
    MODEL_TOKEN_PRICES = "model token prices"  # a local model given token prices
    TASK_TOKEN_PRICES = "task token prices"  # the task's economics token prices

    def __str__(self) -> str:
        return self.value
