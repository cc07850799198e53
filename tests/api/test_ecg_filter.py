"""`"where"`: ECGs whose measurements are in the ranges asked for, the same bytes however they are made."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from deepsynthbody.core.jobs import JobSpec, candidate_chunks, plan_candidate_chunks
from deepsynthbody.core.settings import Settings
from model_store import distributions
from model_store.recipes import ecg_distributions
from tests.api.test_generate_ecg import download
from tests.conftest import ECG
from workers import ecg_filter, tasks
from workers.ecg_measurements import measure

WHERE = {"heart_rate": {"min": 60, "max": 70}, "qrs_duration": {"max": 100}}
NAMES = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]


def test_every_accepted_record_measured_again_is_in_range(client: httpx.Client) -> None:
    created, archive, _ = download(client, {"num_samples": 12, "seed": 5, "format": "npy", "where": WHERE})
    samples = np.load(io.BytesIO(archive.read("ecgs.npy")))
    assert samples.shape == (12, 5000, 8)
    rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
    for sample, row in zip(samples, rows, strict=True):
        again = measure(sample, NAMES, 500.0)  # independently of the worker, from the delivered array
        assert 60 <= again["heart_rate"] <= 70 and again["qrs_duration"] <= 100
        assert float(row["heart_rate_bpm"]) == again["heart_rate"]
    selection = json.loads(archive.read("manifest.json"))["selection"]
    assert selection["accepted"] == 12 and 12 <= selection["candidates_drawn"] <= selection["candidate_budget"]
    assert selection["acceptance"] == round(12 / selection["candidates_drawn"], 4)
    assert selection["where"] == {"heart_rate": [60, 70], "qrs_duration": [None, 100]}


def test_a_leads_amplitude_is_a_filter_too(client: httpx.Client) -> None:
    """R and S amplitudes per lead, named as labels.csv names them less the unit, on a lead only 12-lead samples have:
    every record measured again from the delivered array has it in range."""
    where = {"r_amplitude_aVL": {"min": 400}, "s_amplitude_V1": {"max": 900}}
    _, archive, _ = download(client, {"num_samples": 6, "seed": 3, "format": "npy", "leads": 12, "where": where})
    samples = np.load(io.BytesIO(archive.read("ecgs.npy")))
    rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
    names = NAMES[:2] + ["III", "aVR", "aVL", "aVF"] + NAMES[2:]
    assert samples.shape == (6, 5000, 12) and len(rows) == 6
    for sample, row in zip(samples, rows, strict=True):
        again = measure(sample, names, 500.0)
        assert again["r_amplitude"]["aVL"] >= 400 and again["s_amplitude"]["V1"] <= 900
        assert float(row["r_amplitude_aVL_uV"]) == again["r_amplitude"]["aVL"]


def _spec(job_id: str, where: dict, num_samples: int, budget: int, fmt: str = "wfdb") -> JobSpec:
    return JobSpec(job_id=job_id, model_id="pulse2pulse-ecg", model_version=2, num_samples=num_samples, seed=5,
                   format=fmt, params={"leads": 8}, precision="fp32", request={}, chunks=[(0, num_samples)],
                   annotate=True, where=where, candidate_budget=budget)


def test_same_bytes_whatever_the_batch_size(settings: Settings, ecg_model_dir: Path) -> None:
    """Run as one job, a filtered job's bytes do not depend on its batch size."""
    where = {name: [r.get("min"), r.get("max")] for name, r in WHERE.items()}
    archives, selections = [], []
    for batch in (1, 5, 32):
        local = settings.model_copy(update={"batch_size": batch})
        spec = _spec(f"filtered-{batch}", where, 8, 400)
        tasks.run(spec, local)
        with zipfile.ZipFile(settings.jobs_dir / spec["job_id"] / "result.zip") as archive:
            archives.append({n: archive.read(n) for n in archive.namelist() if n != "manifest.json"})
            selections.append(json.loads(archive.read("manifest.json"))["selection"])
    assert archives[0] == archives[1] == archives[2] and "labels.csv" in archives[0]
    assert selections[0] == selections[1] == selections[2]


def _archive_files(settings: Settings, job_id: str) -> tuple[dict[str, bytes], dict]:
    with zipfile.ZipFile(settings.jobs_dir / job_id / "result.zip") as archive:
        assert archive.testzip() is None
        return ({n: archive.read(n) for n in archive.namelist() if n != "manifest.json"},
                json.loads(archive.read("manifest.json"))["selection"])


