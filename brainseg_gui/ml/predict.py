"""Predicting one case from files to files (`predict_case`; a folder of cases is a cohort: ml/cohort.py).

What is written: a label map in the chosen convention on the exact input grid and affine (NIfTI,
atomic, never over an input file), its header description "BrainSeg <model version>", and a JSON
sidecar saying which model, device and inputs made it, what was missing, the region volumes and the
time taken. Optionally the three region probabilities as one 4D NIfTI (uint8, scl_slope 1/255).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui.core.atomic import FileSet, write_into
from brainseg_gui.core.cases import CaseFiles, parse_brats_name
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.image_io import IMAGE_SUFFIXES, NIFTI_SUFFIXES, image_suffix, sidecar_path
from brainseg_gui.core.io import find_case, load_study, save_label_map
from brainseg_gui.core.labels import REGIONS, LabelConvention, parse_convention
from brainseg_gui.core.nib import nib
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress, sub_progress
from brainseg_gui.core.report import prediction_report_html
from brainseg_gui.core.study import Grid, Study
from brainseg_gui.ml.prediction import Prediction, Segmenter

log = logging.getLogger(__name__)

#: Batch output names: `<case_id><suffix>` in the output folder.
PREDICTION_SUFFIX = "_pred.nii.gz"
PROBABILITIES_SUFFIX = "_prob.nii.gz"
#: Probabilities are stored as uint8 steps of 1/PROBABILITY_STEPS (NIfTI has no float16).
PROBABILITY_STEPS = 255
#: Written into every sidecar: what the output is and is not.
DISCLAIMER = "research software; not a diagnostic device"


@dataclass(frozen=True)
class CaseSummary:
    """The outcome of one case: where it went, region volumes, time, device; or why it failed."""

    case_id: str
    source: Path
    output: Path | None = None
    volumes_ml: Mapping[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = ""
    model_version: str = ""
    flagged: bool = False
    flag_reason: str = ""
    notes: tuple[str, ...] = ()
    error: str = ""
    missing: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.error

    def line(self) -> str:
        """One line for a terminal: case, WT/TC/ET volumes in mL, seconds, device (or the error)."""
        if not self.ok:
            return f"{self.case_id}: FAILED: {self.error}"
        volumes = "  ".join(f"{name} {self.volumes_ml.get(name, 0.0):7.2f} mL" for name in REGIONS)
        text = f"{self.case_id}: {volumes}  {self.seconds:6.1f} s  {self.device}"
        if self.flagged:
            text += f"  FLAGGED: {self.flag_reason}"
        return text


def predict_case(
    source: Path | CaseFiles,
    output: Path,
    *,
    predictor: Segmenter,
    labels: LabelConvention | str = LabelConvention.BRATS,
    save_probabilities: Path | None = None,
    allow_resample: bool = False,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    provenance: Mapping[str, Any] | None = None,
    report: Path | None = None,
    study: Study | None = None,
) -> CaseSummary:
    """Load the case at `source`, segment it, write the label map to `output` (and its sidecar).

    `source` is a case folder, any file of a case, or a found `CaseFiles` (its label map, if any, is
    not read: a prediction does not need it, but it is protected from being overwritten). With
    `allow_resample`, sequences on different grids that overlap in world space are resampled onto the
    FLAIR grid (core.io.load_study), and the output lies on that grid. `output` is a .nii.gz / .nii
    file, or an existing folder (then `<case_id>_pred.nii.gz` inside).
    `provenance` goes into the sidecar as it is (a cohort's record of what made the output);
    `report` names a one-page HTML summary with views of the mask, written with the same set.
    `study` is the case already loaded (without its labels), when the caller read it to check it.
    Raises BrainSegError subclasses for bad input, Cancelled when cancelled; writes nothing then.
    """
    started = time.perf_counter()
    convention = parse_convention(labels)
    cancel = cancel or CancelToken()
    case = source if isinstance(source, CaseFiles) else find_case(Path(source))
    origin = _case_source(case)
    if study is None:
        study = load_study(dataclasses.replace(case, seg=None), allow_resample=allow_resample,
                           progress=sub_progress(progress, 0.0, 0.1), cancel=cancel)
    loaded = time.perf_counter()
    cancel.raise_if_cancelled()
    output = _output_path(Path(output), study.case_id)
    protect = [*study.sources.values(), *([case.seg] if case.seg is not None else [])]
    if not isinstance(source, CaseFiles):
        protect.append(Path(source))
    _check_targets(output, save_probabilities, protect, report=report)
    _refuse_changing_the_case([output, *(Path(p) for p in (save_probabilities, report) if p is not None)], case)

    prediction = predictor(study, progress=sub_progress(progress, 0.1, 0.9), cancel=cancel,
                           keep_probabilities=save_probabilities is not None)
    cancel.raise_if_cancelled()
    progress(0.9, f"writing {output}")
    seconds = {"load": round(loaded - started, 3), **prediction.seconds}  # the write's own time is not known yet
    sidecar = prediction_sidecar(study, prediction, convention, probabilities=save_probabilities)
    sidecar["seconds"] = seconds
    if provenance is not None:
        sidecar["provenance"] = dict(provenance)
    labels_out = prediction.labels(convention)
    with FileSet() as files:  # mask, sidecar and probabilities together, or none of them
        if save_probabilities is not None and prediction.probabilities is not None:
            write_probabilities(Path(save_probabilities), prediction.probabilities, study.grid,
                                description=f"BrainSeg {prediction.model_version} P(WT,TC,ET)", protect=protect,
                                files=files)
        save_label_map(output, labels_out, study.grid,
                       description=f"BrainSeg {prediction.model_version}", sidecar=sidecar, protect=protect,
                       files=files)
        if report is not None:
            brats = labels_out if convention is LabelConvention.BRATS else prediction.labels(LabelConvention.BRATS)
            page = prediction_report_html(study, brats, sidecar, output)
            write_into(files, Path(report), page.encode("utf-8"))
    total = time.perf_counter() - started
    progress(1.0, f"{study.case_id}: written {output}")
    summary = CaseSummary(
        case_id=study.case_id, source=origin, output=output, volumes_ml=prediction.volumes_ml(),
        seconds=total, device=prediction.device, model_version=prediction.model_version,
        flagged=prediction.flagged, flag_reason=prediction.flag_reason, notes=prediction.notes,
        missing=prediction.missing,
    )
    log.info("%s", summary.line())
    return summary


def _case_source(case: CaseFiles) -> Path:
    """The path that names a found case in summaries: its first sequence file (or its label map)."""
    files = [*case.files.values(), case.seg]
    return next((Path(p) for p in files if p is not None), Path(case.case_id))


def prediction_sidecar(
    study: Study, prediction: Prediction, convention: LabelConvention, *, probabilities: Path | None = None
) -> dict[str, Any]:
    """The JSON sidecar of a written prediction (JSON-ready values only)."""
    return {
        "software": "BrainSeg",
        "note": DISCLAIMER,
        "case_id": study.case_id,
        "model_version": prediction.model_version,
        "device": prediction.device,
        "tta": prediction.tta,
        "label_convention": convention.value,
        "label_values": {tissue: value for tissue, value in convention.tissue_values.items()},
        "regions": list(REGIONS),
        "volumes_ml": {name: round(value, 3) for name, value in prediction.volumes_ml().items()},
        "missing_sequences": list(prediction.missing),
        "flagged": prediction.flagged,
        "flag_reason": prediction.flag_reason,
        "notes": list(prediction.notes),
        "inputs": {name: str(path) for name, path in study.sources.items()},
        "grid": study.grid.describe(),
        "probabilities": str(probabilities) if probabilities is not None else None,
        "seconds": dict(prediction.seconds),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_probabilities(
    path: Path, probabilities: np.ndarray, grid: Grid, *, description: str = "", protect: Iterable[Path] = (),
    files: FileSet | None = None,
) -> None:
    """Write (3, *grid.shape) probabilities as one NIfTI of shape (*grid.shape, 3), all-or-nothing (or into `files`).

    NIfTI has no float16, so values are stored as uint8 with scl_slope 1/255 (steps of 0.004):
    readers that apply the slope (nibabel's get_fdata, ITK, 3D Slicer) see probabilities in [0, 1].
    """
    path = Path(path)
    if image_suffix(path) not in NIFTI_SUFFIXES:
        raise BrainSegError(f"cannot write {path}: probabilities are written as NIfTI (.nii.gz or .nii)")
    if probabilities.shape != (3, *grid.shape):
        raise BrainSegError(f"cannot write {path}: probabilities {probabilities.shape} do not fit {grid.shape}")
    _refuse_inputs([path], protect)
    if not path.parent.is_dir():
        raise BrainSegError(f"cannot write {path}: the folder {path.parent} does not exist")
    scaled = np.rint(np.clip(probabilities.astype(np.float32), 0.0, 1.0) * PROBABILITY_STEPS).astype(np.uint8)
    image = nib.Nifti1Image(np.moveaxis(scaled, 0, -1), grid.affine)
    image.set_qform(grid.affine, code=1)
    image.set_sform(grid.affine, code=1)
    image.header.set_data_dtype(np.uint8)
    image.header.set_slope_inter(1.0 / PROBABILITY_STEPS, 0.0)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = description.encode("utf-8")[:80]
    try:
        write_into(files, path, lambda temporary: nib.save(image, temporary))
    except (ValueError, TypeError, RuntimeError) as error:
        raise BrainSegError(f"cannot write {path}: {error}") from error


def _output_path(output: Path, case_id: str) -> Path:
    if output.is_dir():
        return output / f"{case_id}{PREDICTION_SUFFIX}"
    if image_suffix(output) not in NIFTI_SUFFIXES:
        raise BrainSegError(f"output {output} must end in .nii.gz or .nii (or be an existing folder)")
    if not output.parent.is_dir():
        raise BrainSegError(f"cannot write {output}: the folder {output.parent} does not exist")
    return output


def _check_targets(output: Path, probabilities: Path | None, protect: list[Path], *,
                   report: Path | None = None) -> None:
    """Refuse before any work when an output would replace an input or another output."""
    targets = [output, sidecar_path(output), *([Path(report)] if report is not None else [])]
    if probabilities is not None:
        probabilities = Path(probabilities)
        if image_suffix(probabilities) not in NIFTI_SUFFIXES:
            raise BrainSegError(f"probabilities {probabilities} must end in .nii.gz or .nii")
        if _identity(probabilities) in {_identity(t) for t in targets}:
            raise BrainSegError(f"probabilities {probabilities} would replace the label map or its sidecar")
        targets.append(probabilities)
    _refuse_inputs(targets, protect)


def _refuse_changing_the_case(targets: Iterable[Path], case: CaseFiles) -> None:
    """Refuse an output in the case's own folder that the case would be read with next time.

    A `P_seg.nii.gz` written beside P_flair.nii.gz becomes the case's ground truth, a `P_t2.nii.gz`
    its T2, and any image beside loose, unnamed images makes the folder a different case.
    """
    folders = {_identity(Path(p)).parent for p in (*case.files.values(), *([case.seg] if case.seg else []))}
    for target in targets:
        if _identity(target).parent not in folders or image_suffix(target) not in IMAGE_SUFFIXES:
            continue
        named = parse_brats_name(target)
        if named is not None or case.layout in ("files", "msd"):
            role = f" as its {named.role}" if named is not None else ""
            raise BrainSegError(f"refusing to write {target}: it would become part of the case{role} the next "
                                "time the folder is opened; write it elsewhere or under another name")


def _refuse_inputs(targets: Iterable[Path], protect: Iterable[Path]) -> None:
    protected = {_identity(Path(p)) for p in protect}
    for target in targets:
        if _identity(target) in protected:
            raise BrainSegError(f"refusing to overwrite {target}: it is one of the input files")


def _identity(path: Path) -> Path:
    return Path(path).expanduser().resolve()
