"""Never losing work: the GUI killed with SIGKILL mid-stroke, reopened, restores exactly; closing or
leaving a study with unsaved edits asks; exports ask before replacing an earlier one."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from brainseg_gui.core.journal import read_journal
from brainseg_gui.ui.prompts import Unsaved, overwrite_box, restore_box, unsaved_box
from brainseg_gui.ui.viewer_state import Tool
from tests.ui.editing_support import TIMEOUT_MS, StubPrompter, kill_when_ready, make_window, open_and_segment

CHILD = Path(__file__).with_name("editing_child.py")


def paint(window, voxel=None, label="ET", radius=3.0) -> None:
    state = window.state
    state.set_tool(Tool.BRUSH)
    state.set_label(label)
    state.set_brush_mm(radius)
    voxel = voxel or state.crosshair
    window.editing.press("axial", voxel)
    window.editing.release()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_gui_killed_mid_stroke_is_restored_exactly(qtbot, settings, monkeypatch, toy_case, tmp_path,
                                                   private_state, screenshots) -> None:
    expected_file = tmp_path / "expected.npy"
    child = kill_when_ready(CHILD, [toy_case, expected_file], private_state)
    assert child.returncode == -signal.SIGKILL
    expected = np.load(expected_file)
    journals = list((private_state / "journals").glob("*.bsjournal"))
    assert len(journals) == 1

    window = make_window(qtbot, settings, monkeypatch)
    open_and_segment(qtbot, window, toy_case, segment=False)
    asked = window.prompter.asked
    assert asked and asked[0][0] == "restore" and "unsaved edit" in asked[0][1]
    editing = window.editing
    assert editing.active and editing.unsaved
    np.testing.assert_array_equal(editing.session.labels, expected)
    assert editing.model_version == "fake-1"
    assert editing.session.undo_depth == 3  # brush, eraser (undone, redone), the held stroke
    # the views show the restored mask, and the AI's own mask is there for review
    np.testing.assert_array_equal(window.grid.prediction, editing.code_ras)
    assert (editing.session.ai != expected).any()
    assert "unsaved edits" in window.windowTitle()
    window.save_screenshot(screenshots / "editing_restored.png")
    # journaling goes on in the same file
    paint(window, (2, 2, 2), "ED", 1.0)
    assert read_journal(journals[0]).strokes == 4
    window.prompter.answers["unsaved"] = Unsaved.DISCARD
    window.close()
    assert not journals[0].exists()


def test_declining_the_restore_deletes_the_journal(qtbot, settings, monkeypatch, toy_case, private_state) -> None:
    first = make_window(qtbot, settings, monkeypatch)
    open_and_segment(qtbot, first, toy_case)
    paint(first, label="NCR")
    assert first.editing.session.undo_depth == 1
    path = first.editing.journal.path
    first.editing.journal.close()  # as a crash leaves it
    first.editing.journal = None
    first.editing.session = None
    first.close()
    assert path.exists()

    second = make_window(qtbot, settings, monkeypatch)
    second.prompter.answers["restore"] = False
    open_and_segment(qtbot, second, toy_case, segment=False)
    assert second.prompter.asked[0][0] == "restore"
    assert not second.editing.active and not path.exists()


def test_closing_with_unsaved_edits_asks(qtbot, settings, monkeypatch, toy_case) -> None:
    window = make_window(qtbot, settings, monkeypatch)
    open_and_segment(qtbot, window, toy_case)
    window.close()  # nothing edited: no question
    assert window.prompter.asked == []

    window = make_window(qtbot, settings, monkeypatch)
    open_and_segment(qtbot, window, toy_case)
    paint(window, label="NCR")
    journal = window.editing.journal.path
    window.prompter.answers["unsaved"] = Unsaved.CANCEL
    assert not window.close()
    assert window.isVisible() and window.editing.unsaved and journal.exists()
    assert window.prompter.asked[-1] == ("unsaved", "quit")
    # opening another study or segmenting again asks too
    assert window.open_study(toy_case) is None
    assert window.run_segmentation() is None
    assert [kind for kind, _ in window.prompter.asked] == ["unsaved"] * 3
    window.prompter.answers["unsaved"] = Unsaved.DISCARD
    assert window.close()
    assert not journal.exists()


def test_closing_can_export_first(qtbot, settings, monkeypatch, toy_case, tmp_path) -> None:
    window = make_window(qtbot, settings, monkeypatch)
    open_and_segment(qtbot, window, toy_case)
    paint(window, label="NCR")
    target = tmp_path / "on_close.nii.gz"
    target.write_bytes(b"an earlier export")
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName", lambda *a, **k: (str(target), ""))
    window.prompter.answers["unsaved"] = Unsaved.EXPORT
    window.prompter.answers["overwrite"] = False  # the earlier export is kept, so the window stays
    assert not window.close()
    assert window.prompter.asked[-1] == ("overwrite", str(target))
    assert target.read_bytes() == b"an earlier export" and window.editing.unsaved
    window.prompter.answers["overwrite"] = True
    assert window.close()
    assert target.read_bytes() != b"an earlier export" and (tmp_path / "on_close.json").exists()


def test_exports_ask_before_replacing_and_write_meshes_and_report(qtbot, settings, monkeypatch, toy_case,
                                                                 tmp_path) -> None:
    window = make_window(qtbot, settings, monkeypatch)
    open_and_segment(qtbot, window, toy_case)
    paint(window, label="NCR")
    out = tmp_path / "mask.nii.gz"
    job = window.exporter.export_mask(out)
    qtbot.waitUntil(lambda: job.done, timeout=TIMEOUT_MS)
    first = out.read_bytes()
    paint(window, (3, 3, 3), "ED")
    window.prompter.answers["overwrite"] = False
    assert window.exporter.export_mask(out) is None
    assert out.read_bytes() == first and window.prompter.asked[-1] == ("overwrite", str(out))
    window.prompter.answers["overwrite"] = True
    job = window.exporter.export_mask(out)
    qtbot.waitUntil(lambda: job.done, timeout=TIMEOUT_MS)
    assert out.read_bytes() != first
    # an input file is never replaced, whatever the answer
    seg = toy_case / "toy_seg.nii.gz"
    before = seg.read_bytes()
    job = window.exporter.export_mask(seg)
    qtbot.waitUntil(lambda: job.done and window.last_error is not None, timeout=TIMEOUT_MS)
    assert "input" in window.last_error and seg.read_bytes() == before

    folder = tmp_path / "meshes"
    folder.mkdir()
    job = window.exporter.export_meshes(folder, "obj", "lps")
    qtbot.waitUntil(lambda: job.done, timeout=TIMEOUT_MS)
    assert sorted(p.name for p in folder.iterdir()) == ["toy_ET.obj", "toy_TC.obj", "toy_WT.obj"]
    report = tmp_path / "report.html"
    job = window.exporter.export_report(report)
    qtbot.waitUntil(lambda: job.done, timeout=TIMEOUT_MS)
    text = report.read_text(encoding="utf-8")
    assert "fake-1" in text and "data:image/png;base64," in text and "Dice" in text


def test_dialog_boxes_offer_the_right_choices(qtbot, tmp_path) -> None:
    box = restore_box(None, "3 unsaved edits from today")
    qtbot.addWidget(box)
    assert [b.text() for b in box.buttons()] == ["Restore", "Discard"]
    assert "3 unsaved edits" in box.informativeText()
    box = unsaved_box(None, "quit")
    qtbot.addWidget(box)
    assert {b.text().replace("&", "") for b in box.buttons()} == {"Export…", "Discard edits", "Cancel"}
    box = overwrite_box(None, tmp_path / "x.nii.gz")
    qtbot.addWidget(box)
    assert "x.nii.gz" in box.text()
    assert isinstance(StubPrompter().unsaved("x"), Unsaved)
