"""Per-key limits counted in Redis, shared by every API process and host: active jobs and samples per UTC day.

`dsb:active:<key id>` is the set of the key's requests (their job ids) that may be queued or running, scored by
when each was counted; a request joins it at submit, just before its jobs are stored. When the key is at its limit, the check first reads RQ's status of each member and forgets
the requests that ended (finished, failed, canceled, stopped: whoever ended them, a worker, the API's cancel or
RQ's clean-up of a dead worker's job) or expired (no job, though counted more than PENDING_SECONDS ago: not one
being stored right now), so a slot comes back however its job ended, with no callback
to run in the workers (which run only the service's own tasks) and nothing to miss. The API's cancel also
gives the slot back at once. `dsb:samples:<key
id>:<YYYYMMDD>` counts the samples the key asked for that UTC day. Check and count are one Lua script: atomic.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis import Redis

ACTIVE_PREFIX = "dsb:active:"
SAMPLES_PREFIX = "dsb:samples:"
RQ_JOB_PREFIX = "rq:job:"
DAY_TTL = 2 * 24 * 3600
PENDING_SECONDS = 60  # a counted request whose job is not stored after this long never will be (its API died)
ACTIVE_RETRY_SECONDS = 5  # Retry-After when a key has too many active jobs: about a poll interval

# KEYS: the active set, the day's sample count. ARGV: job id, max active (0: none), samples per day (0: none),
# samples asked, RQ's job key prefix, now (seconds), PENDING_SECONDS. Returns {0} (reserved), {1, active} or
# {2, used today}.
RESERVE = """
local max_active = tonumber(ARGV[2])
local per_day = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local ended = {finished = true, failed = true, stopped = true, canceled = true}
local now = tonumber(ARGV[6])
if max_active > 0 and redis.call('ZCARD', KEYS[1]) >= max_active then
  local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local id = members[i]
    local status = redis.call('HGET', ARGV[5] .. id, 'status')
    local over
    if status then over = ended[status] else over = tonumber(members[i + 1]) < now - tonumber(ARGV[7]) end
    if status == 'deferred' then
      local c = 0
      while true do
        local chunk = redis.call('HGET', ARGV[5] .. string.format('%s-chunk-%05d', id, c), 'status')
        if not chunk then break end
        if chunk == 'failed' or chunk == 'stopped' or chunk == 'canceled' then over = true break end
        c = c + 1
      end
    end
    if over then redis.call('ZREM', KEYS[1], id) end
  end
  local active = redis.call('ZCARD', KEYS[1])
  if active >= max_active then return {1, active} end
end
if per_day > 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used + n > per_day then return {2, used} end
  redis.call('INCRBY', KEYS[2], n)
  redis.call('EXPIRE', KEYS[2], 172800)
end
if max_active > 0 then redis.call('ZADD', KEYS[1], now, ARGV[1]) end
return {0}
"""


def active_key(key_id: str) -> str:
    return ACTIVE_PREFIX + key_id


def day_key(key_id: str, now: datetime) -> str:
    return f"{SAMPLES_PREFIX}{key_id}:{now:%Y%m%d}"


def seconds_to_midnight(now: datetime) -> int:
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds()) + 1)


def release(redis: Redis, key_id: str, job_id: str) -> None:
    """The request's active slot back (no-op when it has none)."""
    redis.zrem(active_key(key_id), job_id)


