"""The main window: builds the application's parts, arranges the views and panels, follows the study.

The open study is the workspace's `Document` (app/document.py); opening another replaces it, and
the window redraws from the new one in `_on_document`. Controllers (prepare, DICOM, exports,
models, menus) get a `ViewerContext` (the workspace, one job runner, one error route, the status
line), never this window. Every user action is a method tests can call without a display:
open_study, open_demo, set_sequence, move_crosshair, set_layout, run_segmentation,
cancel_segmentation, save_screenshot; the mask is `editing` (the Document's), exports go through
`exporter`, questions through `prompter` (tests replace it with one that answers by itself).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QRect, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui import __version__
from brainseg_gui.app import dicom_tasks, tasks
from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.document import Document, Workspace
from brainseg_gui.app.editing import JOURNAL_INTERVAL_MS, Editing
from brainseg_gui.app.preload import StudyPreload
from brainseg_gui.app.status_readout import describe_voxel
from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.ui.activity import ActivityBar
from brainseg_gui.ui.context import ViewerContext
from brainseg_gui.ui.dicom_export import DicomResultsExporter
from brainseg_gui.ui.dicom_open import DicomOpener
from brainseg_gui.ui.edit_panel import EditPanel
from brainseg_gui.ui.errors import ErrorReporter
from brainseg_gui.ui.export_actions import Exporter
from brainseg_gui.ui.measure_panel import attach_measurements
from brainseg_gui.ui.model_actions import ModelActions
from brainseg_gui.ui.overlay_panel import OverlayPanel
from brainseg_gui.ui.prepare_controller import PrepareController, Stage
from brainseg_gui.ui.prepare_panel import PreparePanel
from brainseg_gui.ui.prompts import Prompter
from brainseg_gui.ui.recent_studies import RecentStudies
from brainseg_gui.ui.review_panel import ReviewPanel
from brainseg_gui.ui.segment_panel import RESEARCH_NOTE, SegmentPanel
from brainseg_gui.ui.sequence_bar import SequenceBar
from brainseg_gui.ui.slice_view import SEQUENCE_TITLES
from brainseg_gui.ui.study_loader import StudyLoader
from brainseg_gui.ui.view_grid import ViewGrid
from brainseg_gui.ui.view_memory import remember_view
from brainseg_gui.ui.viewer_state import Layout, ViewerState
from brainseg_gui.ui.welcome import WelcomePanel
from brainseg_gui.ui.window_editing import WindowEditing
from brainseg_gui.ui.workers import Job, JobRunner

#: The runner's slot of the segmentation (one at a time).
SEGMENT_SLOT = "segment"

log = logging.getLogger(__name__)


class MainWindow(WindowEditing, QMainWindow):
    study_opened = Signal(object)  # DisplayVolume: a new Document is shown (tests wait for it)
    segmentation_done = Signal(object)  # tasks.Segmentation
    segmenting_changed = Signal()  # a segmentation started or ended (menus follow)

    def __init__(self, settings: QSettings | None = None,
                 predictor_factory: Callable[[], Any] | None = None,
                 model_dir: Path | None = None, journal_folder: Path | None = None) -> None:
        super().__init__()
        self.setWindowTitle("BrainSeg (research use only)")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings("BrainSeg", "BrainSeg")
        self.recent = RecentStudies(self.settings)
        self.state = ViewerState(self)
        self.workspace = Workspace(self.state, journal_folder)
        self.errors = ErrorReporter(self)
        self.runner = JobRunner(self, errors=self.errors)
        self.activity = ActivityBar()
        self.context = ViewerContext(
            workspace=self.workspace, state=self.state, runner=self.runner, errors=self.errors,
            activity=self.activity, status=self._status, prompter=Prompter(self), settings=self.settings,
            parent=self, confirm_unsaved=self.confirm_unsaved)
        self.loader = StudyLoader(self.context, self.recent)
        self.loader.finished.connect(self._load_finished)
        # the window redraws first when a Document is replaced; the controllers follow
        self.workspace.replaced.connect(self._on_document)
        self.workspace.segmented.connect(self._on_segmented)

        self.welcome = WelcomePanel()
        self.welcome.open_file_requested.connect(self.ask_open_file)
        self.welcome.open_folder_requested.connect(self.ask_open_folder)
        self.welcome.demo_requested.connect(self.open_demo)
        self.welcome.recent_requested.connect(self.open_study)
        self.grid = ViewGrid(self.state, placeholder=self.welcome)
        self.grid.hovered.connect(self._on_hover)
        # the gestures go to the shown study's mask (looked up at each press: a new study, a new mask)
        self.grid.edit_pressed.connect(lambda plane, voxel: self.editing.press(plane, voxel))
        self.grid.edit_moved.connect(lambda voxel: self.editing.move(voxel))
        self.grid.edit_released.connect(lambda: self.editing.release())
        self.setCentralWidget(self.grid)
        self._journal_timer = QTimer(self)  # an open stroke goes to the journal every few seconds
        self._journal_timer.setInterval(JOURNAL_INTERVAL_MS)
        self._journal_timer.timeout.connect(lambda: self.editing.checkpoint())
        self._journal_timer.start()

        self.exporter = Exporter(self.context)
        self.prepare = PrepareController(self.context, self.loader)  # raw studies: readiness, prepare, brain mask
        self.models = ModelActions(
            self.context, tasks.PredictorSlot(predictor_factory or tasks.default_predictor_factory(model_dir)),
            follow_active=predictor_factory is None and model_dir is None)
        self.exporter.exported.connect(self.models.record_corrected)

        self.sequence_bar = SequenceBar(self.state)
        toolbar = self.addToolBar("Sequences")
        toolbar.setObjectName("sequenceToolbar")
        toolbar.setMovable(False)
        toolbar.addWidget(self.sequence_bar)
        remember_view(self.state, self.sequence_bar, self.settings)  # layout, sequence, window preset

        self.study_label = QLabel("No study")
        self.study_label.setWordWrap(True)
        self.study_label.setObjectName("studyLabel")
        self.overlay_panel = OverlayPanel(self.state)
        self.segment_panel = SegmentPanel()
        self.segment_panel.segment_requested.connect(self.run_segmentation)
        self.segment_panel.cancel_requested.connect(self.cancel_segmentation)
        self.models.model_named.connect(self._show_model_name)
        self.prepare_panel = PreparePanel(self.prepare, self.state)
        self.prepare_panel.attention_wanted.connect(lambda: self.controls_dock.raise_())
        self.prepare.attention_wanted.connect(lambda: self.controls_dock.raise_())
        self.prepare.changed.connect(self._sync_segment_button)
        self.edit_panel = EditPanel(self.state, self.workspace)
        self.review_panel = ReviewPanel(self.state, self.workspace)
        self.controls_dock = _panel_dock("Study and segmentation", "controlsDock",
                                         # the main action (Segment) above the fold: study, readiness,
                                         # segmentation, then the overlay settings
                                         (self.study_label, self.prepare_panel, self.segment_panel,
                                          self.overlay_panel))
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.controls_dock)
        self.edit_dock = _panel_dock("Edit and review", "editDock", (self.edit_panel, self.review_panel))
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.edit_dock)
        self.tabifyDockWidget(self.controls_dock, self.edit_dock)
        # rulers, ellipse ROIs and their statistics, RANO: drawn on the views, kept by the Document
        self.measure_panel = attach_measurements(self.grid, self.state, None, report_error=self.errors.show)
        self.measure_dock = _panel_dock("Measure", "measureDock", (self.measure_panel,))
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.measure_dock)
        self.tabifyDockWidget(self.edit_dock, self.measure_dock)
        self.workspace.stroke_finished.connect(self.measure_panel.refresh_statistics)
        self.workspace.measurements_changed.connect(
            lambda: self.segment_panel.show_rano(self.document.measurements.rano))
        self.workspace.session_changed.connect(self.measure_panel.refresh_statistics)
        self.controls_dock.raise_()
        self.dock_3d = QDockWidget("3D view")
        self.dock_3d.setObjectName("dock3d")
        self.dock_3d.setWidget(QLabel("Open a study to see it in 3D"))
        self.dock_3d.visibilityChanged.connect(self._on_3d_visibility)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock_3d)
        self.view_3d: Any = None  # built on first show: VTK loads only when needed
        self._vtk_loading = False

        self.position_label = QLabel("")
        note = QLabel(RESEARCH_NOTE)
        note.setObjectName("researchNote")
        self.statusBar().addWidget(self.position_label, 1)
        self.statusBar().addPermanentWidget(self.activity)
        self.statusBar().addPermanentWidget(note)
        self.dicom = DicomOpener(self.context, self.loader, self.sequence_bar, self.study_label,
                                 lambda: self.prepare.record)  # a DICOM study: chooser, series, staging
        self.dicom_results = DicomResultsExporter(self.context, self.prepare)  # its DICOM-SEG and SR
        self._build_menus()

        self.state.crosshair_changed.connect(self._on_crosshair)
        self._connect_editing()
        self.state.sequence_changed.connect(lambda _name: self._update_title())
        self._refresh_recent()
        self.resize(1500, 900)
        self.controls_dock.setMinimumWidth(400)
        self.resizeDocks([self.controls_dock, self.dock_3d], [460, 420], Qt.Orientation.Vertical)
        self.resizeDocks([self.controls_dock], [440], Qt.Orientation.Horizontal)

    # ---- the open study -------------------------------------------------------------------
    @property
    def document(self) -> Document:
        return self.context.document

    @property
    def volume(self) -> DisplayVolume | None:
        return self.context.volume

    @property
    def segmentation(self) -> tasks.Segmentation | None:
        return self.context.document.segmentation

    @property
    def editing(self) -> Editing:
        """The shown study's mask being corrected (a new study, a new one)."""
        return self.context.editing

    @property
    def prompter(self) -> Prompter:
        """The questions to the user (tests set one that answers by itself; every controller asks it)."""
        return self.context.prompter

    @prompter.setter
    def prompter(self, prompter: Prompter) -> None:
        self.context.prompter = prompter

    @property
    def predictors(self) -> tasks.PredictorSlot:
        """What Segment runs: the active model's predictor, built on first use (see ModelActions)."""
        return self.models.predictors

    @property
    def last_error(self) -> str | None:
        return self.errors.last

    @property
    def load_progress(self) -> ActivityBar:
        return self.activity

    # ---- opening -------------------------------------------------------------------------
    def open_study(self, path: Path | str, *, preload: StudyPreload | None = None) -> Job | None:
        """Load a study in a worker; on success it replaces the one shown, on failure a dialog.

        None when the user chose to stay with unsaved edits. `preload`: the same study, already being
        read since the command started (app/preload.py)."""
        path = Path(path)
        if not self.confirm_unsaved("open another study"):
            return None
        if dicom_tasks.is_dicom_study(path):  # index, choose the study and its series, then load
            return self.dicom.open(path)
        self.dicom.cancel()
        return self.loader.open_path(path, preload=preload)

    def open_demo(self) -> Job | None:
        if not self.confirm_unsaved("open another study"):
            return None
        return self.loader.open_demo()

    def ask_open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a study (any file of a case)", "",
            "Images and DICOM studies (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.dcm *.zip DICOMDIR);;"
            "All files (*)")
        if path:
            self.open_study(path)

    def ask_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a study folder (case, DICOM study or series)")
        if path:
            self.open_study(path)

    def _status(self, text: str, ms: int = 0) -> None:
        self.statusBar().showMessage(text, ms)

    def _on_document(self, document: Document, old: Document) -> None:
        """A new study (or a view of it) replaces the one shown: every view starts again from it."""
        self.runner.cancel(SEGMENT_SLOT)  # a result for the old study must not land on this one
        volume = document.volume
        assert volume is not None
        state = self.state
        sequence = state.sequence if state.sequence in volume.images else volume.sequences[0]
        if "t1ce" in volume.images and state.sequence not in volume.images:
            sequence = "t1ce"
        sequence = _opened_sequence(volume, document.source) or sequence  # the file opened is the one shown
        windows = {name: volume.window(name, self.sequence_bar.preset) for name in volume.sequences}
        state.shape = volume.shape
        self.grid.set_volume(volume)
        state.reset(volume.shape, volume.centre(), windows, sequence)
        self.measure_panel.set_measurements(document.measurements)
        if document.restore_problem:
            self._status(document.restore_problem, 15000)
        self.sequence_bar.set_volume(volume)
        self.overlay_panel.set_available(prediction=False, truth=volume.truth_code is not None)
        self.segment_panel.clear()
        self.segment_panel.show_rano(document.measurements.rano)  # kept with the study from an earlier visit
        self._sync_segment_button()
        self.segment_panel.show_truth_volumes(document.truth_volumes_ml())
        self._describe_study(document)
        if document.source is not None:
            self._refresh_recent()
        if self.view_3d is not None:
            self.view_3d.set_volume(volume)
        self.offer_restore()
        self.study_opened.emit(volume)

    def _load_finished(self) -> None:
        if self.view_3d is None and self.dock_3d.isVisible():
            QTimer.singleShot(250, self._build_3d)  # the 3D view waited for the study to be drawn

    def _describe_study(self, document: Document) -> None:
        assert document.volume is not None
        study = document.volume.study
        lines = [f"<b>{document.name}</b>", study.grid.describe()]
        if study.missing:
            lines.append("Missing: " + ", ".join(SEQUENCE_TITLES[s] for s in study.missing))
        lines.append("Ground truth: " + (study.label_convention.description
                                         if study.label_convention is not None and study.labels is not None
                                         else "none"))
        lines += [f"<span style='color:#c90'>{w}</span>" for w in study.warnings]
        self.study_label.setText("<br>".join(lines))
        self._update_title()

    def _update_title(self) -> None:
        if self.volume is None:
            self.setWindowTitle("BrainSeg (research use only)")
            return
        edited = " (unsaved edits)" if self.editing.unsaved else ""
        self.setWindowTitle(f"{self.document.name}{edited} — {SEQUENCE_TITLES[self.state.sequence]} — "
                            f"BrainSeg {__version__} (research use only)")

    # ---- viewing -------------------------------------------------------------------------
    def set_sequence(self, name: str) -> None:
        if self.volume is not None and name in self.volume.images:
            self.state.set_sequence(name)

    def move_crosshair(self, voxel: tuple[int, int, int]) -> None:
        """Put the crosshair on a RAS voxel index (clamped to the grid)."""
        self.state.set_crosshair(voxel)

    def set_layout(self, layout: Layout | str, plane: str | None = None) -> None:
        self.state.set_layout(Layout(layout), plane)

    def _on_crosshair(self, voxel: tuple[int, int, int]) -> None:
        self._on_hover(None)

    def _on_hover(self, voxel: tuple[int, int, int] | None) -> None:
        if self.volume is None:
            return
        prediction = self.editing.code_ras if self.editing.code_ras is not None else (
            self.segmentation.code if self.segmentation is not None else None)
        target = voxel if voxel is not None else self.state.crosshair
        prefix = "" if voxel is not None else "crosshair: "
        checking = self.prepare.stage is Stage.REVIEW  # the layer is the brain mask, not a prediction
        self.position_label.setText(prefix + describe_voxel(self.volume, target, prediction, brain_mask=checking))

    # ---- segmentation --------------------------------------------------------------------
    def run_segmentation(self) -> Job | None:
        """Segment the shown study in a worker; the result replaces the prediction overlay."""
        document = self.document
        volume = document.volume
        if volume is None or self.runner.current(SEGMENT_SLOT) is not None:
            return None
        if not self.prepare.allow_segmentation():  # not BraTS-ready, or its brain mask is being checked
            return None
        if not self.confirm_unsaved("segment again (the new result replaces the edited mask)"):
            return None
        self.segment_panel.started()
        job = self.runner.start(
            "Segmenting", lambda **kw: tasks.segment(volume, self.predictors, **kw), slot=SEGMENT_SLOT,
            on_progress=self.segment_panel.report,
            on_result=lambda result: self._segmented(document, result),
            on_error=lambda error: self._segment_failed(error),
            on_cancelled=lambda: self.segment_panel.stopped("Cancelled; the previous overlays are kept."),
            on_finished=self._segment_finished)
        self.segmenting_changed.emit()
        return job

    @property
    def segmenting(self) -> bool:
        return self.runner.current(SEGMENT_SLOT) is not None

    @property
    def can_segment(self) -> bool:
        """Segment applies: a study shown, nothing segmenting, and the Prepare step allows it."""
        return self.volume is not None and not self.segmenting and self.prepare.segmentable

    def cancel_segmentation(self) -> None:
        job = self.runner.current(SEGMENT_SLOT)
        if job is not None:
            job.cancel()
            self.segment_panel.message.setText("Cancelling…")

    def _segmented(self, document: Document, result: tasks.Segmentation) -> None:
        if document is not self.document:  # another study was opened meanwhile
            return
        document.set_segmentation(result)

    def _on_segmented(self, result: tasks.Segmentation) -> None:
        """The shown study's new AI result: editing starts from it, which draws it once in every view
        (the worker made its RAS code; `_on_edit_session` shows it and schedules one 3D update)."""
        volume = self.volume
        assert volume is not None
        self.editing.start(result.labels, model_version=result.model_version, base=f"model {result.model_version}",
                           code_ras=result.code)
        self.overlay_panel.set_available(prediction=True, truth=volume.truth_code is not None)
        self.segment_panel.show_result(result, self.document.truth_volumes_ml())
        flag = f" Flagged: {result.flag}." if result.flag else ""
        self.segment_panel.stopped(f"Done in {result.seconds:.1f} s on {result.device}.{flag}")
        self._on_hover(None)
        self.segmentation_done.emit(result)

    def _segment_failed(self, error: BaseException) -> None:
        self.segment_panel.stopped("Failed; the previous overlays are kept.")
        self.show_error("Segmentation failed", str(error))

    def _segment_finished(self) -> None:
        self._sync_segment_button()
        self.segmenting_changed.emit()
        self.segment_panel.cancel_button.setEnabled(False)
        predictor = self.predictors.loaded
        if predictor is not None and self.segmentation is None:
            self.segment_panel.show_model(predictor.model_version, predictor.device_description)

    def _show_model_name(self, text: str, replace: bool) -> None:
        label = self.segment_panel.model_label
        if replace or label.text().startswith("Model: not loaded"):  # not over a segmentation's own line
            label.setText(text)

    def _sync_segment_button(self) -> None:
        """Segment applies to a shown study, when nothing segments and the Prepare step allows it."""
        self.segment_panel.set_enabled_for_study(self.can_segment)

    # ---- output --------------------------------------------------------------------------
    def save_screenshot(self, path: Path | str) -> Path:
        """The whole window as PNG, written atomically."""
        picture = self.grab_with_3d()

        def save(temporary: Path) -> None:
            if not picture.save(str(temporary), "PNG"):
                raise OSError(f"could not write a PNG to {path}")

        return write_atomic(Path(path), save)

    def grab_with_3d(self) -> QPixmap:
        """The window's picture with the 3D view painted in (a GL widget grabs as black)."""
        pixmap = self.grab()
        view = self.view_3d
        if view is not None and view.available and view.isVisible():
            pixels = np.ascontiguousarray(view.render_image())
            height, width, _ = pixels.shape
            image = QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888)
            target = view.vtk_widget
            painter = QPainter(pixmap)
            painter.drawImage(QRect(target.mapTo(self, QPoint(0, 0)), target.size()), image)
            painter.end()
        return pixmap

    def ask_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save a screenshot", "brainseg.png", "PNG (*.png)")
        if path:
            self.save_screenshot(path)

    def show_error(self, title: str, message: str) -> QMessageBox:
        """A dialog that does not block (the app stays usable; tests read `last_error`)."""
        return self.errors.show(title, message)

    # ---- 3D ------------------------------------------------------------------------------
    def _on_3d_visibility(self, visible: bool) -> None:
        if visible and self.view_3d is None:
            # after the window's first paint: VTK takes a while to load
            QTimer.singleShot(0, self._build_3d)

    def _build_3d(self) -> None:
        # Not while a study opens (it is drawn first: cold start), and VTK is imported in a worker.
        if self.view_3d is None and not self._vtk_loading and not self.loader.busy:
            from brainseg_gui.ui.view_3d import load_vtk

            self._vtk_loading = True
            self.runner.start("Loading the 3D view", load_vtk, on_finished=self._make_3d)

    def _make_3d(self) -> None:
        self._vtk_loading = False
        if self.view_3d is None and self.isVisible():  # closed meanwhile: built when shown again
            from brainseg_gui.ui.view_3d import View3D

            self.view_3d = View3D(self.state, self.runner)
            self.dock_3d.setWidget(self.view_3d)
            if self.volume is not None:
                self.view_3d.set_volume(self.volume)
                if self.editing.code_ras is not None:
                    self._update_3d_mask()
                elif self.segmentation is not None:
                    self.view_3d.set_prediction(self.segmentation.regions_ras)

    # ---- menus, drops, closing -----------------------------------------------------------
    def _build_menus(self) -> None:
        from brainseg_gui.ui.menus import build_menus

        self.recent_menu, self.sequence_actions = build_menus(self)

    def _refresh_recent(self) -> None:
        paths = self.recent.paths()
        self.welcome.set_recent(paths)
        self.recent_menu.clear()
        for path in paths:
            action = QAction(str(path), self)
            action.triggered.connect(lambda _=False, p=path: self.open_study(p))
            self.recent_menu.addAction(action)
        self.recent_menu.setEnabled(bool(paths))

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow():
            QTimer.singleShot(0, self.focus_views)  # back from a dialog: the keys move slices again

    def focus_views(self) -> None:
        """Give the keyboard to the slice view under the crosshair's plane, unless the user is typing
        in a field of this window (W/L, brush range...) or no study is shown."""
        focused = QApplication.focusWidget()
        typing = isinstance(focused, (QLineEdit, QAbstractSpinBox, QTextEdit)) and self.isAncestorOf(focused)
        views = self.grid.views
        if self.volume is None or typing or not views or not self.isActiveWindow():
            return
        if focused is None or not any(view is focused or view.isAncestorOf(focused) for view in views):
            views[0].setFocus(Qt.FocusReason.ActiveWindowFocusReason)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            # several files of one case dropped together: open their folder
            self.open_study(paths[0] if len(paths) == 1 else paths[0].parent)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.confirm_unsaved("quit"):
            event.ignore()
            return
        self.editing.close_session(discard=False)
        self.runner.cancel_all()
        self.runner.wait(10000)
        if self.view_3d is not None:
            self.view_3d.close()
        super().closeEvent(event)


def _panel_dock(title: str, name: str, widgets: tuple[QWidget, ...]) -> QDockWidget:
    """A dock holding panels in a scrolling column."""
    controls = QWidget()
    column = QVBoxLayout(controls)
    for widget in widgets:
        column.addWidget(widget)
    column.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # panels wrap instead
    scroll.setWidget(controls)
    dock = QDockWidget(title)
    dock.setObjectName(name)
    dock.setWidget(scroll)
    dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
    return dock


def _opened_sequence(volume: DisplayVolume, path: Path | None) -> str | None:
    """The sequence whose file the user opened (a case opened by one of its files), or None."""
    if path is None or not path.is_file():
        return None
    opened = path.resolve()
    for name, source in volume.study.sources.items():
        if name in volume.images and Path(source).resolve() == opened:
            return name
    return None

