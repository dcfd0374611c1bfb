"""Walk the viewer as a new user and save a screenshot of each main state (for a person to look at).

    xvfb-run -a -s "-screen 0 1920x1080x24" python scripts/gui_walkthrough.py OUT_DIR [CASE_A CASE_B RAW]

Two studies one after another (the second must show nothing of the first), segment with the shipped
model, edit, measure (ruler, ROI statistics, automatic RANO), the report, the fine-tune window, and a
raw single-sequence study flagged and prepared to the brain-mask check. Defaults are cases of
../shared/data. Prints one line per state; the pictures are OUT_DIR/NN_state.png.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


class Yes:
    """Answers every question the way a user who goes on would (no modal dialog blocks the walk)."""

    def restore(self, description: str) -> bool:
        return False

    def unsaved(self, action: str):
        from brainseg_gui.ui.prompts import Unsaved

        return Unsaved.DISCARD

    def overwrite(self, path: Path) -> bool:
        return True


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "walkthrough")
    case_a = Path(sys.argv[2]) if len(sys.argv) > 2 else DATA / "brats2018" / "Brats18_TCIA02_370_1"
    case_b = Path(sys.argv[3]) if len(sys.argv) > 3 else DATA / "brats2021" / "BraTS2021_00019"
    raw = Path(sys.argv[4]) if len(sys.argv) > 4 else DATA / "nrrd" / "brain1_image.nrrd"
    out.mkdir(parents=True, exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix="brainseg-walk-"))
    import os

    os.environ.setdefault("BRAINSEG_STATE_DIR", str(state_dir / "state"))
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from brainseg_gui.ui.app import make_application
    from brainseg_gui.ui.main_window import MainWindow

    app = make_application([sys.argv[0]])
    window = MainWindow(settings=QSettings(str(state_dir / "settings.ini"), QSettings.Format.IniFormat))
    window.prompter = Yes()
    window.resize(1600, 950)
    window.show()
    shots = iter(range(1, 100))

    def wait(condition, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the walk waited too long")
            app.processEvents()
            time.sleep(0.02)
        for _ in range(20):
            app.processEvents()
            time.sleep(0.01)

    def shot(name: str, what: str) -> None:
        path = window.save_screenshot(out / f"{next(shots):02d}_{name}.png")
        print(f"{path.name}: {what}")

    def open_and_wait(path: Path) -> None:
        window.open_study(path)
        wait(lambda: window.volume is not None and not window.loader.busy
             and Path(next(iter(window.volume.study.sources.values()))).resolve().is_relative_to(path.resolve()))

    open_and_wait(case_a)
    wait(lambda: window.view_3d is not None, timeout=60)
    shot("study_a_opened", f"{case_a.name} opened: three views, truth outlines, 3D")
    window.run_segmentation()
    wait(lambda: window.segmentation is not None and not window.segmenting, timeout=600)
    shot("study_a_segmented", f"segmented: {window.segment_panel.message.text()}")
    window.state.set_tool("brush")
    window.editing.press("axial", window.state.crosshair)
    window.editing.move(tuple(c + 6 for c in window.state.crosshair))
    window.editing.release()
    window.state.set_tool("navigate")
    shot("study_a_edited", "one brush stroke: title says unsaved edits")
    document = window.document
    x, y, z = window.state.crosshair
    document.measurements.add_ruler((x - 20.0, y, z), (x + 20.0, y, z))
    window.measure_dock.raise_()
    window.measure_panel.region_box.setCurrentIndex(window.measure_panel.region_box.findData("ET"))
    window.measure_panel.refresh_statistics()
    rano = document.measurements.rano
    if rano is not None:
        window.move_crosshair((x, y, rano.slice_z))
    shot("study_a_measured", f"ruler, ET statistics, RANO {rano.long_mm:.1f} x {rano.short_mm:.1f} mm" if rano
         else "ruler, ET statistics, no ET for RANO")
    report = out / f"{case_a.name}_report.html"
    window.exporter.export_report(report, overwrite=True)
    wait(lambda: report.exists(), timeout=120)
    print(f"{report.name}: the report ({report.stat().st_size // 1024} KB)")

    open_and_wait(case_b)
    window.controls_dock.raise_()
    shot("study_b_nothing_of_a", f"{case_b.name} opened: no overlay, no measurements, no message of {case_a.name}")

    panel = window.models.show_finetune()
    wait(lambda: window.models.panel is not None, timeout=120)
    panel = window.models.panel
    panel.resize(1280, 704)
    for _ in range(10):
        app.processEvents()
    panel.grab().save(str(out / f"{next(shots):02d}_finetune_window.png"))
    print("finetune_window: the fine-tune window at 1280x704")
    panel.close()

    open_and_wait(raw)
    wait(lambda: window.prepare.stage.value not in ("checking", "none"), timeout=120)
    window.controls_dock.raise_()
    shot("raw_flagged", f"{raw.name}: readiness {window.prepare.stage.value}")
    if window.prepare.single_sequence is not None:
        window.prepare.set_single_sequence("t1ce")
    window.prepare.prepare(state_dir / "prepared")  # never beside the data: it may be a shared, read-only copy
    wait(lambda: window.prepare.stage.value == "review" and window.prepare.busy is None, timeout=600)
    shot("raw_brain_mask_check", f"prepared: brain mask to check ({window.prepare.brain_ml():.0f} mL)")
    window.close()
    QApplication.processEvents()


if __name__ == "__main__":
    main()
