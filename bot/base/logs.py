"""The process's one log setup: every record becomes exactly one line, redacted and unforgeable.

Log lines leave the bot like Slack messages do, so they pass the same redaction point
(`bot.base.redact.redact`), message and traceback alike. Raw control characters, C1 controls, Unicode
line separators and bidi overrides are escaped, so text an outsider sent (a command, a header)
can never start a new log line or disguise one. JSON (one object per line) is the default for
`serve`, ready for a log pipeline; `text` is for people at a terminal.

Call `configure()` once per process (`serve`, its worker, the console with `path=` so its logs
stay out of the chat it draws on the terminal).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from bot.base.redact import redact

FORMATS = ("json", "text")
FORMAT_ENV = "LOG_FORMAT"
LEVEL_ENV = "LOG_LEVEL"

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# attributes every LogRecord has; anything else on a record came from `extra=` and is logged too
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def escape(text: str) -> str:
    """`text` on one line: each unsafe character as a visible escape (\\n, \\x1b, \\u2028)."""
    return _UNSAFE.sub(_escape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    ch = match.group(0)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch)
    if named:
        return named
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


class OneLineFormatter(logging.Formatter):
    """A record as one line: JSON (`time`, `level`, `logger`, `message`, `exc_info`, extras) or
    text; every string redacted first, then escaped (redaction patterns stop at line ends)."""

    def __init__(self, fmt: str = "json"):
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        exc = None
        if record.exc_info:
            exc = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            exc = redact(record.exc_text)
        if record.stack_info:
            exc = (exc + "\n" if exc else "") + redact(self.formatStack(record.stack_info))
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        if self.json:
            doc: dict[str, Any] = {
                "time": when.replace("+00:00", "Z"),
                "level": record.levelname,
                "logger": record.name,
                "message": message,
            }
            if record.processName not in (None, "MainProcess"):
                doc["process"] = record.processName
            for key, value in extras.items():
                doc.setdefault(key, redact(value) if isinstance(value, str) else _plain(value))
            if exc:
                doc["exc_info"] = exc
            # json.dumps escapes C0 controls; the rest (C1, separators, bidi) as JSON \u escapes
            return _UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", json.dumps(doc, ensure_ascii=False))
        line = f"{when} {record.levelname} {record.name}: {message}"
        if extras:
            line += " " + " ".join(f"{k}={_plain(v)}" for k, v in extras.items())
        if exc:
            line += " | " + exc
        return escape(line)


def _plain(value: object) -> str | int | float | None:
    """JSON-able scalars stay; anything else is logged as its (redacted) text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def configure(
    fmt: str | None = None,
    *,
    level: str | int | None = None,
    stream: TextIO | None = None,
    path: Path | None = None,
) -> logging.Handler:
    """Route every logger of this process to one handler: `path` (a file, appended) or `stream`
    (default stderr). `fmt`/`level` default to $LOG_FORMAT (else json) and $LOG_LEVEL (else INFO);
    both are exported so a spawned worker process logs the same way. Replaces earlier handlers."""
    fmt = (fmt or os.environ.get(FORMAT_ENV) or "json").strip().lower()
    level = level or os.environ.get(LEVEL_ENV, "INFO").strip().upper() or "INFO"
    formatter = OneLineFormatter(fmt)
    if isinstance(level, str) and not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"unknown log level {level!r}")
    os.environ[FORMAT_ENV] = fmt
    os.environ[LEVEL_ENV] = logging.getLevelName(level) if isinstance(level, int) else level
    handler: logging.Handler
    if path is not None:
        handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_exception
    return handler


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("payflow").critical("uncaught exception", exc_info=(kind, value, tb))


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    logging.getLogger("payflow").error("uncaught exception in thread %s", name, exc_info=exc_info)
