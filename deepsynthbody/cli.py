"""The `deepsynthbody` command: serve (all in one), api, worker, models, keys; generate and jobs (a client)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from model_store.store import open_store

log = logging.getLogger("deepsynthbody")


def _apply(args: argparse.Namespace) -> None:
    """Command-line flags become settings: environment first, so every process reads the same values."""
    if getattr(args, "data_dir", None):
        os.environ["DSB_DATA_DIR"] = str(Path(args.data_dir).resolve())


def _workers(args: argparse.Namespace) -> int:
    """The number of workers to start: --workers, or one per GPU of --gpus, once the GPUs are found on this host."""
    from deepsynthbody.core import gpus

    try:
        count = gpus.worker_count(args.workers, args.gpus)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.gpus:
        host = gpus.installed()
        if host is None:
            log.warning("nvidia-smi is not there or failed: the GPUs of --gpus %s are not checked", ",".join(args.gpus))
        elif missing := gpus.not_installed(args.gpus, host):
            there = ", ".join(f"{index} ({uuid})" for index, uuid in host) or "none"
            raise CommandError(f"--gpus: this host has no GPU {', '.join(missing)} (nvidia-smi lists: {there})")
    return count


def _serve(args: argparse.Namespace) -> None:
    from deepsynthbody.serve import run

    run(args.host, args.port, _workers(args), gpus=args.gpus)


def _say_unbuilt(command: str) -> None:
    """`api` and `worker` build no model (their hosts share one data dir, and need no PyTorch): one whose recipe is
    here and whose files are not is named as they start, with the command that builds it."""
    from deepsynthbody.core.settings import get_settings
    from model_store.build import missing

    store = open_store(get_settings())
    unbuilt = [f"{recipe.model_id} v{recipe.version}" for recipe in missing(store)]
    if unbuilt:
        log.warning("%s: not built in %s: %s. Requests for them are refused (404) until `deepsynthbody models build` "
                    "has run once with this DSB_DATA_DIR (on a host with the export extra: pip install -e '.[export]')",
                    command, store.install_root, ", ".join(unbuilt))


def _api(args: argparse.Namespace) -> None:
    import uvicorn

    from deepsynthbody.core.keys import resolve_auth

    resolve_auth(args.host)  # DSB_AUTH's default depends on the address
    _say_unbuilt("deepsynthbody api")

    from app.metrics import shared_by_processes
    from deepsynthbody.core.logs import uvicorn_config
    from deepsynthbody.core.settings import get_settings

    with shared_by_processes(args.processes):  # the processes' request metrics, in one directory
        uvicorn.run("app.main:create_app", factory=True, host=args.host, port=args.port, workers=args.processes,
                    log_config=uvicorn_config(), timeout_graceful_shutdown=get_settings().shutdown_timeout)


def _worker(args: argparse.Namespace) -> None:
    from deepsynthbody.core.settings import get_settings, share_cores
    from workers.worker import run

    num_workers = _workers(args)
    share_cores(num_workers)  # before the settings are read: the pool's workers inherit them
    _say_unbuilt("deepsynthbody worker")
    run(args.queues or [get_settings().queue], num_workers=num_workers, burst=args.burst, gpus=args.gpus)


def _models_build(args: argparse.Namespace) -> None:
    from deepsynthbody.core.settings import get_settings
    from model_store.build import build

    built = build(open_store(get_settings()), force=args.force)
    print("\n".join(map(str, built)) or "every recipe's model is installed already (use --force to rebuild)")


def _models_list(args: argparse.Namespace) -> None:
    from deepsynthbody.core.settings import get_settings

    for entry in open_store(get_settings()).entries():
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
    from deepsynthbody.core.settings import get_settings

    if not _report_problems(args.path):
        raise SystemExit(f"{args.path} was not added: fix the errors above (`deepsynthbody models validate` checks again)")
    entry = open_store(get_settings()).install(Path(args.path))
    m = entry.manifest
    print(f"added {m.id} version {m.version} under {m.category}/{m.subcategory} at {entry.directory}")


def _models_preview(args: argparse.Namespace) -> None:
    from deepsynthbody.core.settings import get_settings
    from workers.preview import render

    category, _, subcategory = args.model.partition("/")
    if not subcategory:
        raise CommandError(f"name the model as CATEGORY/SUBCATEGORY (e.g. cardiovascular/ecg), not {args.model!r}")
    settings = get_settings()
    store = open_store(settings)
    _build_recipe_models(store, category, subcategory)
    entry = store.resolve(category, subcategory, version=args.version)
    params = _checked_params(entry.manifest, args)
    print(render(entry, settings, Path(args.out), args.count, args.seed, params))


def _build_recipe_models(store, category: str, subcategory: str) -> None:  # noqa: ANN001 - ModelStore
    """A model built by a recipe of this repository (the ECG) is built on first use, as `serve` does."""
    from model_store.build import build, missing

    if any((r.category, r.subcategory) == (category, subcategory) for r in missing(store)):
        try:
            import torch  # noqa: F401 - only the export recipes need it
        except ImportError:
            raise CommandError(f"{category}/{subcategory} is built from its recipe, which needs torch: "
                               "pip install -e '.[export]', then run this again") from None
        for path in build(store):
            log.info("built %s", path)


def _checked_params(manifest, args: argparse.Namespace) -> dict[str, object]:  # noqa: ANN001 - Manifest
    """`--param NAME=JSON_VALUE` pairs, validated like the same fields of an HTTP request to the model."""
    from pydantic import ValidationError

    from app.request_models import parse

    params: dict[str, object] = {}
    for pair in args.param:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CommandError(f"--param {pair!r}: write NAME=VALUE, e.g. --param leads=12")
        if name not in manifest.parameters:
            known = ", ".join(manifest.parameters) or "none"
            raise CommandError(f"--param {name}: {manifest.id} has no such parameter (its parameters: {known})")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value  # a bare word: validated (and refused, if need be) below
    body = {"num_samples": args.count, "seed": args.seed, **params}
    try:
        parse(manifest, max(args.count, 1), json.dumps(body).encode())
    except ValidationError as exc:
        flags = {"num_samples": "--count", "seed": "--seed"}
        problems = "; ".join(
            f"{flags.get(str(e['loc'][0]), '--param ' + str(e['loc'][0]))}: {e['msg']}" for e in exc.errors())
        raise CommandError(problems) from None
    return params


def _bench_gpu(args: argparse.Namespace) -> None:
    from deepsynthbody.bench_gpu import run

    run(args.seconds, tuple(args.batches), args.e2e_n, Path(args.json) if args.json else None, tuple(args.only),
        args.version)


def _bench(args: argparse.Namespace) -> None:
    from deepsynthbody.bench import run

    run(n=args.n, rss_n=args.rss_n, original_n=args.original_n, formats=tuple(args.formats),
        worker_counts=tuple(args.workers), clients=args.clients, requests=args.requests,
        out=Path(args.json) if args.json else None, filtered_n=args.filtered_n, labels_only=args.labels_only)


def _count(minimum: int):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    parse.__name__ = "number"
    return parse


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has one worth showing (not None, [], False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, [], False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _command(commands: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
    """A subcommand whose --help shows what it does and every option's default."""
    return commands.add_parser(name, help=summary, description=summary[:1].upper() + summary[1:] + ".",
                               formatter_class=_HelpWithDefaults)


