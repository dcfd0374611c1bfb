"""How `brainseg` reports: one-line errors on stderr, warnings held back until a command succeeds."""

from __future__ import annotations

import errno
import logging
import os
import re
import sys

#: What torch and numpy say when an allocation fails (torch raises RuntimeError, not MemoryError).
_OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "not enough memory",
                  "storage size calculation overflowed", "storage size overflowed")
_UNITS = {"B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40, "PiB": 50, "EiB": 60}


def describe_error(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.strerror}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def named_failure(error: BaseException, command: str) -> str | None:
    """The one line for a failure that is the machine's, not a bug: memory, permissions, a full disk.

    None when `error` is none of these (an OSError not named here is described by `describe_error`).
    """
    if is_out_of_memory(error):
        needed = _needed_bytes(error)
        size = f": the input needs {needed / 2**30:,.1f} GiB" if needed else ""
        return (f"not enough memory to {command}{size}; check the input's size and voxel spacing "
                "(or free memory and try again)")
    if isinstance(error, PermissionError) or (isinstance(error, OSError) and error.errno in (errno.EACCES,
                                                                                             errno.EPERM)):
        where = error.filename or describe_error(error)
        return f"permission denied: {where}"
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "the disk is full" if error.errno == errno.ENOSPC else "the disk quota is exceeded"
        return f"{what}{f' (writing {error.filename})' if error.filename else ''}: free some space and try again"
    return None


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error) for text in _OUT_OF_MEMORY)


def _needed_bytes(error: BaseException) -> int | None:
    """The size of the allocation that failed, when numpy or torch said it."""
    total = getattr(error, "_total_size", None)  # numpy's _ArrayMemoryError
    if isinstance(total, int):
        return total
    text = str(error)
    found = re.search(r"allocate (\d+) bytes", text)
    if found:
        return int(found.group(1))
    found = re.search(r"allocate ([\d.]+) ?(B|KiB|MiB|GiB|TiB|PiB|EiB)", text)
    if found:
        return int(float(found.group(1)) * 2 ** _UNITS[found.group(2)])
    return None


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
