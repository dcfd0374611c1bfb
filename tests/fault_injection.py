"""Fault injection for writers: fail each system call of core/atomic in turn, check nothing changed.

Every file BrainSeg writes goes through core/atomic, so failing its calls one at a time (the
writer, fsync, the backup of a replaced file, the rename) reaches every point where a real disk can
fail a writer. After each failure the folder must be exactly as before: old files intact, no new
file, no temporary, no folder left.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from brainseg_gui.core import atomic
from brainseg_gui.core.errors import BrainSegError

#: The calls of core/atomic a failure is injected into.
FAULT_POINTS = ("_write_content", "_fsync_file", "_keep_copy", "_replace")


def listing(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder` (hidden ones too) with its bytes; folders as None."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


class FailOnCall:
    """Wraps a function so that its `fail_at`-th call raises ENOSPC."""

    def __init__(self, function: Callable[..., Any], fail_at: int) -> None:
        self.function, self.fail_at, self.calls = function, fail_at, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.function(*args, **kwargs)


def assert_all_or_nothing(write: Callable[[], object], folder: Path, point: str,
                          monkeypatch: pytest.MonkeyPatch, *, limit: int = 40) -> int:
    """Run `write` with `point` failing at its 1st, 2nd, ... call until it succeeds.

    Each failed run must raise a BrainSegError saying the disk is full and leave `folder` as it
    was. Returns how many failures were tried (0 when `point` is never reached, e.g. no file is
    replaced so no backup is made).
    """
    before = listing(folder)
    original = getattr(atomic, point)
    for fail_at in range(1, limit):
        monkeypatch.setattr(atomic, point, FailOnCall(original, fail_at))
        try:
            write()
        except BrainSegError as error:
            assert "disk is full" in str(error), f"{point} failing at call {fail_at}: {error}"
            assert listing(folder) == before, f"{point} failing at call {fail_at} changed {folder}"
            continue
        monkeypatch.setattr(atomic, point, original)
        assert not [p for p in folder.rglob(".*")], "a temporary or backup was left behind"
        return fail_at - 1
    pytest.fail(f"{point} never stopped failing")
