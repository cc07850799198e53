"""Model cards: what the catalog shows of an installed model."""

from __future__ import annotations

from typing import Any

from app.request_models import example
from app.schemas import ModelCard
from model_store import distributions
from model_store.manifest import Manifest
from model_store.store import ModelEntry


def card(entry: ModelEntry, versions: list[int]) -> ModelCard:
    m = entry.manifest
    return ModelCard(
        id=m.id,
        name=m.name,
        version=m.version,
        versions=versions,
        category=m.category,
        subcategory=m.subcategory,
        description=m.description,
        output=m.output.model_dump(),
        parameters={name: p.model_dump(exclude_none=True) for name, p in m.parameters.items()},
        formats=m.formats,
        license=m.license,
        citations=[c.model_dump(exclude_none=True) for c in m.citations],
        sha256=m.sha256,
        precisions={"fp32": "the reference arithmetic (the default)",
                    **{name: v.description for name, v in m.variants.items()}},
        provenance=m.provenance,
        generate=f"/generate/{m.category}/{m.subcategory}",
        request_example=example(m),
        measurements=_measurements(m),
    )


def _measurements(manifest: Manifest) -> dict[str, Any] | None:
    document = distributions.for_manifest(manifest)
    if document is None:
        return None
    return {"method": document["method"],
            "limits": "measured on lead II's median beat (intervals) and the limb leads (axes); a value the "
                      "delineator cannot find is null; where a record's beats vary, the median beat's QRS and QT "
                      "differ from the median of beat-by-beat values (a few ms longer as a rule): the agreement "
                      "section says how often each measurement is within a tolerance of an independent beat-by-beat "
                      "delineation of the same ECGs",
            "distribution_of": f"{document['samples']} samples of version {document['version']} "
                               f"(seed {document['seed']})",
            "acceptance_floor": distributions.ACCEPTANCE_FLOOR,
            "agreement": document.get("agreement"),
            "quantities": document["measurements"]}


def latest_cards(entries: list[ModelEntry]) -> list[ModelCard]:
    """One card per model id: its latest version, listing every installed version."""
    by_id: dict[str, list[ModelEntry]] = {}
    for entry in entries:
        by_id.setdefault(entry.manifest.id, []).append(entry)
    cards = []
    for model_id in sorted(by_id):
        versions = sorted(by_id[model_id], key=lambda e: e.manifest.version)
        cards.append(card(versions[-1], [e.manifest.version for e in versions]))
    return cards
