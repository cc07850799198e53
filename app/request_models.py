"""Request schemas built from model manifests: a model's own parameters are validated like built-in fields."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from model_store.manifest import Manifest, Parameter

MAX_SEED = 2**63 - 1


def _integral(value: Any) -> Any:
    """1.0 is the integer 1 in JSON (and in JSON Schema, so in the OpenAPI document): accept it as one."""
    return int(value) if type(value) is float and value.is_integer() else value


Integer = Annotated[int, BeforeValidator(_integral)]
OptionalInteger = Annotated[int | None, BeforeValidator(_integral)]  # not `Integer | None`: its JSON schema loses the bounds
_PY_TYPES: dict[str, Any] = {"integer": Integer, "number": float, "boolean": bool}


def _parameter_field(param: Parameter) -> tuple[Any, Any]:
    annotation: Any = Literal[tuple(param.enum)] if param.enum else _PY_TYPES[param.type]
    return annotation, Field(param.default, description=param.description, ge=param.minimum, le=param.maximum)


def example(manifest: Manifest) -> dict[str, Any]:
    return {
        "num_samples": 100,
        "seed": 42,
        "format": manifest.formats[0],
        **{name: (p.enum[-1] if p.enum else p.default) for name, p in manifest.parameters.items()},
    }


@lru_cache(maxsize=256)
def _request_model(manifest_json: str, max_samples: int) -> type[BaseModel]:
    manifest = Manifest.model_validate_json(manifest_json)
    fields: dict[str, Any] = {
        "num_samples": (Integer, Field(1, ge=1, le=max_samples, description=f"How many samples, 1 to {max_samples}.")),
        "seed": (OptionalInteger, Field(None, ge=0, le=MAX_SEED, description="Same seed, same samples. Omit: the service picks one and returns it.")),
        "format": (Literal[tuple(manifest.formats)], Field(manifest.formats[0], description="File format of the archive.")),
        "model": (Literal[manifest.id] | None, Field(None, description="Model id, when a subcategory has several.")),
        "version": (OptionalInteger, Field(None, ge=1, description="Model version; omit for the latest.")),
    }
    if manifest.variants:
        fields["precision"] = (Literal[tuple(manifest.precisions)], Field(
            "fp32", description="Arithmetic of the generator: fp32 (default) or a variant the model ships: "
            + "; ".join(f"{name}: {v.description}" for name, v in manifest.variants.items())))
    if manifest.measurements:
        fields["annotate"] = (bool, Field(False, description="Measure every sample (workers' lanes): labels.csv, "
                                          "annotation files and `measurements` in NDJSON lines; see the model card."))
    fields |= {name: _parameter_field(p) for name, p in manifest.parameters.items()}
    title = "".join(part.capitalize() for part in manifest.id.split("-")) + "Request"
    # NaN and Infinity are not JSON (the parser takes them): refused like any other invalid number
    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, title=title, json_schema_extra={"examples": [example(manifest)]})
    return create_model(title, __config__=config, **fields)


_models: dict[tuple[str, int, int], tuple[Manifest, type[BaseModel]]] = {}


def request_model(manifest: Manifest, max_samples: int) -> type[BaseModel]:
    """Cached per manifest object: the store keeps one object per manifest file until the file changes, so the
    common case costs a dict lookup instead of serializing the manifest for the lru_cache key."""
    key = (manifest.id, manifest.version, max_samples)
    cached = _models.get(key)
    if cached is None or cached[0] is not manifest:
        cached = _models[key] = (manifest, _request_model(manifest.model_dump_json(), max_samples))
    return cached[1]


def parse(manifest: Manifest, max_samples: int, body: bytes) -> BaseModel:
    """Validate a raw JSON body; raises pydantic.ValidationError with what to fix."""
    return request_model(manifest, max_samples).model_validate_json(body)


__all__ = ["ValidationError", "example", "parse", "request_model"]
