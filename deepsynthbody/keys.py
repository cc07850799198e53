"""API keys: who calls the service, as stored in the Redis the API uses (shared by the CLI and the API).

A key is shown once, when it is made; Redis holds only its sha256 (`dsb:keys:h:<sha256>`, a hash with the key's
id, name, limits, creation and last use) and an index from key id to that hash (`dsb:keys:index`), which
`keys list` and `keys revoke` read. A request's key is checked by hashing what it presents and reading that
record: one round trip (a Lua script that also records the last use and counts the key's requests this second),
nothing cached, so a revoke takes effect on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from deepsynthbody.errors import NotFound, ServiceError

INDEX = "dsb:keys:index"
RECORD_PREFIX = "dsb:keys:h:"
RATE_PREFIX = "dsb:keys:rate:"
KEY_PREFIX = "dsb_"
ANONYMOUS = "anonymous"

if TYPE_CHECKING:
    from redis import Redis
_NAME = re.compile(r"[\w.@+-][\w .@+-]{0,63}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")


class BadKeyRequest(ServiceError):
    status_code = 422


class Forbidden(ServiceError):
    status_code = 403


@dataclass(frozen=True)
class Caller:
    """Who made a request: the key's id and name (never the key), whether it is an admin's, and its limits
    (None: unlimited)."""

    key_id: str
    name: str
    admin: bool
    samples_per_day: int | None = None
    max_active_jobs: int | None = None
    contributor: bool = False  # may upload models (POST /models); admins may too

    @property
    def owner(self) -> dict[str, str]:
        """What a job records as its owner (`meta["owner"]`)."""
        return {"key_id": self.key_id, "name": self.name}


def anonymous(samples_per_day: int | None = None, max_active_jobs: int | None = None) -> Caller:
    """Every request's caller when authentication is off: an admin, with the default limits."""
    return Caller(ANONYMOUS, ANONYMOUS, True, samples_per_day, max_active_jobs)


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    admin: bool
    samples_per_day: int | None
    max_active_jobs: int | None
    created: str
    last_used: str | None
    contributor: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def record_key(key_digest: str) -> str:
    return RECORD_PREFIX + key_digest


def _iso(seconds: str | bytes | None) -> str | None:
    if not seconds:
        return None
    return datetime.fromtimestamp(float(seconds), UTC).isoformat(timespec="seconds")


def _limit(value: str | bytes | None) -> int | None:
    return int(value) if value else None


