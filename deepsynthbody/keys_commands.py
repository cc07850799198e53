"""`deepsynthbody keys create|list|revoke`: the API keys (`deepsynthbody.core.keys`) from a shell."""

from __future__ import annotations

from typing import Any

from redis import Redis

from deepsynthbody.core.keys import create, list_keys, revoke


def _connect(args: Any) -> Redis:  # noqa: ANN401 - argparse.Namespace
    import os
    from pathlib import Path

    from deepsynthbody.cli import CommandError

    data_dir = getattr(args, "data_dir", None)
    if data_dir:
        from deepsynthbody.core.embedded_redis import url_for_data_dir

        url = url_for_data_dir(Path(data_dir).resolve())
        if url is None:
            raise CommandError(f"no `deepsynthbody serve` with a private Redis runs on {data_dir}: start it there, "
                               "or set DSB_REDIS_URL to the Redis the API uses (and drop --data-dir)")
    else:
        url = os.environ.get("DSB_REDIS_URL") or os.environ.get("REDIS_URL")
        if not url:
            raise CommandError("set DSB_REDIS_URL to the Redis the API uses, or pass --data-dir of a running "
                               "`deepsynthbody serve`")
    connection = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        connection.ping()
    except Exception as exc:  # noqa: BLE001 - one line: where, and why
        raise CommandError(f"cannot reach the Redis at {_safe_url(url)}: {' '.join(str(exc).split())}") from None
    return connection


def _safe_url(url: str) -> str:
    """The URL without its password (the command's errors may be pasted anywhere)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def _show_limit(value: int | None) -> str:
    return "default" if value is None else str(value)


def _create(args: Any) -> None:  # noqa: ANN401
    key, info = create(_connect(args), args.name, args.samples_per_day, args.max_active_jobs, args.admin,
                       args.contributor)
    role = "admin " if info.admin else "contributor " if info.contributor else ""
    print(f"created {role}key {info.id} named {info.name!r} (samples per day: "
          f"{_show_limit(info.samples_per_day)}, active jobs: {_show_limit(info.max_active_jobs)}); "
          "the key is shown this once, on the next line: keep it secret")
    print(key)


def _list(args: Any) -> None:  # noqa: ANN401
    infos = list_keys(_connect(args))
    if not infos:
        print("no keys (`deepsynthbody keys create --name NAME` makes one)")
        return
    print("id\tname\tadmin\tsamples_per_day\tmax_active_jobs\tcreated\tlast_used\tcontributor")
    for i in infos:
        print(f"{i.id}\t{i.name}\t{'yes' if i.admin else 'no'}\t{_show_limit(i.samples_per_day)}\t"
              f"{_show_limit(i.max_active_jobs)}\t{i.created}\t{i.last_used or 'never'}\t"
              f"{'yes' if i.contributor or i.admin else 'no'}")


def _revoke(args: Any) -> None:  # noqa: ANN401
    info = revoke(_connect(args), args.id)
    print(f"revoked key {info.id} ({info.name!r}): requests with it get 401 from now on")


def add_commands(commands: Any, command: Any, count: Any, data_dir: Any) -> None:  # noqa: ANN401 - argparse internals
    """`deepsynthbody keys create|list|revoke`, added by deepsynthbody.cli with its helpers."""
    keys_command = command(commands, "keys", "API keys: create, list, revoke (in the Redis the API uses)")
    sub = keys_command.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    where = ("the Redis is $DSB_REDIS_URL, or with --data-dir that of the `deepsynthbody serve` running there")
    made = command(sub, "create", "create a key; the key is printed alone on the last line, once")
    made.add_argument("--name", required=True, help="who or what uses it (logged; 1-64 characters)")
    made.add_argument("--samples-per-day", type=count(1), help="samples per UTC day (default: DSB_DEFAULT_SAMPLES_PER_DAY)")
    made.add_argument("--max-active-jobs", type=count(1),
                      help="queued + running requests at once (default: DSB_DEFAULT_MAX_ACTIVE_JOBS)")
    made.add_argument("--admin", action="store_true", help="may manage keys over HTTP and see every job")
    made.add_argument("--contributor", action="store_true",
                      help="may upload models over HTTP (POST /models), served once an admin approves them")
    listed = command(sub, "list", "list keys: id, name, limits, created, last used (never the keys)")
    gone = command(sub, "revoke", "revoke a key: refused from its next request on")
    gone.add_argument("id", help="the key's id, as `keys list` shows it")
    for parser, func in ((made, _create), (listed, _list), (gone, _revoke)):
        data_dir(parser)
        parser.epilog = where
        parser.set_defaults(func=func)
