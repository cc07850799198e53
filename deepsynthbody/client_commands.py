"""`deepsynthbody generate` and `deepsynthbody jobs list|show|cancel|download`: the service over HTTP
(`deepsynthbody.client`), added by deepsynthbody.cli.

`generate` submits, shows the job's progress and then the download's, checks every file against the manifest's
sha256 and unpacks the archive into OUT. It notes the job in `OUT/.deepsynthbody-job.json` until the files are
there: run again after an interruption (Ctrl-C, a dropped connection), the same request follows the same job and
resumes its download where it stopped instead of making the samples again.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from deepsynthbody.client import Bar, Client, ClientError

STATE_FILE = ".deepsynthbody-job.json"


def _client(args: argparse.Namespace) -> Client:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would drown the progress bars
    return Client(args.url, args.api_key)


def _fail(exc: ClientError) -> Exception:
    from deepsynthbody.cli import CommandError

    return CommandError(str(exc))


def _params(pairs: list[str]) -> dict[str, Any]:
    from deepsynthbody.cli import CommandError

    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CommandError(f"--param {pair!r}: write NAME=VALUE, e.g. --param leads=12")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value  # a bare word: the service says whether it is valid
    return params


def _where(conditions: list[str]) -> dict[str, dict[str, float]]:
    """`--where NAME=MIN:MAX` (either bound may be left out) as the request's `where`."""
    from deepsynthbody.cli import CommandError

    where: dict[str, dict[str, float]] = {}
    for condition in conditions:
        name, sep, bounds = condition.partition("=")
        low, colon, high = bounds.partition(":")
        try:
            if not (sep and name and colon and (low or high)):
                raise ValueError
            where[name] = {key: float(text) for key, text in (("min", low), ("max", high)) if text}
            if not all(map(math.isfinite, where[name].values())):
                raise ValueError
        except ValueError:
            raise CommandError(f"--where {condition!r}: write NAME=MIN:MAX, numbers in the measurement's unit, either "
                               "left out for no bound, e.g. --where heart_rate=50:60 --where qrs_duration=:100 (the "
                               "model card lists the measurements)") from None
    return where


def _body(args: argparse.Namespace) -> dict[str, Any]:
    """The request: the options given (the service fills in the rest), then `--param`s."""
    body = {"num_samples": args.n, "seed": args.seed, "format": args.format, "version": args.version,
            "precision": args.precision, "annotate": args.annotate or None, "where": _where(args.where) or None}
    return {key: value for key, value in body.items() if value is not None} | _params(args.param)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _generate(args: argparse.Namespace) -> None:
    out = Path(args.out)
    body = _body(args)
    wanted = {"url": None, "model": args.model, "request": body}
    state = out / STATE_FILE
    try:
        with _client(args) as dsb:
            wanted["url"] = dsb.url
            job_id = _resumable(dsb, state, wanted)
            if job_id is None:
                job = dsb.submit(args.model, **body)
                job_id = job["job_id"]
                out.mkdir(parents=True, exist_ok=True)
                state.write_text(json.dumps({**wanted, "job_id": job_id}))
                _say(f"job {job_id} queued (seed {job['seed']})")
            else:
                _say(f"job {job_id}: resuming the request made earlier into {out}")
            _fetch(dsb, job_id, out, Bar("generating", "samples"))
    except ClientError as exc:
        raise _fail(exc) from None
    state.unlink(missing_ok=True)