@pytest.mark.parametrize("fmt", ["wfdb", "npy"])
def test_same_bytes_whatever_the_candidate_chunks(settings: Settings, ecg_model_dir: Path, fmt: str) -> None:
    """Cut in candidate space, in chunks of 37 or 90 candidates, or not cut: the same samples, the same bytes.
    Run here one chunk after another without RQ, so no chunk knows the earlier ones finished and each searches its
    whole range (the most any chunk may find): the archive step still takes the first matching candidates."""
    where = {"heart_rate": [60, 75]}
    whole = _spec(f"candidates-whole-{fmt}", where, 10, 300, fmt)
    tasks.run(whole, settings)
    expected = _archive_files(settings, whole["job_id"])
    for size in (37, 90):
        spec = _spec(f"candidates-{size}-{fmt}", where, 10, 300, fmt)
        spec["chunks"] = plan_candidate_chunks(300, size)
        assert candidate_chunks(spec) and len(spec["chunks"]) > 2
        chunks = [tasks.run_chunk(spec, index, settings) for index in range(len(spec["chunks"]))]
        assert sum(c["candidates"]["accepted"] for c in chunks) > 10  # later chunks found more than was needed
        tasks.assemble(spec, settings, None, chunks)
        assert _archive_files(settings, spec["job_id"]) == expected
        assert not (settings.jobs_dir / spec["job_id"] / "candidates").exists()


