"""Every export of a corrected mask in one plain function, shared by the GUI (in a worker) and the
CLI (`brainseg export`, in `cli/export.py`): NIfTI and DICOM-SEG, each with its provenance sidecar,
region meshes, an overview PNG and the HTML report (core/report.py: drawn from the data, never a
picture of the window, so the GUI's report and the CLI's are the same page).

No Qt here (VTK only for meshes, imported when meshes are asked for), so the CLI stays headless.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainseg_gui.core.atomic import FileSet
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.export import Provenance, check_target, export_nifti
from brainseg_gui.core.image_io import sidecar_path
from brainseg_gui.core.labels import REGIONS, LabelConvention
from brainseg_gui.core.measurements import MeasurementSet
from brainseg_gui.core.orientation import Reorientation
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.core.study import Study

log = logging.getLogger(__name__)

#: The steps of an export, in the order they are written.
STEPS = ("nifti", "dicom_seg", "meshes", "png", "report")


@dataclass(frozen=True)
class ExportRequest:
    """What to write. Paths left None are not written. `convention` applies to the NIfTI and report.

    protect: files that must never be written (the mask files the labels came from), besides the
    study's own inputs, which are always protected. measurements: what the report lists (the open
    study's, or a file the Measure panel saved). model_device: what the model ran on, when known.
    sequence: the image under the PNG's and the report's key slices (None: T1ce, else another).
    """

    nifti: Path | None = None
    convention: LabelConvention = LabelConvention.BRATS
    dicom_seg: Path | None = None
    meshes: Path | None = None
    mesh_format: str = "stl"
    mesh_space: str = "ras"
    report: Path | None = None
    measurements: MeasurementSet | None = field(default=None, repr=False)
    model_device: str | None = None
    sequence: str | None = None
    png: Path | None = None
    overwrite: bool = False
    protect: tuple[Path, ...] = ()


def export_all(study: Study, labels: np.ndarray, prov: Provenance, request: ExportRequest, *,
               progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> list[Path]:
    """Write what `request` asks for; returns the files written. `labels`: BraTS, the study's grid.

    Every target is checked before anything is written (inputs, existing files, folders, whether
    a DICOM-SEG has a series to reference, whether the measurements belong to this study), so a
    refused export writes nothing.
    """
    cancel = cancel or CancelToken()
    planned = targets(study, request)
    resolved = [p.expanduser().resolve() for p in planned]
    clash = {p for p in resolved if resolved.count(p) > 1}
    if clash:
        raise BrainSegError(f"two exports would write the same file {min(clash)}: give them different names")
    for target in planned:
        check_target(target, study, overwrite=request.overwrite, protect=request.protect)
    if request.dicom_seg is not None:
        from brainseg_gui.core.dicom_seg import dicom_series_folder

        if dicom_series_folder(study) is None:
            raise BrainSegError(f"study {study.case_id!r} was not read from a DICOM series, so there is "
                                "nothing for a DICOM-SEG to reference; export NIfTI instead")
    if request.report is not None and request.measurements is not None:
        reorient = Reorientation(study.grid)
        request.measurements.check_grid(reorient.shape, reorient.affine)
    written: list[Path] = []
    steps = [name for name in STEPS if getattr(request, name) is not None]
    with FileSet() as files:  # all of the export, or none of it
        for number, step in enumerate(steps):
            cancel.raise_if_cancelled()
            progress(number / max(len(steps), 1), f"Writing the {step.replace('_', '-')}")
            written += _write_step(step, study, labels, prov, request, files, cancel)
    progress(1.0, f"Exported {len(written)} file{'s' if len(written) != 1 else ''}")
    return written


def _write_step(step: str, study: Study, labels: np.ndarray, prov: Provenance, request: ExportRequest,
                files: FileSet, cancel: CancelToken) -> list[Path]:
    """Stage one step's files into the export's set."""
    if step == "nifti":
        assert request.nifti is not None
        return [export_nifti(request.nifti, labels, study, prov, convention=request.convention,
                             overwrite=request.overwrite, protect=request.protect, files=files),
                sidecar_path(request.nifti)]
    if step == "dicom_seg":
        from brainseg_gui.core.dicom_seg import SEGMENT_NUMBERS, write_dicom_seg

        assert request.dicom_seg is not None
        sidecar = {**prov.to_dict(), "dicom_seg_segments": dict(SEGMENT_NUMBERS)}
        return [write_dicom_seg(request.dicom_seg, labels, study, prov, overwrite=request.overwrite, files=files),
                files.add(dicom_sidecar_path(request.dicom_seg), json.dumps(sidecar, indent=2) + "\n")]
    if step == "meshes":
        from brainseg_gui.app.mesh_export import export_meshes

        assert request.meshes is not None
        return export_meshes(request.meshes, labels, study.grid, prefix=study.case_id, fmt=request.mesh_format,
                             space=request.mesh_space, overwrite=request.overwrite, cancel=cancel, files=files)
    from brainseg_gui.core.report import overview_png, report_html

    if step == "png":
        assert request.png is not None
        return [files.add(request.png, overview_png(study, labels, request.sequence))]
    assert request.report is not None
    page = report_html(study, labels, prov, request.convention, measurements=request.measurements,
                       device=request.model_device, sequence=request.sequence)
    return [files.add(request.report, page)]


def targets(study: Study, request: ExportRequest) -> list[Path]:
    """Every file the request would write (meshes: one per region; empty regions are skipped later)."""
    out = [p for p in (request.nifti, request.dicom_seg, request.png, request.report) if p is not None]
    if request.nifti is not None:
        out.append(sidecar_path(request.nifti))
    if request.dicom_seg is not None:
        out.append(dicom_sidecar_path(request.dicom_seg))
    if request.meshes is not None:
        out += [Path(request.meshes) / f"{study.case_id}_{region}.{request.mesh_format}" for region in REGIONS]
    return out


def dicom_sidecar_path(path: Path) -> Path:
    """The provenance sidecar of a DICOM-SEG: 'X.dcm' -> 'X.dcm.json' (so it never meets X.nii.gz's X.json)."""
    return Path(path).with_name(Path(path).name + ".json")
