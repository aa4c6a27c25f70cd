"""Structured logging: one JSON object per line, UTC timestamps, module name on every line, secrets
masked."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from mfgvision.secrets import mask_secrets, mask_text

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as a single JSON line; ``extra={...}`` fields become top-level keys.

    Secrets are masked in every field, the message and the traceback included."""

    def __init__(self, module: str) -> None:
        super().__init__()
        self.module = module

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "module": self.module,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(mask_secrets(line), default=lambda value: mask_text(str(value)))


def configure_logging(module: str, level: str = "INFO") -> None:
    """Send every log line of this process to stderr as JSON, tagged with ``module``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(module))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic says "Context impl ..." on every schema check; "database schema ready" (its revisions)
    # is the one line per migration run.
    # asyncua says "activate session", "create subscription" ... for every client request.
    for noisy in ("alembic", "asyncua", "azure", "paho", "urllib3", "werkzeug", "waitress"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # "Task queue depth is N" is a warning for every request that waits for a thread, which a page
    # loading its thumbnails causes by design; real trouble from the server still shows as errors.
    logging.getLogger("waitress.queue").setLevel(max(logging.ERROR, root.level))
