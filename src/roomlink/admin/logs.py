"""Logging that never prints a secret from the config, as text or as JSON lines."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

FORMATS = ("text", "json")
_secrets: set[str] = set()  # what setup_logging's handler redacts
_connectors: set[str] = set()  # the configured connector names
_replica: list[str] = []  # with replicas: this one's id, on every JSON line
# the record attributes (set with ``extra=``) that a JSON line carries as its own fields
FIELDS = ("connector", "room", "message_id", "party", "pipe", "file", "line", "key")


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # longest first, so a secret that contains another is hidden whole
        self.secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for secret in self.secrets:
            text = text.replace(secret, "***")
            if record.exc_text:
                record.exc_text = record.exc_text.replace(secret, "***")
        record.msg, record.args = text, None
        return True


def set_connector_names(names: Iterable[str]) -> None:
    """The configured connectors: their loggers (``roomlink.connector.NAME``) name them."""
    _connectors.clear()
    _connectors.update(names)


def connector_of(record: logging.LogRecord) -> str | None:
    """The connector a record is about: its ``connector`` field, or the connector whose
    own logger wrote it (a plugin module's logger, such as ``roomlink.connector.api``,
    names a type, not a connector, unless a connector has that name)."""
    name = getattr(record, "connector", None)
    if name is not None:
        return str(name)
    prefix = "roomlink.connector."
    if record.name.startswith(prefix) and record.name[len(prefix) :] in _connectors:
        return record.name[len(prefix) :]
    return None


def set_replica(replica_id: str) -> None:
    """Every JSON line names this replica from now on (logs of several gathered)."""
    _replica[:] = [replica_id]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the fields that matter.

    A connector's own logger (``roomlink.connector.NAME``) names its connector; a
    traceback travels inside the object, so that every line parses alone.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if _replica:
            out["replica"] = _replica[0]
        name = connector_of(record)
        if name is not None:
            out["connector"] = name
        for field in FIELDS:
            value = getattr(record, field, None)
            if value is not None and field != "connector":
                out[field] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def log_format(cli_value: str | None = None) -> str:
    """``--log-format``, else ``ROOMLINK_LOG_FORMAT``, else text."""
    value = (cli_value or os.environ.get("ROOMLINK_LOG_FORMAT") or "text").strip().lower()
    return value if value in FORMATS else "text"


def setup_logging(
    level: str = "INFO", secrets: Iterable[str] = (), fmt: str = "text"
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    _secrets.clear()
    _secrets.update(secrets)
    handler.addFilter(RedactSecrets(_secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.captureWarnings(True)  # a library's warning is a log line too (JSON included)
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "sqlalchemy", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_secrets(secrets: Iterable[str]) -> None:
    """Redact these too from now on (a reloaded config may bring new ones)."""
    new = set(secrets) - _secrets
    if not new:
        return
    _secrets.update(new)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
            handler.removeFilter(old)
            handler.addFilter(RedactSecrets(_secrets))
