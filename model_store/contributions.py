"""Models contributed over HTTP: unpacked, validated, kept pending, and installed only when an admin approves.

Each contribution is a folder `<data dir>/contributions/<id>/` holding `record.json` (who sent it, its state,
the reason of a rejection) and, while pending, `model/` (the unpacked folder). A pending model is outside every
model-store root, so nothing serves it; approval installs it with `ModelStore.install`, the path of
`deepsynthbody models add`, as the next version of its model id. State changes take a lock on the record, so two
admins deciding at once cannot both install it.

Validation is `model_store.validate.validate`, the code of `deepsynthbody models validate`, run in a child
process: it loads the graph into onnxruntime for a smoke inference (after the ONNX checker and the graph checks
of `graph_problems`), and the API process never imports onnxruntime. The child has a time limit; a model that
crashes or hangs it is refused like any other invalid one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deepsynthbody.core.errors import Conflict, NotFound, ServiceError
from model_store.store import ModelStore, load_manifest
from model_store.uploads import MAX_MEMBERS, unpack

RECORD = "record.json"
LOCK = ".lock"
MODEL = "model"
STATES = ("pending", "approved", "rejected")
MAX_PENDING_PER_KEY = 5
VALIDATE_TIMEOUT = 300.0  # seconds the child validating one upload may take (an ONNX load and two inferences)
_ID = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger(__name__)
VALIDATIONS_AT_ONCE = 2
LEFTOVER_SECONDS = 86400.0  # an upload or unpacking untouched this long is one a killed process left behind
_VALIDATIONS = threading.BoundedSemaphore(VALIDATIONS_AT_ONCE)
_VALIDATE = ("import json, sys\nfrom model_store.validate import validate\n"
             "print(json.dumps(validate(sys.argv[1])))")


class ContributionInvalid(ServiceError):
    """The upload is refused: `problems` lists every one, a line each."""

    status_code = 422


class TooManyPending(ServiceError):
    status_code = 429


@dataclass
class Contribution:
    id: str
    owner: dict[str, str]  # the key's id and name
    state: str
    model: dict[str, Any]  # id, name, category, subcategory, version (the manifest's)
    created: str
    decided: str | None = None
    decided_by: dict[str, str] | None = None
    reason: str | None = None
    installed_version: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _child_environment() -> dict[str, str]:
    """The child sees no settings (the Redis URL and its password stay in the API) and infers on one thread."""
    kept = {k: v for k, v in os.environ.items()
            if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV") or k.startswith("PYTHON")}
    return kept | {"OMP_NUM_THREADS": "1"}


def validate_isolated(folder: Path, timeout: float = VALIDATE_TIMEOUT) -> list[str]:
    """`validate(folder)` in a child Python: every problem, one line each. At most VALIDATIONS_AT_ONCE children
    run together in this process; the others wait their turn."""
    root = Path(__file__).resolve().parents[1]
    try:
        with _VALIDATIONS:
            done = subprocess.run([sys.executable, "-c", _VALIDATE, str(folder)], cwd=root, capture_output=True,
                                  text=True, timeout=timeout, check=False, env=_child_environment())
    except subprocess.TimeoutExpired:
        return [f"validation took longer than {timeout:g} s (loading the graph and two small inferences): "
                "the model is too slow or hangs"]
    if done.returncode == 0:
        try:
            problems = json.loads(done.stdout.strip().splitlines()[-1])
            if isinstance(problems, list):
                return [str(p) for p in problems]
        except (json.JSONDecodeError, IndexError):
            pass
    last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return [f"the model stopped the validator ({last[:300]}): check it with `deepsynthbody models validate`"]


class Contributions:
    """The contributions kept under `root` (`<data dir>/contributions`), for `store`."""

    def __init__(self, root: Path, store: ModelStore) -> None:
        self.root, self.store = Path(root), store

    def remove_leftovers(self, older_than: float = LEFTOVER_SECONDS, now: float | None = None) -> list[str]:
        """Uploads (`.upload-*`) and unpackings (`.incoming-*`) a killed API process left behind, untouched for
        `older_than` seconds (a live upload or validation writes far more often); returns their names."""
        cutoff = (now or time.time()) - older_than
        removed = []
        for path in [*self.root.glob(".upload-*"), *self.root.glob(".incoming-*")] if self.root.is_dir() else []:
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:
                continue  # another API process took it first
            removed.append(path.name)
        if removed:
            log.info("removed %d leftover uploads from %s", len(removed), self.root)
        return removed

    # ---- reading ----

    def _folder(self, contribution_id: str) -> Path:
        if not _ID.fullmatch(contribution_id) or not (self.root / contribution_id / RECORD).is_file():
            raise NotFound(f"no contribution {contribution_id[:80]!r}",
                           hint="GET /contributions lists yours (GET /admin/contributions, for admins, the pending ones)")
        return self.root / contribution_id

    def get(self, contribution_id: str, owner_key_id: str | None = None) -> Contribution:
        """The contribution; with `owner_key_id`, only when that key sent it (any other gets the same 404)."""
        record = Contribution(**json.loads((self._folder(contribution_id) / RECORD).read_text()))
        if owner_key_id is not None and record.owner["key_id"] != owner_key_id:
            self._folder("not-an-id")  # the 404 of one that does not exist
        return record

    def list(self, owner_key_id: str | None = None, state: str | None = None) -> list[Contribution]:
        """Newest first; only `owner_key_id`'s and in `state` when given."""
        found = []
        for path in self.root.glob(f"*/{RECORD}") if self.root.is_dir() else []:
            if not _ID.fullmatch(path.parent.name):
                continue
            record = Contribution(**json.loads(path.read_text()))
            if (owner_key_id is None or record.owner["key_id"] == owner_key_id) and state in (None, record.state):
                found.append(record)
        return sorted(found, key=lambda c: (c.created, c.id), reverse=True)

    # ---- submitting ----

    def submit(self, archive: Path, owner: dict[str, str], max_unpacked_bytes: int,
               max_members: int = MAX_MEMBERS) -> Contribution:
        """Unpack and validate an uploaded archive; keep it pending when valid (ContributionInvalid otherwise)."""
        pending = self.list(owner["key_id"], "pending")
        limit = MAX_PENDING_PER_KEY
        if len(pending) >= limit:
            raise TooManyPending(f"this key has {len(pending)} contributions awaiting review, the most it may have",
                                 hint="wait for an admin to decide on them", limit="pending_contributions", value=limit)
        contribution_id = secrets.token_hex(16)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".incoming-{contribution_id}"
        try:
            unpacked = unpack(archive, staging / "unpacked", max_unpacked_bytes, max_members)
            problems = unpacked.problems
            if not problems:
                problems = validate_isolated(unpacked.folder)
            if not problems:
                manifest = load_manifest(unpacked.folder)
                problems = self._conflicts(manifest.id, manifest.category, manifest.subcategory)
            if problems:
                raise ContributionInvalid(
                    f"the model was not accepted: {len(problems)} problem{'s' if len(problems) > 1 else ''}",
                    hint="`problems` lists them, one line each; `deepsynthbody models validate` finds the same",
                    problems=problems)
            record = Contribution(
                id=contribution_id, owner=dict(owner), state="pending", created=_now(),
                model={"id": manifest.id, "name": manifest.name, "category": manifest.category,
                       "subcategory": manifest.subcategory, "version": manifest.version})
            unpacked.folder.rename(staging / MODEL)
            _write(staging / RECORD, record)
            staging.rename(self.root / contribution_id)  # appears whole, or not at all
            return record
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _conflicts(self, model_id: str, category: str, subcategory: str) -> list[str]:
        for entry in self.store.entries(fresh=True):
            m = entry.manifest
            if m.id == model_id and (m.category, m.subcategory) != (category, subcategory):
                return [f"manifest: id {model_id!r} is taken by the model under {m.category}/{m.subcategory}: "
                        "choose another id, or the same body system and subcategory to send a new version"]
        return []

    # ---- deciding ----

    @contextmanager
    def _pending(self, contribution_id: str) -> Iterator[tuple[Path, Contribution]]:
        folder = self._folder(contribution_id)
        with (folder / LOCK).open("a") as lock:  # not the record, which is replaced, not rewritten
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            record = Contribution(**json.loads((folder / RECORD).read_text()))  # read under the lock
            if record.state != "pending":
                raise Conflict(f"contribution {contribution_id} is {record.state} already", state=record.state)
            yield folder, record

    def approve(self, contribution_id: str, by: dict[str, str]) -> Contribution:
        """Install the pending model as the next version of its id (served at once) and record who approved it."""
        with self._pending(contribution_id) as (folder, record):
            entry = self.store.install(folder / MODEL)
            self.store.entries(fresh=True)
            record.state, record.decided, record.decided_by = "approved", _now(), dict(by)
            record.installed_version = entry.manifest.version
            _write(folder / RECORD, record)
            shutil.rmtree(folder / MODEL, ignore_errors=True)  # installed: the store holds its copy
            return record

    def reject(self, contribution_id: str, by: dict[str, str], reason: str) -> Contribution:
        """Refuse the pending model, with the reason its contributor reads; its files are removed."""
        with self._pending(contribution_id) as (folder, record):
            record.state, record.decided, record.decided_by, record.reason = "rejected", _now(), dict(by), reason
            _write(folder / RECORD, record)
            shutil.rmtree(folder / MODEL, ignore_errors=True)
            return record


def _write(path: Path, record: Contribution) -> None:
    """Replace `path` atomically (readers see the old record or the new one)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    partial.write_text(json.dumps(record.as_dict(), indent=2))
    os.replace(partial, path)
