"""`deepsynthbody keys create|list|revoke` against the Redis an API uses: DSB_REDIS_URL, or `--data-dir` of a running
`serve` (its private Redis, with its password)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from redis import Redis

from deepsynthbody.core import keys
from deepsynthbody.core.settings import Settings
from tests.conftest import ROOT, answers, wait_for
from tests.helpers.auth_api import start_api, stop
from tests.test_serve import Serve

CLEAN = {k: v for k, v in os.environ.items() if not k.startswith("DSB_") and k != "REDIS_URL"}


def keys_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepsynthbody", "keys", *args], cwd=ROOT, env=CLEAN | env,
                          capture_output=True, text=True, timeout=60)


def test_create_list_revoke_against_the_apis_redis(settings: Settings, ecg_model_dir: Path) -> None:
    url = str(settings.redis_url)
    made = keys_command("create", "--name", "lab 7", "--samples-per-day", "500", "--max-active-jobs", "3",
                        DSB_REDIS_URL=url)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("dsb_") and len(key) > 40 and " " not in key
    admin = keys_command("create", "--name", "ops", "--admin", DSB_REDIS_URL=url).stdout.strip().splitlines()[-1]

    listed = keys_command("list", DSB_REDIS_URL=url)
    assert listed.returncode == 0 and key not in listed.stdout and admin not in listed.stdout
    row = next(line.split("\t") for line in listed.stdout.splitlines() if "\tlab 7\t" in line)
    key_id = row[0]
    assert row[1:5] == ["lab 7", "no", "500", "3"] and row[6] == "never"
    with Redis.from_url(url) as redis:  # only its hash is stored
        stored = redis.hgetall(keys.record_key(keys.digest(key)))
        assert stored[b"name"] == b"lab 7" and key.encode() not in b"".join(stored.values())

    process, api = start_api(settings, DSB_AUTH="required")
    try:
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{api}/models", headers=auth).status_code == 200
        row = next(line.split("\t") for line in keys_command("list", DSB_REDIS_URL=url).stdout.splitlines()
                   if line.startswith(key_id))
        assert row[6] != "never"  # last used
        gone = keys_command("revoke", key_id, DSB_REDIS_URL=url)
        assert gone.returncode == 0 and "lab 7" in gone.stdout
        assert httpx.get(f"{api}/models", headers=auth).status_code == 401
        assert httpx.get(f"{api}/admin/keys", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    finally:
        stop(process)
    assert key_id not in keys_command("list", DSB_REDIS_URL=url).stdout


def test_mistakes_are_one_line_saying_what_to_do(settings: Settings, tmp_path: Path) -> None:
    url = str(settings.redis_url)
    for args, env, expected in [
        (("list",), {}, "set DSB_REDIS_URL"),
        (("revoke", "0123456789abcdef"), {"DSB_REDIS_URL": url}, "no key with id '0123456789abcdef'"),
        (("create", "--name", "\tbad"), {"DSB_REDIS_URL": url}, "is not valid"),
        (("list", "--data-dir", str(tmp_path)), {}, f"no `deepsynthbody serve` with a private Redis runs on {tmp_path}"),
        (("list",), {"DSB_REDIS_URL": "redis://:secret@127.0.0.1:1/0"}, "cannot reach the Redis at redis://:***@127.0.0.1:1/0"),
    ]:
        result = keys_command(*args, **env)
        assert result.returncode == 1, (args, result.stdout)
        assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, (args, result.stderr)
        assert "secret" not in result.stderr
    assert keys_command("create", "--name", "x", "--max-active-jobs", "0", DSB_REDIS_URL=url).returncode == 2


def test_keys_of_a_running_serve_by_its_data_dir(settings: Settings, ecg_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(settings.installed_models_dir, target_is_directory=True)
    serve = Serve(data, workers=0, DSB_AUTH="required").start()
    try:
        wait_for(lambda: serve.process.poll() is not None or answers(f"{serve.url}/healthz"), 60, "serve to answer")
        assert serve.process.poll() is None, serve.err()
        made = keys_command("create", "--name", "desk", "--data-dir", str(data))
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip().splitlines()[-1]
        assert httpx.get(f"{serve.url}/models").status_code == 401
        assert httpx.get(f"{serve.url}/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        listed = keys_command("list", "--data-dir", str(data))
        assert "\tdesk\t" in listed.stdout and key not in listed.stdout
    finally:
        serve.stop()
