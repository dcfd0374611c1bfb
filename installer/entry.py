"""Entry point of the bundled application: the `brainseg` command, frozen by PyInstaller.

The bundle's executable behaves exactly like the installed `brainseg` (viewer by default, every
subcommand, `--version`). Two environment switches exist for installer/smoke.sh only:
BRAINSEG_BUNDLE_SELFTEST=imports imports every module the app loads lazily (so an over-eager
exclude in the spec fails here, not in a user's hands); BRAINSEG_BUNDLE_SELFTEST=gui:STUDY:PNG opens
STUDY in the main window, waits until it is shown (3D included) and saves a screenshot, then one of
the first-start welcome (PNG stem + _welcome.png).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Any

#: Modules the app imports only inside functions, on some paths (sliding windows, DICOM, exports, 3D).
LAZY_MODULES = (
    "monai.inferers",
    "SimpleITK",
    "highdicom",
    "pydicom",
    "torch.optim",
    "brainseg_gui.ml.training",
    "brainseg_gui.ui.main_window",
    "brainseg_gui.ui.view_3d",
    "brainseg_gui.app.mesh_export",
    "skimage.measure",  # marching cubes for the 3D view and the mesh exports (app/meshing.py)
    "vtkmodules.vtkRenderingOpenGL2",
    "vtkmodules.vtkIOImage",
    "vtkmodules.qt.QVTKRenderWindowInteractor",
    "PySide6.QtSvg",
    "distributed",  # cohorts: brainseg predict FOLDER
    "brainseg_gui.ml.cohort",
    "openvino",  # the CPU network (ml/openvino_network.py)
)


def main() -> int:
    multiprocessing.freeze_support()  # DataLoader workers re-enter the executable
    test = os.environ.get("BRAINSEG_BUNDLE_SELFTEST", "")
    if test == "imports":
        return _import_everything()
    if test.startswith("gui:"):
        _, study, png = test.split(":", 2)
        return _open_and_grab(study, png)
    from brainseg_gui.cli import main as brainseg

    return brainseg()


def _import_everything() -> int:
    import importlib

    failed = []
    for name in LAZY_MODULES:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - report them all, not only the first
            failed.append(f"{name}: {type(error).__name__}: {error}")
    import torch
    from monai.inferers import sliding_window_inference

    windows = sliding_window_inference(torch.zeros(1, 4, 40, 40, 40), (24, 24, 24), 1, lambda t: t[:, :3])
    print(f"imports: {len(LAZY_MODULES) - len(failed)} of {len(LAZY_MODULES)} lazy modules load; "
          f"monai sliding window -> {tuple(windows.shape)}")
    for line in failed:
        print(f"imports: FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


def _open_and_grab(study: str, png: str) -> int:
    from pathlib import Path

    from PySide6.QtCore import QSettings, QTimer

    from brainseg_gui.ui.app import make_application
    from brainseg_gui.ui.first_run import show_welcome
    from brainseg_gui.ui.main_window import MainWindow

    app = make_application()
    settings = QSettings(str(Path(png).with_suffix(".ini")), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.show()
    outcome: dict[str, str] = {}

    def shown(_volume: object) -> None:
        QTimer.singleShot(500, settle)

    def settle() -> None:  # wait until the 3D view (VTK, loaded after the study) shows the surfaces
        if not _drawn(window) and "waited" not in outcome:
            QTimer.singleShot(500, settle)
            return
        view = window.view_3d
        outcome["3d"] = "not built" if view is None else (view.status.text() or "shown")
        window.save_screenshot(png)
        welcome = show_welcome(window)  # the first-start dialog, device included, as the bundle draws it
        app.processEvents()
        welcome.grab().save(str(Path(png).with_name(Path(png).stem + "_welcome.png")))
        welcome.accept()
        outcome["ok"] = png
        app.quit()

    def waited_long_enough() -> None:
        outcome["waited"] = "yes"

    def timed_out() -> None:
        outcome["error"] = window.last_error or "the study was not shown within 150 s"
        app.quit()

    window.study_opened.connect(shown)
    QTimer.singleShot(90_000, waited_long_enough)
    QTimer.singleShot(150_000, timed_out)
    window.open_study(Path(study))
    app.exec()
    if "ok" in outcome:
        print(f"gui: opened {study}; 3D view: {outcome['3d']}; screenshot {png}")
        return 0
    print(f"gui: FAILED to open {study}: {outcome.get('error') or window.last_error}", file=sys.stderr)
    return 1


def _drawn(window: Any) -> bool:
    """The study's slices are drawn and the 3D view shows its surfaces (or says why it cannot)."""
    view = window.view_3d
    if view is None or window.load_progress.isVisible():
        return False
    return not view.available or view.status.text().startswith("Surfaces")


if __name__ == "__main__":
    sys.exit(main())
