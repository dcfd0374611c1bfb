"""Segmenting a study that is not BraTS-ready: prepare it, segment the prepared case, map back.

Scanner studies (DICOM, sequences on their own grids, skull on) are prepared in a temporary folder
(`core.prepare.prepare_study`: co-registration to the reference, resampling, skull stripping),
segmented there, and the labels are mapped back onto one original sequence's grid by the inverse
rigid transform (nearest neighbour). `brainseg predict --prepare` and a cohort's not-ready members
both come here, so they write the same thing: the label map on the original grid, a sidecar that
records the preparation, and optionally a report; together, or none of them.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui.core.atomic import FileSet, write_into
from brainseg_gui.core.case_files import CaseFiles
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.image_io import read_image, read_sidecar, save_label_map
from brainseg_gui.core.labels import LabelConvention, parse_convention
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress, sub_progress
from brainseg_gui.core.study import Grid
from brainseg_gui.ml.predict import CaseSummary, predict_case
from brainseg_gui.ml.prediction import Segmenter


@dataclass(frozen=True)
class PreparedPrediction:
    """What `predict_prepared_case` wrote and found: the summary, the mapped labels and their grid."""

    summary: CaseSummary
    labels: np.ndarray
    grid: Grid
    target: str
    record: Any
    sidecar: Mapping[str, Any]


#: Extra results written before the label map (e.g. a DICOM-SEG and SR); returns what the sidecar
#: records of them and the files it wrote, which are removed again if the label map then fails.
BeforeWrite = Callable[[np.ndarray, Grid, str, CaseSummary], tuple[dict[str, Any], list[Path]]]


def predict_prepared_case(
    case: CaseFiles,
    output: Path,
    *,
    predictor: Segmenter,
    labels: LabelConvention | str = LabelConvention.BRATS,
    prepare_settings: Mapping[str, Any] | None = None,
    map_to: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    report: Path | None = None,
    before_write: BeforeWrite | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> PreparedPrediction:
    """Prepare `case`, segment it and write the labels on `map_to`'s original grid (default: the reference's).

    `prepare_settings` are `prepare_study`'s keywords (reference, resolution_mm, skull_strip,
    brain_params). Raises BrainSegError for a study that cannot be prepared or a `map_to` it lacks.
    """
    from brainseg_gui.core.prepare import prepare_study
    from brainseg_gui.core.prepared_space import map_to_original
    from brainseg_gui.core.report import prediction_report_html

    convention = parse_convention(labels)
    protect = [Path(p) for p in case.files.values()]
    with tempfile.TemporaryDirectory(prefix="brainseg-prepare-") as folder:
        work = Path(folder)
        prepared = prepare_study(case, work / "prepared", progress=sub_progress(progress, 0.0, 0.6),
                                 cancel=cancel, **dict(prepare_settings or {}))
        target = map_to or prepared.record.reference
        if target not in prepared.record.sequences:
            raise BrainSegError(f"the study has no {target} to map the labels onto (it has "
                                f"{', '.join(prepared.record.sequences)})")
        summary = predict_case(prepared.out_dir, work / "pred.nii.gz", predictor=predictor, labels=convention,
                               progress=sub_progress(progress, 0.6, 0.95), cancel=cancel)
        segmented, _ = read_image(work / "pred.nii.gz")
        mapped, grid = map_to_original(segmented.astype(np.uint8), prepared.record, target)
        sidecar = read_sidecar(work / "pred.nii.gz")
    sidecar["inputs"] = {name: str(path) for name, path in case.files.items()}
    sidecar["prepared"] = {"mapped_to": target, "source": str(prepared.record.sequences[target].source),
                           "note": "segmented in prepared space, mapped back by the inverse rigid transform "
                                   "(nearest neighbour)", "record": dict(prepared.record.data)}
    if provenance is not None:
        sidecar["provenance"] = dict(provenance)
    written: list[Path] = []
    if before_write is not None:
        extra, written = before_write(mapped, grid, target, summary)
        sidecar.update(extra)
    progress(0.97, f"writing {output}")
    try:
        with FileSet() as files:
            save_label_map(output, mapped, grid, description=f"BrainSeg {summary.model_version} ({target} grid)",
                           sidecar=sidecar, protect=protect, files=files)
            if report is not None:
                study = _study_on(grid, case, target)
                brats = LabelConvention.BRATS
                page = prediction_report_html(study, _as_brats(mapped, convention, brats), sidecar, Path(output))
                write_into(files, Path(report), page.encode("utf-8"))
    except BaseException:
        for path in written:
            Path(path).unlink(missing_ok=True)
        raise
    summary = dataclasses.replace(summary, output=Path(output))
    progress(1.0, f"{case.case_id}: written {output}")
    return PreparedPrediction(summary, mapped, grid, target, prepared.record, sidecar)


def _as_brats(labels: np.ndarray, convention: LabelConvention, brats: LabelConvention) -> np.ndarray:
    from brainseg_gui.core.labels import from_regions, to_regions

    return labels if convention == brats else from_regions(to_regions(labels, convention), brats)


def _study_on(grid: Grid, case: CaseFiles, target: str) -> Any:
    """The original `target` image as a one-sequence Study on `grid`, for the report's pictures."""
    from brainseg_gui.core.study import Study

    image, _ = read_image(Path(case.files[target]))
    return Study(case_id=case.case_id, images={target: np.asarray(image, dtype=np.float32)}, grid=grid)
