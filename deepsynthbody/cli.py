"""The `deepsynthbody` command: serve (all in one), api, worker, models."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger("deepsynthbody")


def _apply(args: argparse.Namespace) -> None:
    """Command-line flags become settings: environment first, so every process reads the same values."""
    if getattr(args, "data_dir", None):
        os.environ["DSB_DATA_DIR"] = str(Path(args.data_dir).resolve())


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from deepsynthbody import processes
    from deepsynthbody.embedded_redis import EmbeddedRedis
    from deepsynthbody.settings import Settings

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["DSB_DATA_DIR"] = str(settings.data_dir.resolve())
    redis_server = None
    if not settings.redis_url:
        redis_server = EmbeddedRedis(settings.data_dir / "redis").start()
        os.environ["DSB_REDIS_URL"] = redis_server.url
        log.info("started a private Redis at %s (data in %s)", redis_server.url, redis_server.directory)
    _build_missing(Settings())
    if args.workers and "DSB_ORT_THREADS" not in os.environ:
        os.environ["DSB_ORT_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.workers))
    workers = None
    if args.workers:
        workers = processes.spawn([sys.executable, "-m", "deepsynthbody", "worker", "--workers", str(args.workers)])
    # uvicorn re-raises SIGTERM once it has shut down; make that an exit that runs the clean-up below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run("app.main:create_app", factory=True, host=args.host, port=args.port)
    finally:
        processes.stop(workers)
        if redis_server is not None:
            redis_server.stop()


def _build_missing(settings) -> None:  # noqa: ANN001 - Settings, imported lazily
    from model_store.build import build, missing

    store = settings.model_store()
    if not missing(store):
        return
    try:
        import torch  # noqa: F401 - only the export recipes need it
    except ImportError:
        log.error("models are missing and torch is not installed: pip install '.[export]', then `deepsynthbody models build`")
        return
    for path in build(store):
        log.info("built %s", path)


def _api(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run("app.main:create_app", factory=True, host=args.host, port=args.port, workers=args.processes)


def _worker(args: argparse.Namespace) -> None:
    from deepsynthbody.settings import get_settings
    from workers.worker import run

    run(args.queues or [get_settings().queue], num_workers=args.workers, burst=args.burst)


def _models_build(args: argparse.Namespace) -> None:
    from deepsynthbody.settings import get_settings
    from model_store.build import build

    built = build(get_settings().model_store(), force=args.force)
    print("\n".join(map(str, built)) or "every recipe's model is installed already (use --force to rebuild)")


def _models_list(args: argparse.Namespace) -> None:
    from deepsynthbody.settings import get_settings

    for entry in get_settings().model_store().entries():
        m = entry.manifest
        print(f"{m.category}/{m.subcategory}\t{m.id}:{m.version}\t{m.output.kind}\t{','.join(m.formats)}\t{entry.directory}")


def _report_problems(path: str) -> bool:
    """Print what `models validate` finds; True when the folder is valid."""
    from model_store.validate import validate

    problems = validate(Path(path))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return not problems


def _models_validate(args: argparse.Namespace) -> None:
    if not _report_problems(args.path):
        raise SystemExit(1)
    print(f"{args.path}: valid")


def _models_add(args: argparse.Namespace) -> None:
    from deepsynthbody.settings import get_settings

    if not _report_problems(args.path):
        raise SystemExit(f"{args.path} was not added: fix the errors above (`deepsynthbody models validate` checks again)")
    entry = get_settings().model_store().install(Path(args.path))
    m = entry.manifest
    print(f"added {m.id} version {m.version} under {m.category}/{m.subcategory} at {entry.directory}")


def _models_preview(args: argparse.Namespace) -> None:
    from deepsynthbody.settings import get_settings
    from workers.preview import render

    category, _, subcategory = args.model.partition("/")
    settings = get_settings()
    entry = settings.model_store().resolve(category, subcategory, version=args.version)
    params = {key: json.loads(value) for key, value in (p.split("=", 1) for p in args.param)}
    print(render(entry, settings, Path(args.out), args.count, args.seed, params))


def _bench_gpu(args: argparse.Namespace) -> None:
    from deepsynthbody.bench_gpu import run

    run(args.seconds, tuple(args.batches), args.e2e_n, Path(args.json) if args.json else None, tuple(args.only),
        args.version)


def _bench(args: argparse.Namespace) -> None:
    from deepsynthbody.bench import run

    run(n=args.n, rss_n=args.rss_n, original_n=args.original_n, formats=tuple(args.formats),
        worker_counts=tuple(args.workers), clients=args.clients, requests=args.requests,
        out=Path(args.json) if args.json else None)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="deepsynthbody", description=__doc__)
    top.add_argument("--log-level", default="INFO")
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="API + workers (+ a private Redis when no Redis URL is set)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (0: API only)")
    serve.add_argument("--data-dir", help="results, built models and the private Redis (default ./data)")
    serve.set_defaults(func=_serve)

    api = commands.add_parser("api", help="the HTTP API only (needs DSB_REDIS_URL)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--processes", type=int, default=1)
    api.add_argument("--data-dir")
    api.set_defaults(func=_api)

    worker = commands.add_parser("worker", help="RQ generation workers (need DSB_REDIS_URL)")
    worker.add_argument("--workers", type=int, default=1, help="worker processes on this host")
    worker.add_argument("--queues", nargs="*", help="queues to listen on (default: the generation queue)")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.add_argument("--data-dir")
    worker.set_defaults(func=_worker)

    bench = commands.add_parser("bench", help="measure the original package, raw ONNX and the service end to end")
    bench.add_argument("--n", type=int, default=4000, help="ECGs per end-to-end job (above DSB_CHUNK_SIZE, so 2 workers share it)")
    bench.add_argument("--rss-n", type=int, default=20_000, help="ECGs of the job whose worker memory is measured")
    bench.add_argument("--original-n", type=int, default=48, help="ECGs made by the original package")
    bench.add_argument("--formats", nargs="+", default=["npy", "wfdb", "csv", "asc", "json"])
    bench.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="worker counts to measure")
    bench.add_argument("--clients", type=int, default=50, help="concurrent clients for the enqueue latency")
    bench.add_argument("--requests", type=int, default=10_000,
                       help="requests for the enqueue latency (seconds of load, not one: a single stall of the "
                       "machine is not the p99)")
    bench.add_argument("--json", help="also write the results to this JSON file")
    bench.set_defaults(func=_bench)

    gpu = commands.add_parser("bench-gpu", help="check and measure the GPU path on one CUDA GPU (needs the gpu extra)")
    gpu.add_argument("--seconds", type=float, default=3.0, help="seconds per timed measurement")
    gpu.add_argument("--batches", nargs="+", type=int, default=[256, 512, 1024], help="batch sizes to time")
    gpu.add_argument("--e2e-n", type=int, default=20_000, help="ECGs of the end-to-end npy job (others: a tenth)")
    gpu.add_argument("--json", help="also write the results to this JSON file")
    gpu.add_argument("--only", nargs="*", default=[], help="run only these sections, by name")
    gpu.add_argument("--version", type=int, help="ECG model version to measure (default: the latest)")
    gpu.set_defaults(func=_bench_gpu)

    models = commands.add_parser("models", help="the model store").add_subparsers(dest="models_command", required=True)
    build = models.add_parser("build", help="export the models whose recipes live here (torch needed)")
    build.add_argument("--force", action="store_true", help="rebuild models that are installed already")
    build.add_argument("--data-dir")
    build.set_defaults(func=_models_build)
    listing = models.add_parser("list", help="installed models and versions")
    listing.add_argument("--data-dir")
    listing.set_defaults(func=_models_list)
    check = models.add_parser("validate", help="check a candidate model folder (manifest, ONNX, shapes, sha256, licence)")
    check.add_argument("path")
    check.set_defaults(func=_models_validate)
    add = models.add_parser("add", help="validate a model folder and install it as a new version")
    add.add_argument("path")
    add.add_argument("--data-dir")
    add.set_defaults(func=_models_add)
    preview = models.add_parser("preview", help="plot a few samples of a model (no server needed)")
    preview.add_argument("model", help="CATEGORY/SUBCATEGORY, e.g. digestive/gi-tract")
    preview.add_argument("--out", required=True, help="PNG file to write")
    preview.add_argument("--count", type=int, default=8)
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--version", type=int)
    preview.add_argument("--param", action="append", default=[], help="a model parameter, NAME=JSON_VALUE (repeatable)")
    preview.add_argument("--data-dir")
    preview.set_defaults(func=_models_preview)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _apply(args)
    args.func(args)
