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

from deepsynthbody.core.errors import NotFound, ServiceError

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


class RevokedKey(ServiceError):
    status_code = 401


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
    key_digest = key_digest_of(redis, key_id)
    if key_digest is None:
        raise NotFound(f"no key with id {key_id[:80]!r}", hint="`deepsynthbody keys list` (or GET /admin/keys) shows the ids")
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
    return digest_args(digest(key), rate_limit, now)


def digest_args(key_digest: str, rate_limit: int | None, now: float) -> tuple[list[str], list[str], str]:
    """The script's keys and arguments for a key known by its digest (a download link's), and the digest."""
    return ([record_key(key_digest), f"{RATE_PREFIX}{key_digest}:{int(now)}"], [f"{now:.3f}", str(rate_limit or 0)],
            key_digest)


def key_digest_of(redis: Redis, key_id: str) -> str | None:
    """The stored digest of the key with this id; None for no such key (revoked, or never made)."""
    value = redis.hget(INDEX, key_id) if _KEY_ID.fullmatch(key_id) else None
    return _text(value) if value is not None else None


# A download link (`?link=KEY_ID.EXPIRES.SIGNATURE` on /jobs/{id}/result) opens one job's archive without the
# Authorization header, for a browser's own download manager: the key that asked for it, until EXPIRES (Unix
# seconds), signed by HMAC-SHA256 under the key's stored digest, which only the key's holder and the service know.
# Nothing is stored for it; revoking the key ends its links.
LINK_PARAMETER = "link"
_LINK = re.compile(r"([0-9a-f]{16})\.([0-9]{1,12})\.([0-9a-f]{64})")


def sign_link(key_digest: str, job_id: str, expires: int) -> str:
    message = f"result:{job_id}:{expires}".encode()
    return hmac.new(bytes.fromhex(key_digest), message, hashlib.sha256).hexdigest()


def download_link(key_id: str, key_digest: str, job_id: str, expires: int) -> str:
    """The `link` query parameter's value for this key, job and expiry."""
    return f"{key_id}.{expires}.{sign_link(key_digest, job_id, expires)}"


def parse_download_link(value: str) -> tuple[str, int, str] | None:
    """(key id, expiry, signature) of a `link` value; None when it is not one."""
    match = _LINK.fullmatch(value)
    return (match[1], int(match[2]), match[3]) if match else None


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
