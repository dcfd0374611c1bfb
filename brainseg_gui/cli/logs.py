"""How `brainseg` reports: one-line errors on stderr, warnings held back until a command succeeds."""

from __future__ import annotations

import logging
import os
import sys


def describe_error(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.strerror}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests capture it)
        pass


def fail(message: str, status: int) -> int:
    print(f"brainseg: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return status


class _CliFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"brainseg: {record.levelname.lower()}: {record.getMessage()}"


class _DeferredHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Holds warnings back until the command succeeds, so a failure prints exactly one line."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.held: list[logging.LogRecord] = []
        self.previous_level = logging.WARNING

    def emit(self, record: logging.LogRecord) -> None:
        self.held.append(record)

    def emit_held(self) -> None:
        shown: set[str] = set()
        for record in self.held:
            text = self.format(record)
            if text not in shown:  # the same warning from two layers is said once
                shown.add(text)
                super().emit(record)
        self.held.clear()


def start_logging(verbose: int, *, live: bool = False) -> logging.Handler:
    """Library logs go to stderr: warnings by default (held until success unless `live`: the viewer
    and training report as they go); everything, live, with -v."""
    handler: logging.Handler
    if live and not verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_CliFormatter())
        handler.setLevel(logging.WARNING)
    elif verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        handler.setLevel(logging.DEBUG)
    else:
        handler = _DeferredHandler()
        handler.setFormatter(_CliFormatter())
        handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    handler.previous_level = root.level  # type: ignore[union-attr]
    root.addHandler(handler)
    if verbose:
        root.setLevel(logging.DEBUG)
    elif root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    # Third-party deprecation chatter is for developers: shown with -v only.
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose else logging.ERROR)
    return handler


def stop_logging(handler: logging.Handler, *, succeeded: bool) -> None:
    if isinstance(handler, _DeferredHandler) and succeeded:
        handler.emit_held()
    root = logging.getLogger()
    root.removeHandler(handler)
    root.setLevel(getattr(handler, "previous_level", logging.WARNING))
    logging.captureWarnings(False)
