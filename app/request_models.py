"""Request schemas built from model manifests: a model's own parameters are validated like built-in fields."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from functools import lru_cache
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, model_validator

from model_store import distributions
from model_store.manifest import Manifest, Parameter, SignalOutput

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


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """What a message about `name`, which is none of `choices`, adds: ' (did you mean X?)' with the nearest, or ''."""
    near = difflib.get_close_matches(name.lower(), list(choices), n=1)
    return f" (did you mean {near[0]}?)" if near else ""


class Range(BaseModel):
    """Bounds of one measurement, both included; either may be left out."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded_and_ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


def _known_measurements(document: dict[str, Any]) -> Any:
    """A filter on a measurement the model does not have is refused naming what it has, the leads' once each."""
    measurements = document["measurements"]
    scalars = [name for name, m in measurements.items() if "lead" not in m]
    leads = list(dict.fromkeys(m["lead"] for m in measurements.values() if "lead" in m))
    per_lead = list(dict.fromkeys(name.removesuffix(f"_{m['lead']}")
                                  for name, m in measurements.items() if "lead" in m))
    known = ", ".join(scalars) + (f"; per lead: {', '.join(f'{n}_LEAD' for n in per_lead)}, LEAD one of "
                                  f"{', '.join(leads)}" if per_lead else "")

    def check(where: Any) -> Any:
        if isinstance(where, dict):
            unknown = [name for name in where if name not in measurements]
            if unknown:  # a long name is cut: the message must still reach the names it may use
                named = ", ".join(repr(name if len(name) <= 40 else f"{name[:40]}...") for name in unknown[:5])
                raise ValueError(f"no measurement {named}{did_you_mean(unknown[0], measurements)}: the measurements "
                                 f"are {known}")
        return where

    return BeforeValidator(check)


def _where_field(document: dict[str, Any]) -> tuple[Any, Any]:
    names = document["measurements"]
    listing = "; ".join(f"{name} ({m['unit']})" for name, m in names.items())
    known = Literal[tuple(names)]  # type: ignore[valid-type]
    where = Annotated[dict[known, Range] | None, _known_measurements(document)]  # type: ignore[valid-type]
    return where, Field(
        None, description="Only samples whose measurements fall in these ranges: the workers draw candidates from "
        f"the seed and keep those that match (implies annotate). Measurements: {listing}. Their distributions are "
        "in the model card; a filter expected to keep too few samples is refused.")


def _acceptable(document: dict[str, Any], manifest: Manifest) -> Any:
    def check(request: Any) -> Any:
        if request.where:
            leads = manifest.output.channel_names({name: getattr(request, name) for name in manifest.parameters})
            absent = [f"{name} is lead {lead}'s" for name in request.where
                      if (lead := document["measurements"][name].get("lead")) is not None and lead not in leads]
            if absent:
                parameter = manifest.output.channel_set_parameter if isinstance(manifest.output, SignalOutput) else None
                raise ValueError(
                    f"{'; '.join(absent)}, and these samples do not have it: their leads are {', '.join(leads)}"
                    + (f" (ask for a `{parameter}` that includes it)" if parameter else ""))
            bounds = {name: (r.min, r.max) for name, r in request.where.items()}
            expected = distributions.expected_acceptance(document, bounds)
            if expected < distributions.ACCEPTANCE_FLOOR:
                raise ValueError(
                    f"expected acceptance {expected:.2g} is below the floor {distributions.ACCEPTANCE_FLOOR:g}: of "
                    f"{document['samples']} samples of this model, that share met the filter; widen the ranges (the "
                    "model card shows each measurement's distribution)")
        return request

    return model_validator(mode="after")(check)


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
        fields["annotate"] = (bool, Field(False, description="Measure every sample (in the workers): labels.csv, "
                                          "annotation files and `measurements` in NDJSON lines; see the model card."))
    document = distributions.for_manifest(manifest)
    validators = {}
    if document is not None:
        fields["where"] = _where_field(document)
        validators["where_acceptance"] = _acceptable(document, manifest)
    fields |= {name: _parameter_field(p) for name, p in manifest.parameters.items()}
    title = "".join(part.capitalize() for part in manifest.id.split("-")) + "Request"
    # NaN and Infinity are not JSON (the parser takes them): refused like any other invalid number
    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, title=title, json_schema_extra={"examples": [example(manifest)]})
    return create_model(title, __config__=config, __validators__=validators, **fields)


_models: dict[tuple[str, int, int], tuple[Manifest, type[BaseModel]]] = {}


def request_model(manifest: Manifest, max_samples: int) -> type[BaseModel]:
    """Cached per manifest object: the store keeps one object per manifest file until the file changes, so the
    common case costs a dict lookup instead of serializing the manifest for the lru_cache key."""
    key = (manifest.id, manifest.version, max_samples)
    cached = _models.get(key)
    if cached is None or cached[0] is not manifest:
        cached = _models[key] = (manifest, _request_model(manifest.model_dump_json(), max_samples))
    return cached[1]


def fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The fields the object holding `loc`'s last part takes (a field it does not take: an `extra_forbidden` error's
    loc, without "body"); None where `loc` leads to no model."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
        while get_origin(current) in (Annotated, Union, UnionType):  # Annotated[X, ...] and X | None: X
            members = [a for a in get_args(current) if a is not type(None)]
            if get_origin(current) is not Annotated and len(members) != 1:
                return None
            current = members[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def parse(manifest: Manifest, max_samples: int, body: bytes) -> BaseModel:
    """Validate a raw JSON body; raises pydantic.ValidationError with what to fix."""
    return request_model(manifest, max_samples).model_validate_json(body)


__all__ = ["ValidationError", "did_you_mean", "example", "fields_at", "parse", "request_model"]
