"""A process that edits a mask through the journal and then waits to be killed (for test_journal).

Usage: python journal_child.py JOURNAL_PATH. Prints READY once its edits are on disk, then sleeps;
the test kills it with SIGKILL mid-stroke and recovers the mask in another process.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from brainseg_gui.core.edit_session import EditSession, Limits
from brainseg_gui.core.journal import Journal
from brainseg_gui.core.study import Grid

SHAPE = (48, 40, 24)


def start_mask() -> tuple[np.ndarray, Grid]:
    affine = np.array([[-1.2, 0, 0, 30], [0, -1.2, 0, 20], [0, 0, 2.5, -10], [0, 0, 0, 1.0]])
    labels = np.zeros(SHAPE, np.uint8)
    labels[10:30, 12:28, 6:16] = 2
    labels[15:25, 16:24, 8:14] = 1
    labels[18:22, 18:22, 10:12] = 4
    return labels, Grid(SHAPE, affine)


def edit(session: EditSession, journal: Journal | None = None) -> None:
    """The edits: strokes, an undo, a redo, another undo, and a long stroke left open."""
    intensity = np.indices(SHAPE).sum(axis=0).astype(np.float32)
    with session.stroke("brush"):
        session.paint_disc(2, (12, 14, 8), 3.0, 4)
        session.paint_disc(2, (12, 14, 8), 3.0, 4, to=(30, 20, 8))
    session.paint_sphere((35, 30, 12), 4.0, 1)
    session.erase_disc(2, (20, 20, 10), 2.5, only=4)
    session.fill(2, (2, 2, 3), 2, limits=Limits(intensity=intensity, low=0, high=12))
    session.undo()
    session.redo()
    session.paint_disc(1, (5, 5, 5), 6.0, 2)
    session.undo()
    session.interpolate(2, 8, 13, 1)
    session.begin_stroke("brush")
    session.paint_disc(2, (40, 10, 20), 4.0, 4)
    if journal is not None:
        journal.checkpoint(session)  # the periodic write while the mouse is still held
    session.paint_disc(2, (40, 10, 20), 4.0, 1, to=(44, 30, 20))
    if journal is not None:
        journal.checkpoint(session)


def main(path: Path) -> None:
    labels, grid = start_mask()
    ai = labels.copy()
    ai[0:4, 0:4, 0:4] = 4
    session = EditSession(labels, grid, ai=ai)
    journal = Journal.create(path, session, {"case_id": "child", "model_version": "test-1"})
    session.recorder = journal
    edit(session, journal)
    np.save(path.with_suffix(".expected.npy"), session.labels)
    print("READY", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
