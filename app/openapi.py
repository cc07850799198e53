"""The OpenAPI document: FastAPI's, with the one generic generate route written out per installed subcategory.

`POST /generate/{category}/{subcategory}` is one route that validates a body against the manifest of the model it
names. The document instead lists `POST /generate/cardiovascular/ecg`, `POST /generate/digestive/gi-tract`, ...,
each with exactly the bodies that subcategory accepts: one schema per model version (an `anyOf` where there are
several; they never overlap, since each pins its `model` and `version`). It is built from the model store, so a
contributed model appears in it with no code change, and rebuilt when the store's set of models changes.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app import request_models
from app.auth import declare_security
from model_store.store import ModelEntry, ModelStore

GENERATE_TEMPLATE = "/generate/{category}/{subcategory}"
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


class OpenAPIDocument:
    """`app.openapi`: the document, cached until the store's list of models changes."""

    def __init__(self, app: FastAPI, store: ModelStore, max_samples: int) -> None:
        self.app, self.store, self.max_samples = app, store, max_samples
        self._base: dict[str, Any] | None = None
        self._cached: tuple[list[ModelEntry], dict[str, Any]] | None = None

    def __call__(self) -> dict[str, Any]:
        entries = self.store.entries()  # the same list object until a manifest appears, disappears or changes
        if self._cached is None or self._cached[0] is not entries:
            self._cached = (entries, self._build(entries))
        return self._cached[1]

    def base(self) -> dict[str, Any]:
        if self._base is None:
            app = self.app
            doc = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                              description=app.description, routes=app.routes)
            _tidy(doc)
            declare_security(doc)
            if app.state.settings.auth == "off":  # keys unchecked: a request without one is answered too
                for operation in (op for item in doc["paths"].values() for op in item.values() if "security" in op):
                    operation["security"] = [{}, *operation["security"]]
            self._base = doc
        return self._base

    def _build(self, entries: list[ModelEntry]) -> dict[str, Any]:
        doc = copy.deepcopy(self.base())
        template = doc["paths"].pop(GENERATE_TEMPLATE)["post"]
        template.pop("parameters", None)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        groups: dict[tuple[str, str], list[ModelEntry]] = {}
        for entry in entries:
            groups.setdefault((entry.manifest.category, entry.manifest.subcategory), []).append(entry)
        generate: dict[str, Any] = {}
        for (category, subcategory), group in sorted(groups.items()):
            operation = copy.deepcopy(template)
            operation["operationId"] = f"generate_{category}_{subcategory}".replace("-", "_")
            operation["summary"] = f"Queue a {category}/{subcategory} generation job"
            operation["requestBody"] = self._request_body(group, schemas)
            generate[f"/generate/{category}/{subcategory}"] = {"post": operation}
        doc["paths"] = generate | doc["paths"]
        return doc

    def _request_body(self, group: list[ModelEntry], schemas: dict[str, Any]) -> dict[str, Any]:
        """The bodies one subcategory accepts, as the route resolves them: no `model` means the first model id
        (sorted), no `version` that model's latest version."""
        model_ids = sorted({e.manifest.id for e in group})
        latest = {mid: max(e.manifest.version for e in group if e.manifest.id == mid) for mid in model_ids}
        refs, examples = [], {}
        for entry in sorted(group, key=lambda e: (e.manifest.id, e.manifest.version)):
            manifest = entry.manifest
            pinned = {}
            if manifest.id != model_ids[0]:
                pinned["model"] = manifest.id
            if manifest.version != latest[manifest.id]:
                pinned["version"] = manifest.version
            name, schema = self._request_schema(entry, pinned, schemas)
            refs.append({"$ref": f"#/components/schemas/{name}"})
            examples[f"{manifest.id} v{manifest.version}"] = {
                "summary": f"{manifest.name}, version {manifest.version}" + ("" if "version" in pinned else " (the latest)"),
                "value": schema["examples"][0],
            }
        schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
        return {"required": True, "content": {"application/json": {"schema": schema, "examples": examples}}}

    def _request_schema(self, entry: ModelEntry, pinned: dict[str, Any], schemas: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        manifest = entry.manifest
        model = request_models.request_model(manifest, self.max_samples)
        schema = copy.deepcopy(model.model_json_schema(ref_template="#/components/schemas/{model}"))
        schemas.update(schema.pop("$defs", {}))
        properties = schema["properties"]
        required = list(schema.get("required", []))
        if "version" in pinned:
            properties["version"] = {"const": manifest.version, "type": "integer", "title": "Version",
                                     "description": f"Version {manifest.version}: name it to get it (the default is the latest)."}
        else:
            properties["version"] = {"anyOf": [{"const": manifest.version, "type": "integer"}, {"type": "null"}],
                                     "default": None, "title": "Version",
                                     "description": f"Model version; omit for the latest ({manifest.version})."}
        if "model" in pinned:
            properties["model"] = {"const": manifest.id, "type": "string", "title": "Model",
                                   "description": "Model id: this subcategory's default is another model."}
        required += [key for key in pinned if key not in required]
        if required:
            schema["required"] = required
        schema["examples"] = [{**pinned, **request_models.example(manifest)}]
        name = f"{schema['title'].removesuffix('Request')}V{manifest.version}Request"
        schema["title"] = name
        schemas[name] = schema
        return name, schema


def _tidy(doc: dict[str, Any]) -> None:
    """FastAPI declares a 422 on every route with parameters; only the generate route can answer one (its body).
    HEAD responses have no body."""
    for item in doc.get("paths", {}).values():
        for method, operation in item.items():
            responses = operation.get("responses", {})
            refs = json.dumps(responses.get("422", {}))
            if _FASTAPI_422 in refs:
                del responses["422"]
            if method == "head":
                for response in responses.values():
                    response.pop("content", None)
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas and f'"#/components/schemas/{name}"' not in json.dumps(doc):
            del schemas[name]
