"""Logging configuration, applied by the CLI entry point only (never at import)."""

import json
import logging
import sys
import time

# Libraries that log every graph rewrite at INFO.
NOISY_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "httpx", "urllib3")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class RepeatLimiter:
    """Log a repeated failure at most once per `interval_seconds`, with the count of skipped ones.

    A Redis outage at 500 requests per second would otherwise write 500 warnings per second.
    """

    def __init__(self, logger: logging.Logger, interval_seconds: float = 10.0) -> None:
        self.logger = logger
        self.interval_seconds = interval_seconds
        self.next_allowed = 0.0  # time.monotonic() seconds
        self.skipped = 0

    def log(self, level: int, message: str, *args, exc_info: BaseException | None = None) -> None:
        now = time.monotonic()
        if now < self.next_allowed:
            self.skipped += 1
            return
        if self.skipped:
            message += " (%d similar messages skipped in the last %.0fs)"
            args = (*args, self.skipped, self.interval_seconds)
        self.logger.log(level, message, *args, exc_info=exc_info)
        self.next_allowed = now + self.interval_seconds
        self.skipped = 0
