"""How every process of the service logs: plain lines, or one JSON object per line (`DSB_LOG_FORMAT=json`).

`configure` sets up the command's own process (the CLI, a worker); `uvicorn_config` is the same configuration
as a `logging.config.dictConfig` dictionary for uvicorn, which applies it in each API process it starts (with
`--processes N` those are new interpreters, which inherit nothing from the command). In text mode uvicorn keeps
its own line formats; in JSON mode its lines are JSON too, the access log with `client`, `method`, `path` and
`status` as fields.

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message`, every field the record was given (a job's
state change carries `job_id`, `owner` and `state`: `deepsynthbody.core.job_events`) and `exception` when there is one.
"""

from __future__ import annotations

import logging
import logging.config
import re
from datetime import UTC, datetime
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
FORMATS = ("text", "json")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key[:1] != "_":
                document[key] = value
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _, status = record.args
            document |= {"client": client, "method": method, "path": path, "status": status}
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(document, default=str).decode()


def log_format() -> str:
    """DSB_LOG_FORMAT as the settings read it; `text` when the settings cannot be read (the command then says why)."""
    from pydantic import ValidationError

    from deepsynthbody.core.settings import Settings

    try:
        return Settings().log_format
    except ValidationError:
        return "text"


_LINK_VALUE = re.compile(r"([?&]link=)[^&\s]*")


class HideDownloadLinks(logging.Filter):
    """An access log line keeps a download link's path, not its signature, which opens the archive without a key
    until it expires (app.auth)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > 2 and isinstance(args[2], str) and "link=" in args[2]:
            record.args = (*args[:2], _LINK_VALUE.sub(r"\1REDACTED", args[2]), *args[3:])
        return True


def config(level: str | int = "INFO", fmt: str | None = None) -> dict[str, Any]:
    """The whole configuration: the root logger, and uvicorn's loggers (used by the API processes)."""
    fmt = fmt or log_format()
    level = logging.getLevelName(level) if isinstance(level, int) else level
    if fmt == "json":
        formatters: dict[str, Any] = {name: {"()": f"{__name__}.JsonFormatter"} for name in ("plain", "default", "access")}
    else:
        formatters = {
            "plain": {"format": TEXT_FORMAT},
            "default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s",
                        "use_colors": None},
            "access": {"()": "uvicorn.logging.AccessFormatter",
                       "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'},
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": {
            "plain": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
            "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout",
                       "filters": ["hide_download_links"]},
        },
        "filters": {"hide_download_links": {"()": f"{__name__}.HideDownloadLinks"}},
        "root": {"handlers": ["plain"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            # the exporter's torch (models build) would log its INFO lines through its own handler, in its own
            # format (its FakeTensor cache statistics at exit): only its warnings are of use to a user
            "torch": {"level": "WARNING"},
        },
    }


def configure(level: str | int = "INFO", *, force: bool = True) -> None:
    """This process's logging; with force=False only when nothing configured it yet (a worker run on its own)."""
    if not force and logging.getLogger().handlers:
        return
    logging.config.dictConfig(config(level))


def uvicorn_config(level: str | int | None = None) -> dict[str, Any]:
    """For uvicorn's `log_config`: the level the command was given (the root logger's), the format of the settings."""
    if level is None:
        level = logging.getLogger().getEffectiveLevel()
    return config(level)