def _text(value: str | bytes | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def parse_record(fields: dict[str, Any], default_samples_per_day: int | None = None,
                 default_max_active_jobs: int | None = None) -> tuple[KeyInfo, str]:
    """A stored record as a KeyInfo (a limit stored as unset takes the settings' default) and its stored hash."""
    f = {_text(k): _text(v) for k, v in fields.items()}
    spd = _limit(f.get("samples_per_day")) if f.get("samples_per_day") else default_samples_per_day
    maj = _limit(f.get("max_active_jobs")) if f.get("max_active_jobs") else default_max_active_jobs
    info = KeyInfo(id=f["id"], name=f["name"], admin=f.get("admin") == "1", samples_per_day=spd, max_active_jobs=maj,
                   created=_iso(f.get("created")) or "", last_used=_iso(f.get("last_used")),
                   contributor=f.get("contributor") == "1")
    return info, f.get("hash", "")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise BadKeyRequest(f"key name {name[:80]!r} is not valid",
                            hint="use 1 to 64 letters, digits, spaces or . _ @ + - (not starting with a space)")
    return name


def _check_limit(what: str, value: int | None) -> int | None:
    if value is not None and (type(value) is not int or value < 1):
        raise BadKeyRequest(f"{what} must be a whole number of at least 1, or omitted for the default")
    return value


def create(redis: Redis, name: str, samples_per_day: int | None = None, max_active_jobs: int | None = None,
           admin: bool = False, contributor: bool = False) -> tuple[str, KeyInfo]:
    """A new key: returns it (the only time it exists outside the caller's hands) and its stored record."""
    check_name(name)
    _check_limit("samples_per_day", samples_per_day)
    _check_limit("max_active_jobs", max_active_jobs)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = secrets.token_hex(8)
    key_digest = digest(key)
    now = f"{time.time():.3f}"
    fields = {"id": key_id, "name": name, "hash": key_digest, "admin": "1" if admin else "0",
              "contributor": "1" if contributor else "0",
              "samples_per_day": samples_per_day or "", "max_active_jobs": max_active_jobs or "", "created": now}
    with redis.pipeline() as pipe:  # MULTI: the record and its index entry together
        pipe.hset(record_key(key_digest), mapping=fields)
        pipe.hset(INDEX, key_id, key_digest)
        pipe.execute()
    info, _ = parse_record(fields)
    return key, info


def list_keys(redis: Redis) -> list[KeyInfo]:
    """Every key's record, oldest first (stored limits as stored: None is the settings' default)."""
    digests = redis.hgetall(INDEX)
    with redis.pipeline(transaction=False) as pipe:
        for key_digest in digests.values():
            pipe.hgetall(record_key(_text(key_digest)))
        records = pipe.execute()
    infos = [parse_record(record)[0] for record in records if record]
    return sorted(infos, key=lambda info: (info.created, info.id))


def revoke(redis: Redis, key_id: str) -> KeyInfo:
    """Removes the key: the next request presenting it gets 401."""
    key_digest = redis.hget(INDEX, key_id) if _KEY_ID.fullmatch(key_id) else None
    if key_digest is None:
        raise NotFound(f"no key with id {key_id[:80]!r}", hint="`deepsynthbody keys list` (or GET /admin/keys) shows the ids")
    key_digest = _text(key_digest)
    with redis.pipeline() as pipe:
        pipe.hgetall(record_key(key_digest))
        pipe.delete(record_key(key_digest))
        pipe.hdel(INDEX, key_id)
        record, _, _ = pipe.execute()
    return parse_record(record)[0] if record else KeyInfo(key_id, "?", False, None, None, "", None)


# KEYS[1]: the presented key's record; KEYS[2]: its request count this second. ARGV: now, the rate limit (0: none).
# Returns {} for no such key, else {over the rate limit (0/1), the record's fields...}.
AUTHENTICATE = """
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then return {} end
redis.call('HSET', KEYS[1], 'last_used', ARGV[1])
local over = 0
local limit = tonumber(ARGV[2])
if limit > 0 then
  local n = redis.call('INCR', KEYS[2])
  if n == 1 then redis.call('EXPIRE', KEYS[2], 2) end
  if n > limit then over = 1 end
end
table.insert(rec, 1, over)
return rec
"""


def authenticate_args(key: str, rate_limit: int | None, now: float) -> tuple[list[str], list[str], str]:
    """The script's keys and arguments for a presented key, and the key's digest."""
    key_digest = digest(key)
    return ([record_key(key_digest), f"{RATE_PREFIX}{key_digest}:{int(now)}"], [f"{now:.3f}", str(rate_limit or 0)],
            key_digest)


def caller_from_reply(reply: list[Any], key_digest: str, default_samples_per_day: int | None,
                      default_max_active_jobs: int | None) -> tuple[Caller | None, bool]:
    """(the caller, whether it is over its rate limit) from AUTHENTICATE's reply; (None, False) for no such key."""
    if not reply:
        return None, False
    over, flat = reply[0], reply[1:]
    info, stored = parse_record(dict(zip(flat[::2], flat[1::2], strict=True)), default_samples_per_day,
                                default_max_active_jobs)
    if not hmac.compare_digest(stored, key_digest):
        return None, False
    return (Caller(info.id, info.name, info.admin, info.samples_per_day, info.max_active_jobs, info.contributor),
            bool(int(over)))


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_auth(host: str) -> str:
    """DSB_AUTH for a process listening on `host`: as set, else `off` on a loopback address and `required` on any
    other. Set in the environment, so the API process (and its children) read the same; a non-loopback address
    with authentication off is logged as a warning."""
    import logging
    import os

    setting = os.environ.get("DSB_AUTH", "").strip().lower()
    if setting not in ("required", "off"):
        setting = "off" if is_loopback(host) else "required"
        os.environ["DSB_AUTH"] = setting
    elif setting == "off" and not is_loopback(host):
        logging.getLogger("deepsynthbody").warning(
            "DSB_AUTH=off while listening on %s, a non-loopback address: anyone who reaches it can read, cancel and "
            "submit every job; unset DSB_AUTH to require API keys (`deepsynthbody keys create`)", host)
    return setting


# ---- the `deepsynthbody keys` command ----

def _connect(args: Any) -> Redis:  # noqa: ANN401 - argparse.Namespace
    import os
    from pathlib import Path

    from deepsynthbody.cli import CommandError

    data_dir = getattr(args, "data_dir", None)
    if data_dir:
        from deepsynthbody.embedded_redis import url_for_data_dir

        url = url_for_data_dir(Path(data_dir).resolve())
        if url is None:
            raise CommandError(f"no `deepsynthbody serve` with a private Redis runs on {data_dir}: start it there, "
                               "or set DSB_REDIS_URL to the Redis the API uses (and drop --data-dir)")
    else:
        url = os.environ.get("DSB_REDIS_URL") or os.environ.get("REDIS_URL")
        if not url:
            raise CommandError("set DSB_REDIS_URL to the Redis the API uses, or pass --data-dir of a running "
                               "`deepsynthbody serve`")
    from redis import Redis

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
