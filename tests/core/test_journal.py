"""The edit journal: a process killed with SIGKILL mid-stroke loses nothing; torn tails, foreign
files and other grids are handled; recovery gives back the undo history too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brainseg_gui.core.edit_session import EditSession
from brainseg_gui.core.journal import (
    Journal,
    JournalError,
    describe,
    journal_path,
    read_journal,
    recover,
    state_dir,
    study_key,
)
from brainseg_gui.core.study import Grid, Study
from tests.core.journal_child import edit, start_mask

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("journal_child.py")


def expected_after_edits() -> tuple[np.ndarray, EditSession]:
    labels, grid = start_mask()
    session = EditSession(labels, grid)
    edit(session)
    session.end_stroke()
    return session.labels.copy(), session


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_recovers_the_exact_mask_after_sigkill_mid_stroke(tmp_path: Path) -> None:
    path = tmp_path / "state" / "child.bsjournal"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, str(CHILD), str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        line = child.stdout.readline()
        assert line.strip() == "READY", child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    session, contents = recover(path)
    at_kill = np.load(path.with_suffix(".expected.npy"))
    np.testing.assert_array_equal(session.labels, at_kill)
    expected, reference = expected_after_edits()
    np.testing.assert_array_equal(session.labels, expected)
    assert not contents.torn
    assert contents.meta["case_id"] == "child" and contents.meta["model_version"] == "test-1"
    assert contents.strokes == 7  # the open stroke counts
    assert contents.unsaved
    # the AI mask travels in the journal, and the undo history is back as it was
    assert session.ai[0, 0, 0] == 4 and session.initial[0, 0, 0] == 0
    assert session.undo_depth == reference.undo_depth == 6
    assert session.redo_depth == 0
    while session.can_undo:
        session.undo()
    np.testing.assert_array_equal(session.labels, start_mask()[0])


def test_resuming_closes_the_stroke_the_crash_left_open(tmp_path: Path) -> None:
    labels, grid = start_mask()
    session = EditSession(labels, grid)
    path = tmp_path / "open.bsjournal"
    journal = Journal.create(path, session, {})
    session.recorder = journal
    session.begin_stroke("brush")
    session.paint_disc(2, (10, 10, 5), 2, 4)
    journal.checkpoint(session)
    journal.close()  # the crash: the stroke never ended
    recovered, contents = recover(path)
    assert contents.open_stroke and recovered.undo_depth == 1
    resumed = Journal.resume(contents)
    recovered.recorder = resumed
    recovered.paint_disc(2, (30, 30, 5), 2, 1)
    resumed.close()
    again, contents = recover(path)
    assert not contents.open_stroke and contents.strokes == 2
    assert again.undo_depth == 2  # two strokes, not one merged stroke
    np.testing.assert_array_equal(again.labels, recovered.labels)
    again.undo()
    assert (again.labels == 4).sum() == (recovered.labels == 4).sum()
    assert not (again.labels[25:35, 25:35, 5] == 1).any()


def make_session(tmp_path: Path) -> tuple[EditSession, Journal, Path]:
    labels, grid = start_mask()
    session = EditSession(labels, grid)
    path = tmp_path / "j.bsjournal"
    journal = Journal.create(path, session, {"case_id": "x"})
    session.recorder = journal
    return session, journal, path


def test_a_torn_last_record_is_ignored_and_cut_on_resume(tmp_path: Path) -> None:
    session, journal, path = make_session(tmp_path)
    session.paint_disc(2, (20, 20, 10), 3, 4)
    good = session.labels.copy()
    session.paint_disc(2, (30, 20, 10), 3, 1)
    journal.close()
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # the crash cut the last record's bytes
    recovered, contents = recover(path)
    assert contents.torn
    np.testing.assert_array_equal(recovered.labels, good)
    assert "cut off" in describe(contents)
    resumed = Journal.resume(contents)
    recovered.recorder = resumed
    recovered.paint_disc(2, (5, 5, 5), 2, 2)
    resumed.close()
    again, contents = recover(path)
    assert not contents.torn
    np.testing.assert_array_equal(again.labels, recovered.labels)


def test_the_restore_question_says_what_was_left(tmp_path: Path) -> None:
    session, journal, path = make_session(tmp_path)
    session.paint_disc(2, (20, 20, 10), 3, 4)
    session.paint_disc(2, (30, 20, 10), 3, 1)
    session.undo()
    session.begin_stroke("brush")
    session.paint_disc(2, (10, 10, 10), 3, 2)
    journal.checkpoint(session)
    journal.close()  # killed with the mouse held
    text = describe(read_journal(path))
    assert text.startswith("3 unsaved edit strokes made on ")
    assert "(1 of them undone; the last one was still being painted when BrainSeg stopped)" in text
    assert "+00:00" not in text and "T" not in text.split(" made ")[1][:12]  # a date for people, local time


def test_a_damaged_record_stops_the_replay_there(tmp_path: Path) -> None:
    session, journal, path = make_session(tmp_path)
    session.paint_disc(2, (20, 20, 10), 3, 4)
    first = session.labels.copy()
    session.paint_disc(2, (30, 20, 10), 3, 1)
    journal.close()
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a flipped byte inside the last record: its checksum fails
    path.write_bytes(bytes(data))
    recovered, contents = recover(path)
    assert contents.torn
    np.testing.assert_array_equal(recovered.labels, first)


def test_saved_marker_and_discard(tmp_path: Path) -> None:
    session, journal, path = make_session(tmp_path)
    session.paint_disc(2, (20, 20, 10), 3, 4)
    journal.record_saved({"path": "/tmp/out.nii.gz", "revision": session.revision})
    contents = read_journal(path)
    assert not contents.unsaved
    assert "out.nii.gz" in describe(contents)
    session.undo()
    assert read_journal(path).unsaved
    journal.discard()
    assert not path.exists()
    with pytest.raises(JournalError, match="closed"):
        journal.record_undo()


def test_foreign_files_and_other_grids_are_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.bsjournal"
    bogus.write_bytes(b"hello")
    with pytest.raises(JournalError, match="not a BrainSeg edit journal"):
        read_journal(bogus)
    session, journal, path = make_session(tmp_path)
    journal.close()
    other = Grid((48, 40, 24), np.eye(4))
    with pytest.raises(JournalError, match="grid"):
        recover(path, grid=other)
    recover(path, grid=session.grid)


def test_journal_names_depend_on_the_study_sources(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BRAINSEG_STATE_DIR", str(tmp_path / "state"))
    assert state_dir() == tmp_path / "state"
    _labels, grid = start_mask()
    image = np.zeros(grid.shape, np.float32)
    a = Study("case 1", grid, {"flair": image}, sources={"flair": tmp_path / "a.nii.gz"})
    b = Study("case 1", grid, {"flair": image}, sources={"flair": tmp_path / "b.nii.gz"})
    assert journal_path(a).parent == tmp_path / "state" / "journals"
    assert journal_path(a).name.startswith("case_1-")
    assert study_key(a) != study_key(b)
    assert study_key(a) == study_key(Study("case 1", grid, {"flair": image + 1},
                                           sources={"flair": tmp_path / "a.nii.gz"}))
