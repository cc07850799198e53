"""Untrusted model archives: each attack is refused with its own message and writes nothing outside the folder;
a valid archive is kept pending (not served) until approved, then installed as the next version."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deepsynthbody.core.errors import Conflict, NotFound
from model_store import contributions as contributions_module
from model_store import validate as validate_module
from model_store.contributions import ContributionInvalid, Contributions, TooManyPending, validate_isolated
from model_store.store import ModelStore
from model_store.uploads import unpack
from model_store.validate import validate
from tests.helpers.tiny_model import make_model, tiny_graph

LIMIT = 1 << 20
OWNER = {"key_id": "0123456789abcdef", "name": "lab"}
ADMIN = {"key_id": "fedcba9876543210", "name": "ops"}


def tar_gz(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


def zip_of(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a name given twice, on purpose
        for name, data in members:
            zipped.writestr(name, data)
    return path


def pack_folder(folder: Path, archive: Path) -> Path:
    """The folder as a .tar.gz with its files at the root, as `tar czf archive -C folder .` makes it."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=".")
    return archive


def _unpacked(tmp_path: Path, archive: Path, **limits: int) -> tuple[Path, list[str]]:
    result = unpack(archive, tmp_path / "out" / "target", limits.get("max_bytes", LIMIT),
                    limits.get("max_members", 256))
    return result.folder, result.problems


def _outside(tmp_path: Path) -> set[str]:
    """Everything in tmp_path but the archives and the target folder."""
    return {p.name for p in (tmp_path / "out").iterdir()} - {"target"}


ESCAPES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "tar ..": (lambda d: tar_gz(d / "a.tar.gz", [(member("../escaped"), b"x")]), "`..` in the name"),
    "tar deep ..": (lambda d: tar_gz(d / "a.tar.gz", [(member("m/../../escaped"), b"x")]), "`..` in the name"),
    "tar absolute": (lambda d: tar_gz(d / "a.tar.gz", [(member("/tmp/escaped"), b"x")]), "an absolute name"),
    "tar symlink": (lambda d: tar_gz(d / "a.tar.gz", [(member("model.onnx", tarfile.SYMTYPE, "/etc/shadow"), None)]),
                    "symbolic links (this one to '/etc/shadow') are not accepted"),
    "tar hard link": (lambda d: tar_gz(d / "a.tar.gz", [(member("model.onnx", tarfile.LNKTYPE, "/etc/shadow"), None)]),
                      "hard links (this one to '/etc/shadow') are not accepted"),
    "tar char device": (lambda d: tar_gz(d / "a.tar.gz", [(member("zero", tarfile.CHRTYPE), None)]), "device files"),
    "tar block device": (lambda d: tar_gz(d / "a.tar.gz", [(member("sda", tarfile.BLKTYPE), None)]), "device files"),
    "tar fifo": (lambda d: tar_gz(d / "a.tar.gz", [(member("pipe", tarfile.FIFOTYPE), None)]), "FIFOs"),
    "zip ..": (lambda d: zip_of(d / "a.zip", [("../escaped", b"x")]), "`..` in the name"),
    "zip absolute": (lambda d: zip_of(d / "a.zip", [("/tmp/escaped", b"x")]), "an absolute name"),
    "zip backslash": (lambda d: zip_of(d / "a.zip", [("..\\escaped", b"x")]), "a backslash"),
    "zip symlink": (lambda d: zip_of(d / "a.zip", [(_zip_info("model.onnx", stat.S_IFLNK | 0o777), b"/etc/shadow")]),
                    "symbolic links are not accepted"),
    "zip fifo": (lambda d: zip_of(d / "a.zip", [(_zip_info("pipe", stat.S_IFIFO | 0o644), b"")]), "FIFOs"),
    "zip twice": (lambda d: zip_of(d / "a.zip", [("manifest.json", b"{}"), ("manifest.json", b"[]")]), "appears twice"),
}


def _zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


