"""Start the desktop application: QApplication, style, main window, first study."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from brainseg_gui import __version__, resources_dir
from brainseg_gui.app.preload import StudyPreload

log = logging.getLogger(__name__)

#: Icons and the style sheet (installed package data, or resources/ in a checkout or the bundle).
RESOURCES = resources_dir()


def make_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication with BrainSeg's names, icon and style (reuses one that exists)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("BrainSeg")
    app.setOrganizationName("BrainSeg")
    app.setApplicationVersion(__version__)
    icon = RESOURCES / "icons" / "brainseg.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    style = RESOURCES / "style.qss"
    if style.is_file():
        app.setStyleSheet(style.read_text(encoding="utf-8"))
    return app  # type: ignore[return-value]


def run_app(study: Path | None = None, *, settings: QSettings | None = None, welcome: bool = True,
            preload: StudyPreload | None = None) -> int:
    """Show the main window with `study` (or the built-in demo when none is given) and run until it closes.

    At the first start a welcome (demo, device, research-use note) opens over it; `welcome=False` skips it.
    `preload`: the study already being read since the command started (cli gui).
    """
    app = make_application()
    from brainseg_gui.ui.first_run import show_at_first_start
    from brainseg_gui.ui.main_window import MainWindow

    window = MainWindow(settings=settings)
    window.show()
    if study is not None:
        window.open_study(Path(study), preload=preload)
    else:  # no study given: the built-in demo, so a first start shows something real
        window.open_demo()
        window.recent.mark_started()
    if welcome:
        show_at_first_start(window, demo_open=study is None)
    return int(app.exec())
