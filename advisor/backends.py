"""Which backend answers for a generator spec: a local model or an OpenAI-compatible endpoint.

It sits above both `models` and `endpoint`, so each of those imports only what is
below it.
"""
from __future__ import annotations

from advisor.endpoint import EndpointGenerator
from advisor.models import EMBEDDED, Generator
from advisor.task import GeneratorSpec, ModelsSpec


def load_generator(spec: GeneratorSpec, name: str = "default", dtype: str = "auto") -> Generator | EndpointGenerator:
    """A local Generator for `hf`, an EndpointGenerator (checked reachable) for `endpoint`.

    Either fails with a ModelError naming the model and the reason, before any expensive work starts.
    """
    if spec.endpoint is not None:
        gen = EndpointGenerator(spec, name)
        gen.check()
        return gen
    return Generator(spec.hf or EMBEDDED, dtype)


def load_generators(models: ModelsSpec, strategies: list[str], endpoints: bool) -> dict[str, object]:
    """Generator name -> loaded generator, for the generators these strategies use.

    `endpoints=True` loads (and checks) only the endpoints, `False` only the local
    models: the cheap network checks run before anything is written, the local
    loads under the progress bar. One copy of a local model however many names point at it.
    """
    out: dict[str, object] = {}
    local: dict[str, Generator] = {}
    for strategy in strategies:
        name, spec = models.for_strategy(strategy)
        if name in out or spec.is_endpoint != endpoints:
            continue
        if spec.is_endpoint:
            out[name] = load_generator(spec, name)
        else:
            out[name] = local[spec.hf] = local.get(spec.hf) or load_generator(spec, name, models.dtype)
    return out