def _data_dir(command: argparse.ArgumentParser) -> None:
    command.add_argument("--data-dir", default=argparse.SUPPRESS,
                         help="results, built models and the private Redis (default: $DSB_DATA_DIR, else ./data)")


def _gpu_list(text: str) -> list[str]:
    from deepsynthbody.core.gpus import GpuListError, parse

    try:
        return parse(text)
    except GpuListError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _gpus(command: argparse.ArgumentParser) -> None:
    command.add_argument("--gpus", type=_gpu_list, metavar="0,1,...",
                         help="GPUs to run the workers on, one each in turn (CUDA_VISIBLE_DEVICES); "
                              "a host's cores are shared between its workers")


def _listen(command: argparse.ArgumentParser) -> None:
    command.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (0.0.0.0: every interface, reachable from other machines)")
    command.add_argument("--port", type=_count(1), default=8000, help="TCP port to listen on")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="deepsynthbody", description=__doc__,
                                  formatter_class=_HelpWithDefaults)
    top.add_argument("--log-level", default="INFO", type=str.upper,
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="how much the command logs")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(commands, "serve", "run the API and its workers, with a private Redis when no Redis URL is set")
    _listen(serve)
    serve.add_argument("--workers", type=_count(0),
                       help="worker processes, 0: the API only (default: 1, or one per GPU of --gpus)")
    _gpus(serve)
    _data_dir(serve)
    serve.set_defaults(func=_serve)

    api = _command(commands, "api", "run the HTTP API only (needs DSB_REDIS_URL)")
    _listen(api)
    api.add_argument("--processes", type=_count(1), default=1, help="API processes sharing the port")
    _data_dir(api)
    api.set_defaults(func=_api)

    worker = _command(commands, "worker", "run RQ generation workers (need DSB_REDIS_URL)")
    worker.add_argument("--workers", type=_count(1),
                        help="worker processes on this host (default: 1, or one per GPU of --gpus)")
    _gpus(worker)
    worker.add_argument("--queues", nargs="*", help="queues to listen on (default: the generation queue)")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    _data_dir(worker)
    worker.set_defaults(func=_worker)

    bench = _command(commands, "bench", "measure the original package, raw ONNX and the service end to end")
    bench.add_argument("--n", type=_count(1), default=4000,
                       help="ECGs per end-to-end job (above DSB_CHUNK_SIZE, so 2 workers share it)")
    bench.add_argument("--rss-n", type=_count(1), default=20_000, help="ECGs of the job whose worker memory is measured")
    bench.add_argument("--original-n", type=_count(1), default=48, help="ECGs made by the original package")
    bench.add_argument("--formats", nargs="+", default=["npy", "wfdb", "csv", "asc", "json"], help="formats to measure")
    bench.add_argument("--workers", nargs="+", type=_count(1), default=[1, 2], help="worker counts to measure")
    bench.add_argument("--clients", type=_count(1), default=50, help="concurrent clients for the enqueue latency")
    bench.add_argument("--requests", type=_count(1), default=10_000,
                       help="requests for the enqueue latency (seconds of load, not one: a single stall of the "
                       "machine is not the p99)")
    bench.add_argument("--json", help="also write the results to this JSON file")
    bench.add_argument("--filtered-n", type=_count(1), default=100,
                       help="ECGs of the filtered job (the README's example filter keeps about 1 candidate in 100)")
    bench.add_argument("--labels-only", action="store_true",
                       help="only plain vs annotated npy jobs, side by side, and the filtered job")
    bench.set_defaults(func=_bench)

    gpu = _command(commands, "bench-gpu", "check and measure the GPU path on one CUDA GPU (needs the gpu extra)")
    gpu.add_argument("--seconds", type=float, default=3.0, help="seconds per timed measurement")
    gpu.add_argument("--batches", nargs="+", type=_count(1), default=[256, 512, 1024], help="batch sizes to time")
    gpu.add_argument("--e2e-n", type=_count(1), default=20_000, help="ECGs of the end-to-end npy job (others: a tenth)")
    gpu.add_argument("--json", help="also write the results to this JSON file")
    gpu.add_argument("--only", nargs="*", default=[], help="run only these sections, by name")
    gpu.add_argument("--version", type=_count(1), help="ECG model version to measure (default: the latest)")
    gpu.set_defaults(func=_bench_gpu)

    models = _command(commands, "models", "the model store: build, list, validate, add, preview")
    models_commands = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    build = _command(models_commands, "build", "export the models whose recipes live here (torch needed)")
    build.add_argument("--force", action="store_true", help="rebuild models that are installed already")
    _data_dir(build)
    build.set_defaults(func=_models_build)
    listing = _command(models_commands, "list", "list installed models and versions")
    _data_dir(listing)
    listing.set_defaults(func=_models_list)
    check = _command(models_commands, "validate",
                     "check a candidate model folder (manifest, ONNX, shapes, sha256, licence)")
    check.add_argument("path", help="the model folder: model.onnx and manifest.json")
    check.set_defaults(func=_models_validate)
    add = _command(models_commands, "add", "validate a model folder and install it as a new version")
    add.add_argument("path", help="the model folder: model.onnx and manifest.json")
    _data_dir(add)
    add.set_defaults(func=_models_add)
    preview = _command(models_commands, "preview", "plot a few samples of a model (no server needed)")
    preview.add_argument("model", help="CATEGORY/SUBCATEGORY, e.g. digestive/gi-tract")
    preview.add_argument("--out", required=True, help="PNG file to write")
    preview.add_argument("--count", type=_count(1), default=8, help="samples to plot")
    preview.add_argument("--seed", type=_count(0), default=0, help="seed of the samples")
    preview.add_argument("--version", type=_count(1), help="model version (default: the latest)")
    preview.add_argument("--param", action="append", default=[],
                         help="a model parameter, NAME=VALUE, e.g. leads=12 (repeatable; the model card lists them)")
    _data_dir(preview)
    preview.set_defaults(func=_models_preview)
    from deepsynthbody.keys_commands import add_commands as add_keys_commands

    add_keys_commands(commands, _command, _count, _data_dir)
    from deepsynthbody.client_commands import add_commands as add_client_commands

    add_client_commands(commands, _command, _count)  # generate, jobs: the service over HTTP
    return top


