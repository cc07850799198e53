"""The interactive docs (/docs, /redoc) served with their own assets: they work on networks without the internet."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

ASSETS_URL = "/docs/static"  # Swagger UI's and ReDoc's JavaScript and CSS, from the fastapi-offline package


def application(**settings: Any) -> FastAPI:
    """A FastAPI application whose /docs and /redoc load nothing from a CDN."""
    return FastAPIOffline(static_url=ASSETS_URL, **settings)
