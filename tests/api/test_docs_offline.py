"""/docs and /redoc load every asset from the service itself: they work on a network without the internet."""

from __future__ import annotations

import re

import httpx
import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_another_origin(api_url: str, page: str) -> None:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        html = http.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
        assets += re.findall(r"""url:\s*["']([^"']+)["']""", html.text)  # the OpenAPI document Swagger UI fetches
        assert assets, html.text
        outside = [a for a in assets if re.match(r"(https?:)?//", a)]
        assert outside == [], f"{page} loads {outside} from another origin"
        for asset in assets:
            response = http.get(asset)
            assert response.status_code == 200 and response.content, (page, asset, response.status_code)