class CommandError(Exception):
    """A mistake in how the command was called: reported as one line that says what to fix."""


def _one_line(exc: BaseException) -> str:
    from deepsynthbody.core.errors import ServiceError

    if (settings := _settings_mistake(exc)) is not None:
        return settings
    if isinstance(exc, ServiceError):
        extra = "; ".join(f"{key}: {_plain(value)}" for key, value in exc.details.items())
        return exc.message + (f" ({extra})" if extra else "")
    text = " ".join(str(exc).split())
    return text if isinstance(exc, CommandError) else f"{type(exc).__name__}: {text}"


def _settings_mistake(exc: BaseException) -> str | None:
    """A setting from the environment that is not valid, named as the variable to fix; None for any other error."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError) or exc.title != "Settings":
        return None
    wrong = [f"DSB_{'_'.join(map(str, error['loc'])).upper()}={str(error['input'])[:60]!r}: {error['msg']}"
             for error in exc.errors()]
    return "; ".join(wrong) + " (environment variables: the README's Configuration table)"


def _plain(value: object) -> str:
    """A detail of a domain error as plain words: {"cardiovascular": ["ecg"], "urinary": []} -> cardiovascular/ecg."""
    if isinstance(value, dict):
        return ", ".join(f"{key}/{sub}" for key, subs in value.items() for sub in subs) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from deepsynthbody.core.logs import configure

    configure(args.log_level)  # text, or JSON lines (DSB_LOG_FORMAT)
    _apply(args)
    try:
        args.func(args)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001 - every error reaches the user as one line; the traceback is at DEBUG
        from deepsynthbody.core.errors import ServiceError

        log.debug("%s failed", args.command, exc_info=True)
        expected = isinstance(exc, CommandError | ServiceError) or _settings_mistake(exc) is not None
        hint = "" if expected else " (--log-level DEBUG shows where)"
        command = " ".join(filter(None, ["deepsynthbody", args.command, getattr(args, "models_command", None),
                                            getattr(args, "jobs_command", None)]))
        print(f"{command}: error: {_one_line(exc)}{hint}", file=sys.stderr)
        raise SystemExit(1) from None
