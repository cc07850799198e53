"""Contributions over HTTP: a contributor key uploads a model archive (POST /models), it stays pending and unserved,
an admin approves it and it is served at once as the next version, or rejects it with a reason the contributor
reads. Every answer is checked against the OpenAPI document. Keys gain a `contributor` permission."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from deepsynthbody.core.settings import Settings
from model_store.validate import validate
from tests.api.test_openapi import Document
from tests.conftest import ROOT, environment, wait_finished, wait_for
from tests.helpers.auth_api import client, new_key, start_api, stop
from tests.helpers.tiny_model import make_model

UPLOAD_LIMIT = 200_000  # DSB_MAX_UPLOAD_BYTES of the API here: above the 64 KiB of JSON bodies
SUBCATEGORY = "contributed-patch"
GENERATE = f"/generate/integumentary/{SUBCATEGORY}"
TAR = {"content-type": "application/gzip"}
ZIP = {"content-type": "application/zip"}


@pytest.fixture(scope="module")
def api(settings: Settings, worker: subprocess.Popen[bytes]) -> Iterator[str]:
    process, url = start_api(settings, DSB_AUTH="required", DSB_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
                             DSB_MAX_UPLOAD_UNPACKED_BYTES="1000000")
    yield url
    stop(process)


@pytest.fixture(scope="module")
def people(settings: Settings, api: str) -> Iterator[dict[str, httpx.Client]]:
    made = {"lab": client(api, new_key(settings, "lab", contributor=True)),
            "other-lab": client(api, new_key(settings, "other lab", contributor=True)),
            "reader": client(api, new_key(settings, "reader")),
            "admin": client(api, new_key(settings, "ops", admin=True)),
            "nobody": client(api, None)}
    yield made
    for http in made.values():
        http.close()


@pytest.fixture(scope="module")
def doc(people: dict[str, httpx.Client]) -> Document:
    return Document(people["admin"].get("/openapi.json").json())


def model_tar_gz(folder: Path) -> bytes:
    """The folder as `tar czf model.tar.gz -C folder .` packs it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def model_zip(folder: Path) -> bytes:
    """The folder as `zip -r model.zip model/` packs it: in one top-level folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(folder.iterdir()):
            zipped.write(path, f"{folder.name}/{path.name}")
    return buffer.getvalue()


def _model(tmp_path: Path, name: str = "model", **changes: object) -> Path:
    return make_model(tmp_path / name, id="tiny-contributed", subcategory=SUBCATEGORY, **changes)


def test_keys_get_a_contributor_permission(people: dict[str, httpx.Client], settings: Settings, doc: Document) -> None:
    created = people["admin"].post("/admin/keys", json={"name": "lab 9", "contributor": True})
    doc.check("/admin/keys", created)
    assert created.status_code == 201 and created.json()["contributor"] is True
    listed = {k["name"]: k for k in people["admin"].get("/admin/keys").json()["keys"]}
    assert listed["lab 9"]["contributor"] and listed["lab"]["contributor"] and not listed["reader"]["contributor"]
    env = environment(settings)
    made = subprocess.run([sys.executable, "-m", "deepsynthbody", "keys", "create", "--name", "lab 10", "--contributor"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and "created contributor key" in made.stdout, made.stderr
    listing = subprocess.run([sys.executable, "-m", "deepsynthbody", "keys", "list"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert listing[0].split("\t")[-1] == "contributor"
    rows = {line.split("\t")[1]: line.split("\t") for line in listing[1:]}
    assert rows["lab 10"][-1] == "yes" and rows["reader"][-1] == "no" and rows["ops"][-1] == "yes"  # admins may


def test_only_contributor_and_admin_keys_may_upload(people: dict[str, httpx.Client], doc: Document,
                                                   tmp_path: Path) -> None:
    body = model_tar_gz(_model(tmp_path))
    refused = people["reader"].post("/models", content=body, headers=TAR)
    assert refused.status_code == 403 and "may not contribute" in refused.json()["message"]
    unknown = people["nobody"].post("/models", content=body, headers=TAR)
    assert unknown.status_code == 401
    for response in (refused, unknown):
        doc.check("/models", response)
    assert people["reader"].get("/admin/contributions").status_code == 403


def test_an_upload_goes_from_pending_to_served_over_http_alone(people: dict[str, httpx.Client], doc: Document,
                                                               tmp_path: Path) -> None:
    lab, admin = people["lab"], people["admin"]
    uploaded = lab.post("/models", content=model_tar_gz(_model(tmp_path)), headers=TAR)
    doc.check("/models", uploaded)
    assert uploaded.status_code == 201, uploaded.text
    contribution = uploaded.json()
    cid = contribution["id"]
    assert contribution["state"] == "pending" and uploaded.headers["location"] == f"/contributions/{cid}"
    assert contribution["model"]["id"] == "tiny-contributed" and contribution["owner"]["name"] == "lab"

    # pending: listed for review, read by its contributor, invisible to other keys, served by nothing
    assert lab.get(f"/contributions/{cid}").json()["state"] == "pending"
    assert cid in [c["id"] for c in lab.get("/contributions").json()["contributions"]]
    hidden = people["other-lab"].get(f"/contributions/{cid}")
    doc.check("/contributions/{contribution_id}", hidden)
    assert hidden.status_code == 404 and cid not in people["other-lab"].get("/contributions").text
    pending = admin.get("/admin/contributions")
    doc.check("/admin/contributions", pending)
    assert cid in [c["id"] for c in pending.json()["contributions"]]
    assert lab.post(GENERATE, json={"num_samples": 1}).status_code == 404
    assert lab.get(f"/models/integumentary/{SUBCATEGORY}").status_code == 404
    assert GENERATE not in admin.get("/openapi.json").json()["paths"]

    approved = admin.post(f"/admin/contributions/{cid}/approve")
    doc.check("/admin/contributions/{contribution_id}/approve", approved)
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    assert approved.json()["installed_version"] == 1
    assert approved.json()["links"]["model"] == f"/models/integumentary/{SUBCATEGORY}"
    assert lab.get(f"/contributions/{cid}").json()["decided_by"]["name"] == "ops"

    created = lab.post(GENERATE, json={"num_samples": 3, "seed": 1, "format": "npy"})  # served at once
    assert created.status_code == 202, created.text
    assert created.json()["model"] == {"id": "tiny-contributed", "version": 1}
    assert wait_finished(lab, created.json()["job_id"])["status"] == "finished"
    with zipfile.ZipFile(io.BytesIO(lab.get(f"/jobs/{created.json()['job_id']}/result").content)) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".npy")]
        samples = np.load(io.BytesIO(archive.read(name)))
    assert samples.shape[0] == 3 and np.isfinite(samples).all()
    again = admin.post(f"/admin/contributions/{cid}/approve")
    doc.check("/admin/contributions/{contribution_id}/approve", again)
    assert again.status_code == 409

    # a second upload of the same model is its next version, once approved
    second = lab.post("/models", content=model_zip(_model(tmp_path, "v2")), headers=ZIP).json()["id"]
    assert admin.post(f"/admin/contributions/{second}/approve").json()["installed_version"] == 2
    wait_for(lambda: lab.get(f"/models/integumentary/{SUBCATEGORY}").json()[0]["versions"] == [1, 2], 5,
             "the second version to be listed")


def test_a_rejection_tells_the_contributor_why(people: dict[str, httpx.Client], doc: Document, tmp_path: Path) -> None:
    lab, admin = people["other-lab"], people["admin"]
    model = make_model(tmp_path / "model", id="tiny-rejected", subcategory="rejected-patch")
    cid = lab.post("/models", content=model_zip(model), headers=ZIP).json()["id"]
    bad = admin.post(f"/admin/contributions/{cid}/reject", json={"reason": ""})
    doc.check("/admin/contributions/{contribution_id}/reject", bad)
    assert bad.status_code == 422
    refused = people["reader"].post(f"/admin/contributions/{cid}/reject", json={"reason": "no"})
    assert refused.status_code == 403
    rejected = admin.post(f"/admin/contributions/{cid}/reject", json={"reason": "the weights' licence is unclear"})
    doc.check("/admin/contributions/{contribution_id}/reject", rejected)
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    mine = lab.get(f"/contributions/{cid}")
    doc.check("/contributions/{contribution_id}", mine)
    assert mine.json()["reason"] == "the weights' licence is unclear"
    assert admin.post(f"/admin/contributions/{cid}/approve").status_code == 409
    assert lab.post("/generate/integumentary/rejected-patch", json={"num_samples": 1}).status_code == 404
    assert admin.get("/admin/contributions", params={"state": "rejected"}).json()["contributions"][0]["id"] == cid
    unknown = admin.post(f"/admin/contributions/{'0' * 32}/approve")
    doc.check("/admin/contributions/{contribution_id}/approve", unknown)
    assert unknown.status_code == 404


def test_an_invalid_model_gets_every_problem_as_models_validate_says_it(
        people: dict[str, httpx.Client], doc: Document, tmp_path: Path) -> None:
    model = _model(tmp_path, license="", citations=[])
    refused = people["lab"].post("/models", content=model_tar_gz(model), headers=TAR)
    doc.check("/models", refused)
    assert refused.status_code == 422
    assert refused.json()["problems"] == validate(model) and len(validate(model)) == 2


ATTACKS = {  # archive members: (name, type, data or link target) -> the problem it must give
    "dot-dot": ([("../../escaped", tarfile.REGTYPE, b"x")], "`..` in the name"),
    "absolute": ([("/tmp/escaped-contribution", tarfile.REGTYPE, b"x")], "an absolute name"),
    "symlink": ([("notes.txt", tarfile.SYMTYPE, "/etc/passwd")], "symbolic links"),
    "hard link": ([("notes.txt", tarfile.LNKTYPE, "/etc/passwd")], "hard links"),
    "device": ([("null", tarfile.CHRTYPE, b"")], "device files"),
    "fifo": ([("pipe", tarfile.FIFOTYPE, b"")], "FIFOs"),
    "bomb": ([("zeros", tarfile.REGTYPE, bytes(1_200_000))], "the archive unpacks to more than 1000000 bytes"),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_over_http_are_refused_and_nothing_is_kept(people: dict[str, httpx.Client], doc: Document,
                                                          settings: Settings, tmp_path: Path, attack: str) -> None:
    members, expected = ATTACKS[attack]
    model = _model(tmp_path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(model, arcname=".")
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if isinstance(payload, str):
                info.linkname = payload
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    before = sorted(p.name for p in (settings.data_dir / "contributions").glob("*"))
    refused = people["admin"].post("/models", content=buffer.getvalue(), headers=TAR)
    doc.check("/models", refused)
    assert refused.status_code == 422 and any(expected in p for p in refused.json()["problems"]), refused.text
    assert sorted(p.name for p in (settings.data_dir / "contributions").glob("*")) == before  # nothing kept
    assert not Path("/tmp/escaped-contribution").exists() and not (settings.data_dir / "escaped").exists()


def test_the_upload_route_has_its_own_size_limit(people: dict[str, httpx.Client], doc: Document,
                                                 tmp_path: Path) -> None:
    model = _model(tmp_path)
    (model / "card.bin").write_bytes(np.random.default_rng(0).bytes(100_000))  # incompressible: over 64 KiB packed
    body = model_tar_gz(model)
    assert 64 * 1024 < len(body) < UPLOAD_LIMIT
    accepted = people["lab"].post("/models", content=body, headers=TAR)
    assert accepted.status_code == 201, accepted.text  # the JSON routes' 64 KiB does not apply here
    people["admin"].post(f"/admin/contributions/{accepted.json()['id']}/reject", json={"reason": "size test"})
    too_large = people["lab"].post("/models", content=body + bytes(UPLOAD_LIMIT), headers=TAR)
    doc.check("/models", too_large)
    assert too_large.status_code == 413 and "DSB_MAX_UPLOAD_BYTES" in too_large.json()["message"]
    chunked = people["lab"].post("/models", content=iter([body, bytes(UPLOAD_LIMIT)]), headers=TAR)  # no length
    assert chunked.status_code == 413
    json_route = people["admin"].post("/admin/keys", content=b" " * 70_000, headers={"content-type": "application/json"})
    assert json_route.status_code == 413 and "DSB_MAX_BODY_BYTES" in json_route.json()["message"]


@pytest.mark.parametrize(("body", "headers", "status"), [
    (b"", TAR, 422), (b"not an archive", TAR, 422), (b"PK\x03\x04", ZIP, 422),
    (b"{}", {"content-type": "application/json"}, 415), (b"x", {}, 415)])
def test_bodies_that_are_not_archives_get_a_clear_4xx(people: dict[str, httpx.Client], doc: Document, body: bytes,
                                                      headers: dict[str, str], status: int) -> None:
    response = people["lab"].post("/models", content=body, headers=headers)
    doc.check("/models", response)
    assert response.status_code == status, response.text
    assert response.json()["message"]


def test_with_authentication_off_the_local_user_is_an_admin_who_may_contribute(
        client: httpx.Client, tmp_path: Path) -> None:
    """`serve` on loopback (DSB_AUTH=off): every request is the local user's, an admin: the whole flow works."""
    model = make_model(tmp_path / "local", id="tiny-local", subcategory="local-patch")
    cid = client.post("/models", content=model_tar_gz(model), headers=TAR).json()["id"]
    assert client.get(f"/contributions/{cid}").json()["state"] == "pending"
    assert client.post(f"/admin/contributions/{cid}/approve").json()["state"] == "approved"
    assert client.post("/generate/integumentary/local-patch", json={"num_samples": 1}).status_code == 202