@pytest.mark.parametrize("case", ESCAPES)
def test_members_that_could_escape_are_refused_and_not_written(tmp_path: Path, case: str) -> None:
    make, expected = ESCAPES[case]
    (tmp_path / "out").mkdir()
    folder, problems = _unpacked(tmp_path, make(tmp_path))
    assert len(problems) == 1 and expected in problems[0], problems
    assert _outside(tmp_path) == set() and not (tmp_path / "escaped").exists() and not Path("/tmp/escaped").exists()
    written = [p for p in folder.rglob("*")]
    assert all(stat.S_ISREG(p.lstat().st_mode) or stat.S_ISDIR(p.lstat().st_mode) for p in written), written
    assert case != "zip twice" or (folder / "manifest.json").read_bytes() == b"{}"  # the second did not replace it


def test_every_unsafe_member_is_reported_once(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    archive = tar_gz(tmp_path / "a.tar.gz", [(member("../a"), b"x"), (member("/b"), b"x"), (member("ok.txt"), b"ok"),
                                             (member("c", tarfile.SYMTYPE, "/"), None)])
    folder, problems = _unpacked(tmp_path, archive)
    assert [p.split(":")[0] for p in problems] == ["'../a'", "'/b'", "'c'"]
    assert (folder / "ok.txt").read_bytes() == b"ok"


def test_a_zip_bomb_stops_at_the_limit_while_unpacking(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    archive = zip_of(tmp_path / "bomb.zip", [(f"zeros{i}", bytes(600_000)) for i in range(3)])
    assert archive.stat().st_size < 10_000  # deflated zeros: 1.8 MB from a few KB
    folder, problems = _unpacked(tmp_path, archive)
    assert problems == [f"the archive unpacks to more than {LIMIT} bytes (DSB_MAX_UPLOAD_UNPACKED_BYTES)"]
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= LIMIT


def test_a_zip_whose_headers_understate_its_sizes_is_refused(tmp_path: Path) -> None:
    """The central directory says 10 bytes; the data inflates to 2 MB: never more than 10 bytes are trusted."""
    (tmp_path / "out").mkdir()
    archive = zip_of(tmp_path / "liar.zip", [("model.onnx", bytes(2 << 20))])
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        at = data.index(signature) + offset
        data[at:at + 4] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    folder, problems = _unpacked(tmp_path, archive)
    assert len(problems) == 1 and "cannot be read" in problems[0], problems
    assert all(p.stat().st_size <= 10 for p in folder.rglob("*") if p.is_file())


def test_a_tar_bomb_counts_the_bytes_of_members_it_skips(tmp_path: Path) -> None:
    """An unknown member type is refused, but its 4 MB of data still has to be decompressed to skip it: counted."""
    (tmp_path / "out").mkdir()
    archive = tar_gz(tmp_path / "bomb.tar.gz", [(member("skipped", b"Z"), bytes(4 << 20))])
    _, problems = _unpacked(tmp_path, archive)
    assert problems[-1] == f"the archive unpacks to more than {LIMIT} bytes (DSB_MAX_UPLOAD_UNPACKED_BYTES)", problems


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_too_many_members_are_refused_as_they_are_counted(tmp_path: Path, kind: str) -> None:
    (tmp_path / "out").mkdir()
    files = [(f"f{i}", b"") for i in range(40)]
    archive = (zip_of(tmp_path / "many.zip", files) if kind == "zip"
               else tar_gz(tmp_path / "many.tar.gz", [(member(n), d) for n, d in files]))
    folder, problems = _unpacked(tmp_path, archive, max_members=30)
    assert problems == ["the archive has more than 30 members: a model folder needs a few files"]
    assert len(list(folder.iterdir())) <= 30


@pytest.mark.parametrize("body", [b"", b"{\"not\": \"an archive\"}", b"PK\x03\x04truncated", b"\x1f\x8bnot gzip"])
def test_what_is_not_an_archive_is_one_clear_problem(tmp_path: Path, body: bytes) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "body").write_bytes(body)
    _, problems = _unpacked(tmp_path, tmp_path / "body")
    assert len(problems) == 1 and ("not a .zip or .tar.gz" in problems[0] or "cannot be read" in problems[0])


def test_one_top_level_folder_is_the_model_folder(tmp_path: Path) -> None:
    model = make_model(tmp_path / "tiny")
    (tmp_path / "out").mkdir()
    finder = [("__MACOSX/tiny/._manifest.json", b"\0\5\26\7"), (".DS_Store", b"\0\0\0\1Bud1")]  # macOS adds these
    archive = zip_of(tmp_path / "m.zip", [(f"tiny/{p.name}", p.read_bytes()) for p in model.iterdir()] + finder)
    folder, problems = _unpacked(tmp_path, archive)
    assert problems == [] and folder.name == "tiny" and validate(folder) == []
    assert not (tmp_path / "out" / "target" / "__MACOSX").exists()


# ---- the graph is checked with onnx before onnxruntime sees it ----

def _graph(op: helper.NodeProto, opset: int = 17, domain: str | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        [op, helper.make_node("Identity", ["t"], ["image"])], "g",
        [helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 4, 8, 8])])
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets)


