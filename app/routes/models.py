"""The model catalog: body systems, their subcategories, and model cards."""

from __future__ import annotations

from fastapi import APIRouter

from app.cards import latest_cards
from app.deps import StoreDep
from app.errors import responses
from app.schemas import BodySystemPublic, Catalog, ModelCard, SubcategoryPublic
from deepsynthbody.core.errors import NotFound

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=Catalog, summary="All body systems, their subcategories and models")
def catalog(store: StoreDep) -> Catalog:
    return Catalog(
        body_systems=[
            BodySystemPublic(
                name=system,
                subcategories=[SubcategoryPublic(name=sub, models=latest_cards(entries)) for sub, entries in sorted(subs.items())],
            )
            for system, subs in store.catalog().items()
        ]
    )


@router.get("/{category}/{subcategory}", response_model=list[ModelCard], summary="Model cards of one subcategory",
            responses=responses(404, descriptions={404: "No models there: `available` lists what exists"}))
def subcategory_cards(category: str, subcategory: str, store: StoreDep) -> list[ModelCard]:
    tree = store.catalog()
    entries = tree.get(category, {}).get(subcategory)
    if not entries:
        available = {system: sorted(subs) for system, subs in tree.items()}
        raise NotFound(f"no models under {category}/{subcategory}", available=available)
    return latest_cards(entries)
