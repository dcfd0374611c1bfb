"""A new user's editing path on a real case, in real processes, killed with SIGKILL in the middle.

Run it under a screen (Xvfb) to see it as a user would:

    xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb \
        python bench/editing_walkthrough.py [CASE_DIR] [--shots DIR]

Step 1 (a child process, the app as started by a user): open the case, segment it with the shipped
model, paint with the brush (real mouse events on the axial view), erase, undo the erase, start
another stroke and keep the mouse held, then wait. The parent kills it with SIGKILL.
Step 2 (a second child): reopen the case; the app offers to restore the edits; restore, check the
mask is the one the first app had, export it as NIfTI (MSD convention), reload the file and compare
it voxel for voxel (values, shape, affine) with the edited mask, and open review mode.
Prints each step's figures; saves screenshots of the main states into --shots (default screenshots/issue5).
Default case: BraTS2021_00019 (not one the shipped model was trained on).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CASE = REPO.parent / "shared" / "data" / "brats2021" / "BraTS2021_00019"


def wait(app, condition, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the GUI did not get there in time")
        app.processEvents()
        time.sleep(0.01)


def settle(app, seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def surfaces_built(window) -> bool:
    """The 3D view shows its surfaces (or there is none to wait for)."""
    view = window.view_3d
    if view is None:
        return not window.dock_3d.isVisible() or bool(os.environ.get("BRAINSEG_NO_3D"))
    return not getattr(view, "available", False) or view.status.text().startswith("Surfaces:")


def make_window(settings_file: Path):
    from PySide6.QtCore import QSettings

    from brainseg_gui.ui.main_window import MainWindow

    window = MainWindow(settings=QSettings(str(settings_file), QSettings.Format.IniFormat))
    window.resize(1500, 900)
    window.show()
    return window


def first_session(case: Path, work: Path, shots: Path) -> None:
    """Segment, paint, erase, undo, hold a stroke; write what the mask is, then wait to be killed."""
    import numpy as np
    from PySide6.QtWidgets import QApplication

    from brainseg_gui.ui.viewer_state import Tool
    from tests.ui.editing_support import drag

    app = QApplication.instance() or QApplication([])
    window = make_window(work / "settings.ini")
    start = time.perf_counter()
    window.open_study(case)
    wait(app, lambda: window.volume is not None)
    opened = time.perf_counter() - start
    start = time.perf_counter()
    window.run_segmentation()
    wait(app, lambda: window.editing.session is not None and not window.segmenting, timeout=600)
    segmented = time.perf_counter() - start
    editing, state = window.editing, window.state
    ai = editing.session.labels.copy()
    facts: dict[str, object] = {"open_s": round(opened, 2), "segment_s": round(segmented, 2),
                                "model_version": editing.model_version,
                                "ai_voxels": {str(v): int((ai == v).sum()) for v in (1, 2, 4)}}
    # go to the tumour: the crosshair to the centre of the AI's whole tumour (RAS)
    code = editing.code_ras
    centre = [int(np.flatnonzero((code > 0).any(axis=tuple(a for a in range(3) if a != axis))).mean())
              for axis in range(3)]
    state.set_crosshair((centre[0], centre[1], centre[2]))
    wait(app, lambda: surfaces_built(window), timeout=120)
    settle(app)
    window.save_screenshot(shots / "01_segmented.png")

    axial = window.grid.view("axial")
    x, y, z = state.crosshair
    window.edit_dock.raise_()
    state.set_tool(Tool.BRUSH)
    state.set_label("NCR")
    state.set_brush_mm(4.0)
    drag(axial, [(x - 25, y + 20, z), (x - 10, y + 28, z), (x + 10, y + 28, z)])
    settle(app)
    window.save_screenshot(shots / "02_painted.png")
    painted = editing.session.labels.copy()
    state.set_tool(Tool.ERASER)
    state.set_brush_mm(6.0)
    drag(axial, [(x - 5, y - 5, z), (x + 5, y + 5, z)])
    settle(app)
    window.save_screenshot(shots / "03_erased.png")
    erased = editing.session.labels.copy()
    window.editing.undo()
    settle(app)
    window.save_screenshot(shots / "04_undone.png")
    facts["paint_changed_voxels"] = int((painted != ai).sum())
    facts["erase_changed_voxels"] = int((erased != painted).sum())
    facts["undo_restores_paint"] = bool(np.array_equal(editing.session.labels, painted))
    # a last stroke, the mouse still held when the app dies
    state.set_tool(Tool.BRUSH)
    state.set_label("ET")
    state.set_brush_mm(3.0)
    editing.press("axial", (x + 20, y - 20, z))
    editing.move((x + 30, y - 15, z))
    editing.checkpoint()  # what the 3 s timer does while the mouse is held
    np.save(work / "expected.npy", editing.session.labels)
    np.save(work / "ai.npy", ai)
    facts["title"] = window.windowTitle()
    (work / "first.json").write_text(json.dumps(facts))
    print("READY", flush=True)
    time.sleep(600)


def second_session(case: Path, work: Path, shots: Path) -> None:
    """Reopen, restore, export NIfTI, reload and compare, review mode."""
    import nibabel as nib
    import numpy as np
    from PySide6.QtWidgets import QApplication

    from brainseg_gui.core.labels import LabelConvention, convert
    from brainseg_gui.ui.prompts import restore_box

    app = QApplication.instance() or QApplication([])
    window = make_window(work / "settings.ini")
    asked: list[str] = []

    class Answer:  # what the user clicks; the real box is shown and photographed first
        def restore(self, description: str) -> bool:
            asked.append(description)
            box = restore_box(window, description)
            box.show()
            settle(app)
            box.grab().save(str(shots / "05_restore_question.png"))
            box.close()
            return True

        def overwrite(self, path: Path) -> bool:
            asked.append(f"overwrite {path}")
            return True

    window.prompter = Answer()
    window.open_study(case)
    wait(app, lambda: window.volume is not None and window.editing.session is not None)
    editing = window.editing
    expected = np.load(work / "expected.npy")
    facts: dict[str, object] = {"asked": asked, "restored_equal": bool(np.array_equal(editing.session.labels, expected)),
                                "undo_depth": editing.session.undo_depth, "unsaved": editing.unsaved,
                                "title": window.windowTitle()}
    code = editing.code_ras
    centre = [int(np.flatnonzero((code > 0).any(axis=tuple(a for a in range(3) if a != axis))).mean())
              for axis in range(3)]
    window.state.set_crosshair((centre[0], centre[1], centre[2]))
    wait(app, lambda: surfaces_built(window), timeout=120)
    settle(app)
    window.save_screenshot(shots / "06_restored.png")

    out = work / "export" / f"{window.volume.study.case_id}_corrected_msd.nii.gz"
    out.parent.mkdir()
    exported: list[object] = []
    window.exporter.exported.connect(exported.append)
    start = time.perf_counter()
    window.exporter.export_mask(out, LabelConvention.MSD)
    wait(app, lambda: len(exported) == 1)
    facts["export_s"] = round(time.perf_counter() - start, 2)
    facts["unsaved_after_export"] = editing.unsaved
    facts["title_after_export"] = window.windowTitle()
    # reload the export: through BrainSeg's own loader, which checks it lies on the study's grid
    from brainseg_gui.core.io import load_label_map

    values, convention, _ = load_label_map(out, convention="msd", reference=window.volume.study.grid)
    reloaded = convert(values, convention, LabelConvention.BRATS)
    source = nib.load(window.volume.study.sources["t1"])
    facts["export_equal"] = bool(np.array_equal(reloaded, editing.session.labels))
    facts["export_equal_expected"] = bool(np.array_equal(reloaded, expected))
    facts["affine_equal"] = bool(np.array_equal(nib.load(out).affine, source.affine))
    facts["shape"] = list(values.shape)
    sidecar = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    facts["sidecar"] = {k: sidecar[k] for k in ("model_version", "edited", "voxels_changed",
                                                 "voxels_changed_per_region", "label_convention")}
    # exporting again asks first
    window.exporter.export_mask(out, LabelConvention.MSD)
    wait(app, lambda: len(exported) == 2)
    facts["asked_after"] = asked[1:]

    window.review_panel.set_active(True)
    window.edit_dock.raise_()
    step = window.review_panel.step(1)
    facts["review_first"] = step
    facts["review_dice"] = {r: window.review_panel.cell(i, 3) for i, r in enumerate(("WT", "TC", "ET"))}
    settle(app)
    window.save_screenshot(shots / "07_review.png")
    dialog = window.show_shortcuts()
    settle(app)
    dialog.grab().save(str(shots / "08_shortcuts.png"))
    dialog.close()
    (work / "second.json").write_text(json.dumps(facts, default=str))
    window.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", nargs="?", type=Path, default=DEFAULT_CASE)
    parser.add_argument("--shots", type=Path, default=REPO / "screenshots" / "issue5")
    parser.add_argument("--step", choices=("first", "second"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "first":
        first_session(args.case, args.work, args.shots)
        return 0
    if args.step == "second":
        second_session(args.case, args.work, args.shots)
        return 0
    args.shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        env = {**os.environ, "BRAINSEG_STATE_DIR": str(work / "state"),
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, __file__, str(args.case), "--shots", str(args.shots), "--work", str(work)]
        child = subprocess.Popen([*command, "--step", "first"], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
        try:
            line = child.stdout.readline() if child.stdout else ""
            if line.strip() != "READY":
                print("the first session failed", file=sys.stderr)
                return 1
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
        first = json.loads((work / "first.json").read_text())
        print(f"first app: killed with SIGKILL (exit {child.returncode})")
        for key, value in first.items():
            print(f"  {key}: {value}")
        journals = list((work / "state" / "journals").glob("*.bsjournal"))
        print(f"journal left behind: {[p.name for p in journals]} ({sum(p.stat().st_size for p in journals):,} bytes)")
        done = subprocess.run([*command, "--step", "second"], env=env, cwd=REPO, check=False)
        if done.returncode != 0:
            print("the second session failed", file=sys.stderr)
            return 1
        second = json.loads((work / "second.json").read_text())
        print("second app:")
        for key, value in second.items():
            print(f"  {key}: {value}")
        ok = second["restored_equal"] and second["export_equal"] and second["affine_equal"]
        print("RESULT:", "restored and exported exactly" if ok else "MISMATCH")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