def _external(folder: Path) -> None:
    graph = tiny_graph()
    weights = numpy_helper.from_array(np.ones(16, dtype=np.float32), "w")  # raw data: what goes to a file
    graph.graph.initializer.append(weights)
    onnx.save(graph, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    make_model(folder, graph=onnx.load(str(folder / "model.onnx"), load_external_data=False))


GRAPHS: dict[str, tuple[Callable[[Path], object], str]] = {
    "custom operator": (lambda f: make_model(f, graph=_graph(helper.make_node(
        "FusedGemm", ["noise"], ["t"], domain="com.microsoft"), domain="com.microsoft")),
        "imports the opset domain 'com.microsoft'"),
    "random operator": (lambda f: make_model(f, graph=_graph(helper.make_node("RandomNormalLike", ["noise"], ["t"]))),
                        "the operator RandomNormalLike (random: make the noise an input) is not allowed"),
    "old opset": (lambda f: make_model(f, graph=_graph(helper.make_node("Tanh", ["noise"], ["t"]), opset=7)),
                  "opset 7 is outside 11.."),
    "external weights": (_external, "weights in external files (w)"),
}


@pytest.mark.parametrize("case", GRAPHS)
def test_graphs_onnxruntime_must_not_load_are_refused_before_any_session(
        tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    sessions: list[object] = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: sessions.append(a) or pytest.fail("loaded"))
    make, expected = GRAPHS[case]
    folder = tmp_path / "m"
    folder.mkdir()
    make(folder)
    problems = validate(folder)
    assert any(expected in p for p in problems), problems
    assert sessions == []
    assert validate_module.graph_problems(folder / "model.onnx")  # the same check, without onnxruntime


# ---- contributions: pending, approved, rejected ----

@pytest.fixture
def contributions(tmp_path: Path) -> Contributions:
    return Contributions(tmp_path / "contributions", ModelStore([tmp_path / "installed"]))


def _archive(tmp_path: Path, name: str = "m", **changes: object) -> Path:
    model = make_model(tmp_path / name, id="tiny-upload", subcategory="upload-patch", **changes)
    return pack_folder(model, tmp_path / f"{name}.tar.gz")


def test_a_valid_upload_is_pending_and_served_only_once_approved(tmp_path: Path, contributions: Contributions) -> None:
    record = contributions.submit(_archive(tmp_path), OWNER, LIMIT)
    assert record.state == "pending" and record.model["id"] == "tiny-upload"
    assert contributions.store.entries(fresh=True) == []  # nothing served
    assert [c.id for c in contributions.list(state="pending")] == [record.id]
    assert contributions.get(record.id, owner_key_id=OWNER["key_id"]).state == "pending"
    with pytest.raises(NotFound):
        contributions.get(record.id, owner_key_id=ADMIN["key_id"])  # another key: as if it did not exist
    approved = contributions.approve(record.id, ADMIN)
    assert approved.state == "approved" and approved.installed_version == 1 and approved.decided_by == ADMIN
    (entry,) = contributions.store.entries(fresh=True)
    assert (entry.manifest.id, entry.manifest.version) == ("tiny-upload", 1)
    with pytest.raises(Conflict):
        contributions.approve(record.id, ADMIN)
    second = contributions.approve(contributions.submit(_archive(tmp_path, "m2"), OWNER, LIMIT).id, ADMIN)
    assert second.installed_version == 2  # the next version, as `models add` makes it


def test_a_rejection_keeps_its_reason_and_removes_the_files(tmp_path: Path, contributions: Contributions) -> None:
    record = contributions.submit(_archive(tmp_path), OWNER, LIMIT)
    rejected = contributions.reject(record.id, ADMIN, "the licence forbids redistribution")
    assert contributions.get(record.id, OWNER["key_id"]).reason == "the licence forbids redistribution"
    assert rejected.state == "rejected" and not (contributions.root / record.id / "model").exists()
    assert contributions.store.entries(fresh=True) == []
    with pytest.raises(Conflict):
        contributions.approve(record.id, ADMIN)


def test_an_invalid_upload_reports_what_models_validate_reports(tmp_path: Path, contributions: Contributions) -> None:
    archive = _archive(tmp_path, license="", citations=[])
    with pytest.raises(ContributionInvalid) as refused:
        contributions.submit(archive, OWNER, LIMIT)
    problems = refused.value.details["problems"]
    assert problems == validate(tmp_path / "m") and len(problems) == 2
    assert list(contributions.root.iterdir()) == []  # nothing kept


def test_the_validator_runs_apart_and_a_crash_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSB_REDIS_URL", "redis://:secret@127.0.0.1:1/0")
    assert not any("secret" in value for value in contributions_module._child_environment().values())
    folder = make_model(tmp_path / "m")
    assert validate_isolated(folder) == []
    assert validate_isolated(folder, timeout=0.001)[0].startswith("validation took longer than")


def test_a_key_has_few_pending_contributions(tmp_path: Path, contributions: Contributions,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contributions_module, "MAX_PENDING_PER_KEY", 2)  # 5 in service: the same count, sooner
    archive = _archive(tmp_path)
    first = contributions.submit(archive, OWNER, LIMIT)
    contributions.submit(archive, OWNER, LIMIT)
    with pytest.raises(TooManyPending):
        contributions.submit(archive, OWNER, LIMIT)
    assert len(contributions.list(OWNER["key_id"])) == 2
    contributions.reject(first.id, ADMIN, "a duplicate")  # decided: no longer counts
    contributions.submit(archive, OWNER, LIMIT)


def test_an_id_of_another_body_system_is_refused(tmp_path: Path, contributions: Contributions) -> None:
    contributions.store.install(make_model(tmp_path / "other", id="tiny-upload", subcategory="elsewhere"))
    with pytest.raises(ContributionInvalid) as refused:
        contributions.submit(_archive(tmp_path), OWNER, LIMIT)
    assert "is taken by the model under integumentary/elsewhere" in refused.value.details["problems"][0]


def test_unknown_ids_are_not_found(contributions: Contributions) -> None:
    for contribution_id in ("0" * 32, "../../etc", ""):
        with pytest.raises(NotFound):
            contributions.get(contribution_id)
    assert json.dumps([c.as_dict() for c in contributions.list()]) == "[]"
    assert not os.path.exists(contributions.root)


def test_uploads_a_killed_api_left_behind_go_after_a_day(tmp_path: Path) -> None:
    """The upload route deletes its file when it is done; a process killed mid-upload or mid-validation does not."""
    root = tmp_path / "contributions"
    (root / ".incoming-old" / "unpacked").mkdir(parents=True)
    (root / "0123456789abcdef0123456789abcdef").mkdir()  # a contribution: never touched
    for name in (".upload-old", ".upload-new"):
        (root / name).write_bytes(b"part of an archive")
    day_ago = 1_000_000_000.0 - contributions_module.LEFTOVER_SECONDS - 1
    for path in (root / ".upload-old", root / ".incoming-old"):
        os.utime(path, (day_ago, day_ago))
    os.utime(root / ".upload-new", (1_000_000_000.0 - 60, 1_000_000_000.0 - 60))  # an upload still coming in
    kept = Contributions(root, ModelStore([]))
    assert sorted(kept.remove_leftovers(now=1_000_000_000.0)) == [".incoming-old", ".upload-old"]
    assert sorted(p.name for p in root.iterdir()) == [".upload-new", "0123456789abcdef0123456789abcdef"]
    assert Contributions(tmp_path / "none yet", ModelStore([])).remove_leftovers() == []