@pytest.mark.parametrize(("budget", "chunk_size", "chunks"), [
    (4066, 2000, 16),  # the README's example filter, 20 ECGs: 256-candidate chunks, so two workers share it
    (4_000_000, 2000, 64),  # 10,000 ECGs of a rare filter: never more than 64 jobs
    (656, 100, 7),  # never above the chunk size
    (300, 37, 9),
])
def test_a_candidate_budget_is_cut_into_contiguous_chunks(budget: int, chunk_size: int, chunks: int) -> None:
    planned = plan_candidate_chunks(budget, chunk_size)
    assert len(planned) == chunks and planned[0][0] == 0
    assert all(first + count == following for (first, count), (following, _) in zip(planned, planned[1:]))
    assert sum(count for _, count in planned) == budget
    assert max(count for _, count in planned) <= max(chunk_size, -(-budget // 64))


def test_candidate_chunks_that_find_too_few_fail_saying_how_many(settings: Settings, ecg_model_dir: Path) -> None:
    spec = _spec("candidates-too-few", {"heart_rate": [60, 70]}, 30, 40, fmt="npy")
    spec["chunks"] = plan_candidate_chunks(40, 20)
    chunks = [tasks.run_chunk(spec, index, settings) for index in range(2)]
    with pytest.raises(ecg_filter.BudgetExceeded, match=r"kept \d+ of the 30 samples asked for after drawing 40"):
        tasks.assemble(spec, settings, None, chunks)


def test_a_job_past_its_candidate_budget_fails_saying_how_many_it_found(settings: Settings,
                                                                        ecg_model_dir: Path) -> None:
    spec = _spec("filtered-budget", {"heart_rate": [60, 70]}, 30, 10, fmt="npy")
    with pytest.raises(ecg_filter.BudgetExceeded, match=r"kept \d of the 30 samples asked for after drawing 10"):
        tasks.run(spec, settings)


@pytest.mark.parametrize(("where", "message"), [
    # unknown: the error names the nearest and lists the known ones
    ({"heart_beat": {"min": 50}}, "no measurement 'heart_beat' (did you mean heart_rate?): the measurements are "
                                  "heart_rate, rr_mean"),
    # our checks' words as they are, without pydantic's "Value error, " before them
    ({"heart_rate": {"min": 70, "max": 50}}, "body.where.heart_rate: min 70 is above max 50"),
    ({"heart_rate": {}}, "give min, max or both"),
    ({"heart_rate": {"min": 300}}, "expected acceptance 0 is below the floor"),
    ({"qrs_duration": {"max": -5}}, "expected acceptance 0 is below the floor"),
    ({"heart_rate": {"min": "fast"}}, "valid number"),
    # 8 leads unless asked for 12: I, II, V1-V6
    ({"r_amplitude_aVL": {"min": 100}}, "r_amplitude_aVL is lead aVL's, and these samples do not have it: their leads "
                                        "are I, II, V1, V2, V3, V4, V5, V6 (ask for a `leads` that includes it)"),
    ({"x" * 5000: {"min": 1}}, "...': the measurements are heart_rate, rr_mean"),  # the name cut, not the list
    ({"r_amplitude_V7": {"min": 100}}, "per lead: r_amplitude_LEAD, s_amplitude_LEAD, LEAD one of I, II, III, aVR"),
])
def test_bad_filters_are_refused_with_a_message(client: httpx.Client, where: dict, message: str) -> None:
    response = client.post(ECG, json={"num_samples": 5, "where": where})
    assert response.status_code == 422, response.text
    assert message in response.text


def test_the_distribution_recipe_summarises_what_it_measured(ecg_model_dir: Path, tmp_path: Path) -> None:
    """The committed document is this recipe's output at 10,000 samples; CI builds a small one."""
    path = tmp_path / "ecg.distributions.json"
    document = ecg_distributions.build(ecg_model_dir, 24, path, agreement_samples=3)
    assert json.loads(path.read_text()) == document and document["samples"] == 24
    heart_rate = document["measurements"]["heart_rate"]
    assert heart_rate["unit"] == "bpm" and heart_rate["measurable"] == 1.0
    quantiles = list(heart_rate["quantiles"].values())
    assert quantiles == sorted(quantiles) and sum(heart_rate["histogram"]["counts"]) == 24
    everything = {"heart_rate": (heart_rate["quantiles"]["0"], heart_rate["quantiles"]["100"])}
    assert distributions.expected_acceptance(document, everything) == pytest.approx(1.0)
    assert distributions.expected_acceptance(document, {"heart_rate": (None, quantiles[0] - 1)}) == 0
    v5 = document["measurements"]["r_amplitude_V5"]  # each lead's R and S amplitude, after the scalar measurements
    assert v5["unit"] == "uV" and v5["lead"] == "V5" and v5["definition"].endswith(", lead V5")
    assert document["table"]["columns"][11:13] == ["r_amplitude_I", "r_amplitude_II"]
    assert len(document["table"]["columns"]) == 11 + 2 * 12
    agreement = document["agreement"]  # tests/workers/test_ecg_measurements.py checks what it says
    assert agreement["samples"] == 3 and agreement["measurements"]["qt_interval"]["compared"] == 3
    committed = json.loads(distributions.DOCUMENTS["pulse2pulse-ecg"].read_text())
    assert set(committed["agreement"]["measurements"]) == set(agreement["measurements"])
    assert committed["agreement"]["samples"] == 60
    assert set(committed["measurements"]) == set(document["measurements"])
    assert committed["table"]["columns"] == document["table"]["columns"] and committed["table"]["rows"] == 10_000


def test_a_filters_expected_acceptance_counts_the_samples_that_meet_every_condition_at_once(
        ecg_model_dir: Path, tmp_path: Path) -> None:
    """A slow heart and a long RR interval are the same samples: counted together they are half of them, where
    taking the two conditions as independent would say a quarter."""
    path = tmp_path / "ecg.distributions.json"
    ecg_distributions.build(ecg_model_dir, 24, path, agreement_samples=3)
    document = distributions.load(path)
    measured = ecg_distributions.measure_model(ecg_model_dir, 24)  # the same samples, measured again
    rates = sorted(m["heart_rate"] for m in measured)
    slow, long_rr = rates[11], 60000 / rates[11]
    where = {"heart_rate": (None, slow), "rr_mean": (long_rr - 0.05, None)}
    kept = [m for m in measured if m["heart_rate"] <= slow and m["rr_mean"] >= long_rr - 0.05]
    assert len(kept) == 12
    assert distributions.expected_acceptance(document, where) == pytest.approx(12 / 24)
    without_table = json.loads(path.read_text()) | {"table": None}  # the histograms' product
    assert distributions.expected_acceptance(without_table, where) == pytest.approx(1 / 4, abs=0.1)
    unmeasurable = {"pr_interval": (0, 1000)}  # a sample without a P wave never passes
    assert distributions.expected_acceptance(document, unmeasurable) == pytest.approx(
        sum(m["pr_interval"] is not None for m in measured) / 24)


def test_the_model_card_shows_the_method_and_each_measurements_distribution(client: httpx.Client) -> None:
    (card,) = client.get("/models/cardiovascular/ecg").json()
    measurements = card["measurements"]
    assert "neurokit2" in measurements["method"] and "10000 samples" in measurements["distribution_of"]
    qt = measurements["agreement"]["measurements"]["qt_interval"]
    assert qt["tolerance"] == 20 and qt["unit"] == "ms" and 0 <= qt["within"] <= 1 and qt["compared"] == 60
    heart_rate = measurements["quantities"]["heart_rate"]
    assert heart_rate["unit"] == "bpm" and set(heart_rate["quantiles"]) >= {"1", "50", "99"}
    assert sum(heart_rate["histogram"]["counts"]) == 10000
    assert "where" in client.get("/openapi.json").text
    (gi_card,) = client.get("/models/digestive/gi-tract").json()
    assert gi_card["measurements"] is None
