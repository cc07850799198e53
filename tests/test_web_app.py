"""The web app at / in a real browser (Debian's Chromium driven by Playwright; nothing downloaded): a person picks a
model, asks for 20 samples, watches the progress reach 100 %, sees the first samples and downloads the archive.
No request of the page leaves the service (every other origin is refused and recorded), and /docs and /redoc render
with the service's own assets."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from deepsynthbody.core.settings import Settings
from tests.helpers.auth_api import new_key, start_api, stop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
COUNT = 20
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM, "Chromium is missing: install Debian's package (apt-get install -y chromium); .ci/run does"
    expect.set_options(timeout=TIMEOUT_MS)  # a job's progress on a busy 2-core machine: seconds, not milliseconds
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def outside() -> list[str]:
    """URLs the page asked for on another origin (each was refused)."""
    return []


def _local_only(outside: list[str]) -> Callable[[Route], None]:
    """A route handler: requests to this machine go through, any other is refused and recorded in `outside`."""

    def handle(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    return handle


@pytest.fixture
def console_errors() -> list[str]:
    """Errors the page logged or raised (none may remain when a test ends)."""
    return []


@pytest.fixture
def page(browser: Browser, outside: list[str], console_errors: list[str]) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.route("**/*", _local_only(outside))
    page = context.new_page()
    errors = console_errors
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text)  # the browser's own line for a 4xx is no error
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()
    assert errors == [], errors


def _make(page: Page, link: str | None, **fields: str) -> str:
    """From the catalog (or the model's page: no link) to a finished job of COUNT samples; returns the job id."""
    if link:
        page.get_by_role("link", name=re.compile(link)).click()
    page.get_by_label("Num Samples").fill(str(COUNT))
    for label, value in fields.items():
        page.get_by_label(label, exact=True).select_option(label=value)
    page.get_by_role("button", name="Generate").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    progress = page.locator("#progress")
    expect(page.locator("#progress-label")).to_have_text(f"{COUNT} of {COUNT} samples (100 %) · finished")
    assert progress.get_attribute("value") == progress.get_attribute("max") == str(COUNT)
    return job_id


def _download(page: Page, tmp_path: Path) -> tuple[zipfile.ZipFile, str]:
    """The archive the download button saves, and the URL the browser fetched it from."""
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download the archive")).click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name.startswith("deepsynthbody_") and path.suffix == ".zip", path.name
    return zipfile.ZipFile(path), download.value.url


def _recipe(page: Page) -> dict:
    return json.loads(page.locator("#recipe-json").inner_text())


def test_twenty_ecgs_from_the_catalog_to_the_archive(page: Page, api_url: str, worker: subprocess.Popen[bytes],
                                                     outside: list[str], tmp_path: Path) -> None:
    page.goto(api_url + "/")
    expect(page.get_by_role("heading", name="Cardiovascular")).to_be_visible()
    for system in ("Endocrine", "Skeletal", "Respiratory"):  # all 11 body systems, with models or without
        expect(page.get_by_text(system, exact=True)).to_be_visible()
    page.get_by_role("link", name=re.compile("^ecg DeepFake ECG")).click()
    (card,) = httpx.get(f"{api_url}/models/cardiovascular/ecg").json()
    quantities = (card.get("measurements") or {}).get("quantities", {})  # what the model publishes of its samples
    expect(page.locator("table.distributions tbody tr")).to_have_count(len(quantities))
    expect(page.locator("table.distributions svg[role=img]")).to_have_count(len(quantities))
    median = quantities["heart_rate"]["quantiles"]["50"]  # the ECG model publishes its measured distributions
    expect(page.get_by_role("row", name=re.compile("^Heart rate"))).to_contain_text(f"{median:g} bpm")
    agreement = card["measurements"]["agreement"]["measurements"]  # and how its measurements agree with a reference
    summary = page.locator("details.agreement summary")
    expect(summary).to_contain_text(f"QT interval {round(agreement['qt_interval']['within'] * 100)} % within 20 ms")
    summary.click()
    expect(page.locator("table.agreement tbody tr")).to_have_count(len(agreement))
    job_id = _make(page, None, Leads="12")
    canvas = page.locator("canvas#ecg")
    expect(canvas).to_have_attribute("aria-label", re.compile(r"^12-lead ECG, 10 s at 500 Hz: leads I, II, III, aVR"))
    expect(page.get_by_role("button", name=re.compile("^Sample "))).to_have_count(3)
    ink = canvas.evaluate("""c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                                    let dark = 0;
                                    for (let i = 0; i < d.length; i += 4) if (d[i] < 80) dark++;
                                    return dark; }""")
    assert ink > 2000, f"the ECG canvas has {ink} dark pixels: no traces drawn"
    recipe = _recipe(page)
    assert recipe["num_samples"] == COUNT and recipe["leads"] == 12 and recipe["version"] == 2
    assert isinstance(recipe["seed"], int)
    assert "/generate/cardiovascular/ecg" in page.locator("#recipe-curl").inner_text()
    archive, _ = _download(page, tmp_path)
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["job_id"] == job_id and manifest["seed"] == recipe["seed"] and manifest["num_samples"] == COUNT
    records = {Path(n).stem for n in archive.namelist() if n.endswith(".hea")}
    assert len(records) == COUNT and {Path(n).stem for n in archive.namelist() if n.endswith(".dat")} == records
    assert len(manifest["files"]) == 2 * COUNT
    link = page.get_by_role("link", name=re.compile("Download the archive"))
    expect(link).to_have_text(re.compile(r"\(\.zip, [\d.]+ [KM]B\)$"))  # its size, from a HEAD request
    shown, unit = re.search(r"([\d.]+) ([KM]B)", link.inner_text()).groups()
    assert float(shown) * {"KB": 1e3, "MB": 1e6}[unit] == pytest.approx(Path(archive.filename).stat().st_size, rel=0.05)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My jobs").click()
    page.get_by_role("link", name=job_id[:8]).click()
    expect(page.locator("#progress-label")).to_have_text(f"{COUNT} of {COUNT} samples (100 %) · finished")
    assert httpx.delete(f"{api_url}/jobs/{job_id}").status_code == 200  # its files go: the page says so, no button
    page.reload()
    expect(page.get_by_role("alert")).to_contain_text(f"the archive of job {job_id} is no longer stored")
    expect(page.get_by_role("link", name=re.compile("Download the archive"))).to_have_count(0)
    assert outside == []


def test_twenty_gi_tract_pairs_from_the_catalog_to_the_archive(page: Page, api_url: str,
                                                               worker: subprocess.Popen[bytes],
                                                               outside: list[str], tmp_path: Path) -> None:
    page.goto(api_url + "/")
    page.get_by_role("link", name=re.compile("^gi-tract SinGAN-Seg")).click()
    # one version: no version picker, and nothing in its place (a null appended to the DOM reads "null")
    expect(page.get_by_role("button", name="Generate")).to_be_visible()
    expect(page.get_by_role("form", name="Make samples")).not_to_contain_text("null")
    page.get_by_role("button", name="Draw one sample").click()  # the card's preview, drawn by the model now
    preview = page.locator(".card-preview img")
    expect(preview).to_have_count(2)
    expect(page.get_by_role("status").filter(has_text="Sample 0 of job")).to_be_visible()
    assert preview.first.evaluate("img => img.complete && img.naturalWidth") == 128
    job_id = _make(page, None)
    figures = page.locator("#preview figure")
    expect(figures).to_have_count(4)
    for image in figures.first.locator("img").all():  # the image and its mask, side by side, decoded
        assert image.evaluate("img => img.complete && img.naturalWidth") == 128
    expect(figures.first.locator("img")).to_have_count(2)
    archive, _ = _download(page, tmp_path)
    manifest = json.loads(archive.read("manifest.json"))
    names = archive.namelist()
    images, masks = [n for n in names if n.startswith("image_")], [n for n in names if n.startswith("mask_")]
    assert manifest["job_id"] == job_id and len(images) == len(masks) == COUNT
    assert _recipe(page)["start_scale"] == 0
    assert outside == []


def test_with_keys_on_the_page_asks_once_and_keeps_the_key(settings: Settings,
                                                          worker: subprocess.Popen[bytes], ecg_model_dir: Path,
                                                          page: Page, tmp_path: Path) -> None:
    process, url = start_api(settings, DSB_AUTH="required")
    try:
        key = new_key(settings, "web")
        page.goto(url + "/")
        dialog = page.get_by_role("dialog")
        expect(dialog).to_be_visible()
        dialog.get_by_label("Key").fill("not-a-key")
        dialog.get_by_role("button", name="Use this key").click()
        expect(dialog.get_by_role("heading")).to_have_text("That key was refused: enter another")
        dialog.get_by_label("Key").fill(key)
        dialog.get_by_label("Key").press("Enter")
        expect(page.get_by_role("heading", name="Cardiovascular")).to_be_visible()
        page.reload()  # kept in the browser: no second question
        expect(page.get_by_role("heading", name="Cardiovascular")).to_be_visible()
        expect(dialog).to_be_hidden()
        job_id = _make(page, "^ecg DeepFake ECG")
        archive, fetched = _download(page, tmp_path)  # a download link asked for with the key, fetched by the browser
        assert f"/jobs/{job_id}/result?link=" in fetched
        assert json.loads(archive.read("manifest.json"))["job_id"] == job_id
        assert "authorization: Bearer $DSB_API_KEY" in page.locator("#recipe-curl").inner_text()
    finally:
        stop(process)


def test_a_refused_request_says_why_in_the_apis_words(page: Page, api_url: str,
                                                      worker: subprocess.Popen[bytes]) -> None:
    page.goto(api_url + "/#/jobs/0123456789abcdef0123456789abcdef")
    expect(page.get_by_role("alert").last).to_contain_text("0123456789abcdef0123456789abcdef")


@pytest.mark.parametrize(("path", "rendered"), [("/docs", ".swagger-ui .opblock"), ("/redoc", "[role=menuitem]")])
def test_the_docs_render_with_nothing_from_the_internet(page: Page, api_url: str, outside: list[str], path: str,
                                                        rendered: str, console_errors: list[str]) -> None:
    page.goto(api_url + path)
    expect(page.locator(rendered).first).to_be_visible()
    expect(page.get_by_text("/generate/cardiovascular/ecg").first).to_be_attached()
    assert outside == []
    # ReDoc's bundle asks for its logo on cdn.redoc.ly; the page's Content-Security-Policy refuses it in the browser
    refused = [e for e in console_errors if e.startswith("Loading the image 'https://cdn.redoc.ly/") and "blocked" in e]
    assert len(refused) == (1 if path == "/redoc" else 0), console_errors
    console_errors[:] = [e for e in console_errors if e not in refused]


NO_OVERFLOW = "() => document.scrollingElement.scrollWidth <= window.innerWidth"
UNNAMED_CONTROLS = """() => [...document.querySelectorAll('main input, main select, main button, main textarea')]
    .filter(c => !(c.labels && c.labels.length) && !c.getAttribute('aria-label') && !c.textContent.trim())
    .map(c => c.outerHTML)"""


def test_a_phone_and_a_keyboard_are_enough(browser: Browser, api_url: str, worker: subprocess.Popen[bytes],
                                           outside: list[str]) -> None:
    """At 360 px nothing is wider than the screen (the ECG drawing scrolls inside its own frame); every control has
    a name; the form is filled and sent from the keyboard alone; a refused request shows the API's own words."""
    context = browser.new_context(viewport={"width": 360, "height": 780})
    context.route("**/*", _local_only(outside))
    page = context.new_page()
    try:
        page.goto(api_url + "/")
        expect(page.get_by_role("heading", name="Cardiovascular")).to_be_visible()
        assert page.evaluate(NO_OVERFLOW)
        page.get_by_role("link", name=re.compile("^ecg DeepFake ECG")).focus()
        page.keyboard.press("Enter")
        expect(page.get_by_label("Num Samples")).to_be_visible()
        assert page.evaluate(NO_OVERFLOW) and page.evaluate(UNNAMED_CONTROLS) == []
        page.get_by_label("Seed").fill("99999999999999999999")  # past the largest seed: the API refuses it
        page.get_by_label("Seed").press("Enter")
        expect(page.get_by_role("alert")).to_contain_text("The request was refused: ")
        expect(page.get_by_role("alert")).to_contain_text("seed")
        page.get_by_label("Seed").fill("7")
        page.get_by_label("Num Samples").fill("3")
        # an object parameter (the ECG's filter per measurement) is a folded group of fields built from its schema
        page.locator("details.field summary").filter(has_text=re.compile("^Where")).focus()
        page.keyboard.press("Enter")
        heart_rate = page.get_by_role("group", name=re.compile(r"^Heart rate \(bpm\)"))
        heart_rate.get_by_label("min").fill("40")
        heart_rate.get_by_label("max").fill("150")
        assert page.evaluate(NO_OVERFLOW) and page.evaluate(UNNAMED_CONTROLS) == []
        page.get_by_label("Num Samples").press("Enter")
        page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]+$"))
        expect(page.locator("#progress-label")).to_have_text("3 of 3 samples (100 %) · finished")
        recipe = json.loads(page.locator("#recipe-json").inner_text())
        assert recipe["where"] == {"heart_rate": {"min": 40, "max": 150}} and recipe["seed"] == 7
        expect(page.locator("canvas#ecg")).to_be_visible()
        measured = page.get_by_label("Measurements of the sample shown")  # a filtered job is annotated
        expect(measured).to_contain_text("Heart rate")
        heart_rate = float(re.search(r"Heart rate\s+([\d.]+) bpm", measured.inner_text())[1])
        assert 40 <= heart_rate <= 150
        assert page.evaluate(NO_OVERFLOW) and page.evaluate(UNNAMED_CONTROLS) == []
        assert outside == []
    finally:
        context.close()