def _resumable(dsb: Client, state: Path, wanted: dict[str, Any]) -> str | None:
    """The job an interrupted run of the same request left in OUT, while the service still has it."""
    try:
        saved = json.loads(state.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or {k: saved.get(k) for k in wanted} != wanted:
        return None
    try:
        job = dsb.job(str(saved.get("job_id")))
    except ClientError:  # expired, or another service's
        return None
    return job["job_id"] if job["status"] not in ("failed", "canceled") else None


def _fetch(dsb: Client, job_id: str, out: Path, bar: Bar) -> None:
    job = dsb.follow(job_id, bar)
    if job["status"] != "finished":
        reason = job.get("error") or job["status"]
        raise ClientError(f"job {job_id} {job['status']}: {reason}" if job["status"] == "failed"
                          else f"job {job_id} was canceled; nothing to download")

    def resumed(start: int, total: int) -> None:
        _say(f"resuming the download at byte {start} of {total}")

    manifest = dsb.download(job_id, out, Bar("downloading", "bytes"), resumed)
    _say(f"{len(manifest['files'])} files checked against the manifest's sha256 and unpacked into {out}")


def _download(args: argparse.Namespace) -> None:
    try:
        with _client(args) as dsb:
            _fetch(dsb, args.job_id, Path(args.out), Bar("generating", "samples"))
    except ClientError as exc:
        raise _fail(exc) from None


def _row(job: dict[str, Any]) -> str:
    progress = job["progress"]
    return "\t".join([job["job_id"], job["status"], f"{progress['done']}/{progress['total']}",
                      f"{job['model']['id']}:{job['model']['version']}", job["format"], str(job.get("created_at") or "")])


def _list(args: argparse.Namespace) -> None:
    try:
        with _client(args) as dsb:
            for job in dsb.jobs(args.limit):
                print(_row(job))
    except ClientError as exc:
        raise _fail(exc) from None


def _show(args: argparse.Namespace) -> None:
    try:
        with _client(args) as dsb:
            print(json.dumps(dsb.job(args.job_id), indent=2))
    except ClientError as exc:
        raise _fail(exc) from None


def _cancel(args: argparse.Namespace) -> None:
    try:
        with _client(args) as dsb:
            job = dsb.cancel(args.job_id)
    except ClientError as exc:
        raise _fail(exc) from None
    print(f"job {job['job_id']}: {job['status']}")


def _service(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the service (default: $DSB_URL, else http://127.0.0.1:8000)")
    parser.add_argument("--api-key", help="an API key, when the service requires one (default: $DSB_API_KEY)")


def add_commands(commands: Any, command: Any, count: Any) -> None:  # noqa: ANN401 - argparse internals
    generate = command(commands, "generate", "ask a running service for samples, follow the job, download, "
                       "check and unpack them")
    generate.add_argument("model", help="CATEGORY/SUBCATEGORY, e.g. cardiovascular/ecg (GET /models lists them)")
    generate.add_argument("-n", "--num-samples", dest="n", type=count(1), default=1, help="samples to make")
    generate.add_argument("--format", help="file format, e.g. wfdb, npy, csv, edf, png (default: the model's first)")
    generate.add_argument("--seed", type=count(0), help="seed: the same seed gives the same samples (default: random)")
    generate.add_argument("--version", type=count(1), help="model version (default: the latest)")
    generate.add_argument("--precision", help="fp32 or a variant the model ships, e.g. fp16 (default: fp32)")
    generate.add_argument("--annotate", action="store_true",
                          help="measure every sample: labels.csv and annotation files beside them (models that "
                          "measure their samples, e.g. the ECG)")
    generate.add_argument("--where", action="append", default=[], metavar="NAME=MIN:MAX",
                          help="keep only samples whose measurement NAME is in [MIN, MAX] (either may be left out: "
                          "qrs_duration=:100); repeatable, all must hold; implies --annotate")
    generate.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                          help="a model parameter, e.g. leads=12 (repeatable; the model card lists them), or any "
                          "other request field, VALUE as JSON")
    generate.add_argument("-o", "--out", required=True, help="folder to unpack the files into")
    _service(generate)
    generate.set_defaults(func=_generate)

    jobs = command(commands, "jobs", "your jobs on a running service: list, show, cancel, download")
    sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")
    listed = command(sub, "list", "your jobs, newest first: id, status, progress, model, format, created")
    listed.add_argument("--limit", type=count(1), default=20, help="jobs to list (at most 100)")
    shown = command(sub, "show", "one job's status, progress and request, as JSON")
    canceled = command(sub, "cancel", "cancel a queued or running job (a finished one: delete its files)")
    fetched = command(sub, "download", "follow a job to its end, download, check and unpack its archive")
    fetched.add_argument("-o", "--out", required=True, help="folder to unpack the files into")
    for parser in (shown, canceled, fetched):
        parser.add_argument("job_id", help="the job's id")
    for parser, func in ((listed, _list), (shown, _show), (canceled, _cancel), (fetched, _download)):
        _service(parser)
        parser.set_defaults(func=func)