class OverLimit(Exception):
    def __init__(self, limit: str, value: int, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.limit, self.value, self.message, self.retry_after = limit, value, message, retry_after


def reserve(redis: Redis, key_id: str, max_active: int | None, per_day: int | None, job_id: str, samples: int,
            now: datetime | None = None) -> None:
    """Counts the request against the key's limits, or raises OverLimit (nothing counted then)."""
    now = now or utc_now()
    reply = redis.eval(RESERVE, 2, active_key(key_id), day_key(key_id, now), job_id, max_active or 0, per_day or 0,
                       samples, RQ_JOB_PREFIX, f"{now.timestamp():.3f}", PENDING_SECONDS)
    if reply[0] == 1:
        raise OverLimit("max_active_jobs", max_active or 0,
                        f"limit reached: at most {max_active} active (queued or running) jobs per key; wait for one "
                        "to finish or cancel one (DELETE /jobs/{id})", ACTIVE_RETRY_SECONDS)
    if reply[0] == 2:
        used = int(reply[1])
        raise OverLimit("samples_per_day", per_day or 0,
                        f"limit reached: at most {per_day} samples per UTC day per key; {used} used today, this request "
                        f"asks for {samples}; ask for at most {max(0, (per_day or 0) - used)} or wait for the next UTC day",
                        seconds_to_midnight(now))


def unreserve(redis: Redis, key_id: str, per_day: int | None, job_id: str, samples: int) -> None:
    """A request that was counted but not enqueued: its slot and samples back."""
    with redis.pipeline() as pipe:
        pipe.zrem(active_key(key_id), job_id)
        if per_day:
            pipe.decrby(day_key(key_id, utc_now()), samples)
        pipe.execute()


def utc_now() -> datetime:
    return datetime.now(UTC)


# ---- the results' disk budget (DSB_RESULTS_MAX_BYTES) ----
# `dsb:budget:jobs` maps each job holding a reservation to "<bytes>:<when reserved>", `dsb:budget:used` is their
# sum. A reservation that does not fit first gives back those of jobs that were canceled (their files are removed)
# or expired (RQ forgot them after DSB_RESULT_TTL; the workers remove their files), then tries again.
BUDGET_JOBS = "dsb:budget:jobs"
BUDGET_USED = "dsb:budget:used"

# KEYS: jobs, used. ARGV: job id, bytes, budget, RQ's job key prefix, now, PENDING_SECONDS.
# Returns {0, used after} or {1, used} (refused).
RESERVE_BYTES = """
local need = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local now = tonumber(ARGV[5])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used + need > budget then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local id, value = all[i], all[i + 1]
    local sep = string.find(value, ':', 1, true)
    local bytes, since = tonumber(string.sub(value, 1, sep - 1)), tonumber(string.sub(value, sep + 1))
    local status = redis.call('HGET', ARGV[4] .. id, 'status')
    local gone
    if status then gone = (status == 'canceled' or status == 'stopped') else gone = since < now - tonumber(ARGV[6]) end
    if gone then
      redis.call('HDEL', KEYS[1], id)
      used = used - bytes
    end
  end
  if used < 0 then used = 0 end
  redis.call('SET', KEYS[2], used)
  if used + need > budget then return {1, used} end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[5])
return {0, redis.call('INCRBY', KEYS[2], need)}
"""

# KEYS: jobs, used. ARGV: job id. Gives the job's reservation back (once).
RELEASE_BYTES = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
local bytes = tonumber(string.sub(value, 1, string.find(value, ':', 1, true) - 1))
redis.call('HDEL', KEYS[1], ARGV[1])
local left = redis.call('DECRBY', KEYS[2], bytes)
if left < 0 then redis.call('SET', KEYS[2], 0) end
return bytes
"""


class OverBudget(Exception):
    def __init__(self, needed: int, reserved: int, budget: int) -> None:
        super().__init__(f"needs {needed} bytes")
        self.needed, self.reserved, self.budget = needed, reserved, budget

    @property
    def message(self) -> str:
        return (f"the results' disk budget would be exceeded: this job's files take up to {self.needed:,} bytes, "
                f"{self.reserved:,} of the {self.budget:,} bytes of DSB_RESULTS_MAX_BYTES are taken by other jobs' "
                "results; ask for fewer samples, delete finished jobs you no longer need (DELETE /jobs/{id}), "
                "or wait for results to expire")


def reserve_bytes(redis: Redis, job_id: str, needed: int, budget: int, now: float | None = None) -> None:
    now = utc_now().timestamp() if now is None else now
    refused, used = redis.eval(RESERVE_BYTES, 2, BUDGET_JOBS, BUDGET_USED, job_id, needed, budget, RQ_JOB_PREFIX,
                               f"{now:.3f}", PENDING_SECONDS)
    if refused:
        raise OverBudget(needed, int(used), budget)


def release_bytes(redis: Redis, job_id: str) -> int:
    """The job's reservation back; returns how many bytes (0: it held none)."""
    return int(redis.eval(RELEASE_BYTES, 2, BUDGET_JOBS, BUDGET_USED, job_id))
