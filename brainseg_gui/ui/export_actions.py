"""The GUI side of exporting: choose where, ask before replacing an earlier export, write in a worker.

Each export takes a snapshot of the corrected mask first, so painting can go on while it is written.
Exporting the mask (NIfTI or DICOM-SEG) counts as saving the edits: the window stops warning about
them, and the journal records where they went.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog

from brainseg_gui.app.exports import ExportRequest, export_all, targets
from brainseg_gui.core.export import default_export_name, provenance
from brainseg_gui.core.labels import LabelConvention
from brainseg_gui.ui.context import ViewerContext
from brainseg_gui.ui.workers import Job

log = logging.getLogger(__name__)

NIFTI_FILTER = "NIfTI (*.nii.gz *.nii)"


class Exporter(QObject):
    exported = Signal(object)  # list of written paths

    def __init__(self, context: ViewerContext) -> None:
        super().__init__(context.parent)
        self.context = context
        self.last_paths: list[Path] = []

    # ---- programmatic (tests, and the dialogs below) ------------------------------------------
    def export(self, request: ExportRequest, *, blocking: bool = False) -> Job | list[Path] | None:
        """Write `request` for the edited mask; asks before replacing files. None if nothing/declined.

        With `blocking`, writes on the calling thread and returns the paths (used when closing).
        """
        context = self.context
        controller = context.editing
        if controller.session is None or context.volume is None:
            context.show_error("Nothing to export", "Segment the study (or edit a mask) first.")
            return None
        study = context.volume.study
        existing = [p for p in targets(study, request) if p.exists()]
        if existing and not request.overwrite:
            if not context.prompter.overwrite(existing[0]):
                return None
            request = dataclasses.replace(request, overwrite=True)
        session = controller.session
        labels, ai = session.snapshot(), session.ai
        version, base = controller.model_version, controller.base
        revision = session.revision
        saves_mask = request.nifti is not None or request.dicom_seg is not None

        def work(*, progress, cancel) -> list[Path]:
            prov = provenance(study, labels, ai, model_version=version, base=base)
            return export_all(study, labels, prov, request, progress=progress, cancel=cancel)

        def done(paths: list[Path]) -> None:
            self.last_paths = list(paths)
            if saves_mask and controller.session is session:
                controller.mark_saved(request.nifti or request.dicom_seg)  # type: ignore[arg-type]
                if session.revision != revision:  # painted on while it was written
                    controller.saved_revision = revision
            context.status(f"Exported {', '.join(p.name for p in paths)}", 8000)
            self.exported.emit(paths)

        if blocking:
            from brainseg_gui.core.progress import CancelToken, no_progress

            try:
                paths = work(progress=no_progress, cancel=CancelToken())
            except Exception as error:  # noqa: BLE001 - shown to the user, the close is cancelled
                context.show_error("Export failed", str(error))
                return None
            done(paths)
            return paths
        return context.runner.start("Exporting", work, on_result=done, failure="Export failed")

    def export_mask(self, path: Path | str, convention: LabelConvention | None = None, *,
                    overwrite: bool = False, blocking: bool = False) -> Job | list[Path] | None:
        """The corrected mask as NIfTI in `convention` (default: the one the labels are shown in)."""
        return self.export(ExportRequest(nifti=Path(path), convention=convention or self.context.state.convention,
                                         overwrite=overwrite), blocking=blocking)

    def export_dicom_seg(self, path: Path | str, *, overwrite: bool = False) -> Job | list[Path] | None:
        return self.export(ExportRequest(dicom_seg=Path(path), overwrite=overwrite))

    def export_meshes(self, folder: Path | str, fmt: str = "stl", space: str = "ras", *,
                      overwrite: bool = False) -> Job | list[Path] | None:
        return self.export(ExportRequest(meshes=Path(folder), mesh_format=fmt, mesh_space=space,
                                         overwrite=overwrite))

    def export_report(self, path: Path | str, *, overwrite: bool = False) -> Job | list[Path] | None:
        """The HTML report of the corrected mask, with the open study's measurements (as they are now)
        and key slices of the sequence on screen, drawn from the data as `brainseg export --report` does."""
        document = self.context.document
        segmentation = document.segmentation
        device = (segmentation.device if segmentation is not None
                  and segmentation.model_version == document.editing.model_version else None)
        return self.export(ExportRequest(report=Path(path), convention=self.context.state.convention,
                                         measurements=document.measurements.snapshot(), model_device=device,
                                         sequence=self.context.state.sequence, overwrite=overwrite))

    # ---- dialogs --------------------------------------------------------------------------------
    def default_folder(self) -> Path:
        saved = self.context.settings.value("export/folder", "")
        if saved and Path(str(saved)).is_dir():
            return Path(str(saved))
        volume = self.context.volume
        if volume is not None and volume.study.sources:
            first = Path(next(iter(volume.study.sources.values())))
            return first.parent
        return Path.home()

    def ask_mask_path(self) -> Path | None:
        if self.context.volume is None:
            return None
        convention = self.context.state.convention
        suggestion = self.default_folder() / default_export_name(self.context.volume.study, convention)
        path, _ = QFileDialog.getSaveFileName(self.context.parent, "Export the corrected mask (NIfTI)", str(suggestion),
                                              NIFTI_FILTER, options=QFileDialog.Option.DontConfirmOverwrite)
        return self._remember(path)

    def ask_export_mask(self) -> None:
        path = self.ask_mask_path()
        if path is not None:
            self.export_mask(path)

    def ask_export_dicom_seg(self) -> None:
        if self.context.volume is None:
            return
        suggestion = self.default_folder().parent / f"{self.context.volume.study.case_id}_seg.dcm"
        path, _ = QFileDialog.getSaveFileName(self.context.parent, "Export DICOM-SEG", str(suggestion), "DICOM (*.dcm)",
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if (chosen := self._remember(path)) is not None:
            self.export_dicom_seg(chosen)

    def ask_export_meshes(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.context.parent, "Export region meshes into", str(self.default_folder()))
        if not folder:
            return
        fmt, ok = QInputDialog.getItem(self.context.parent, "Mesh format", "Format and coordinates",
                                       ["STL, RAS (scanner)", "STL, LPS (3D Slicer)", "OBJ, RAS", "OBJ, LPS"], 0, False)
        if ok:
            kind, space = (part.strip().split(" ")[0].lower() for part in fmt.split(","))
            self.export_meshes(folder, kind, space)

    def ask_export_report(self) -> None:
        if self.context.volume is None:
            return
        suggestion = self.default_folder() / f"{self.context.volume.study.case_id}_report.html"
        path, _ = QFileDialog.getSaveFileName(self.context.parent, "Export a report", str(suggestion), "HTML (*.html)",
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if (chosen := self._remember(path)) is not None:
            self.export_report(chosen)

    def _remember(self, path: str) -> Path | None:
        if not path:
            return None
        chosen = Path(path)
        self.context.settings.setValue("export/folder", str(chosen.parent))
        return chosen
