"""Bring a study straight from the scanner to what the model was trained on (BraTS-ready).

`prepare_study` co-registers every sequence rigidly to the reference (T1ce by default,
`core/registration.py`), resamples all of them onto one `resolution_mm` isotropic LPS grid over
the reference's field of view (`core/prepared_space.py`), extracts the brain
(`core/brain_extraction.py`), and writes the prepared case in BraTS naming: `<id>_t1.nii.gz`,
`_t1ce`, `_t2`, `_flair` (zero outside the brain), `<id>_brainmask.nii.gz`, and last
`<id>_prepare.json`, the record of every transform, source, setting and timing. Each file is
written atomically. `apply_brain_mask` rewrites a prepared case with another brain mask (the
user's corrected one), `map_to_original` takes a mask predicted in prepared space back onto an
original grid.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui import __version__
from brainseg_gui.core.atomic import FileSet
from brainseg_gui.core.brain_extraction import METHOD, BrainExtractionParams, extract_brain
from brainseg_gui.core.cases import CaseFiles, find_case
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.image_io import write_image
from brainseg_gui.core.morphology import fill_holes
from brainseg_gui.core.output_folder import OutputFolder
from brainseg_gui.core.prepared_space import (
    PREPARED_AXCODES,
    RECORD_FORMAT,
    RECORD_VERSION,
    PrepareRecord,
    as_record,
    grid_from_dict,
    grid_to_dict,
    map_to_original,
    prepared_grid,
    resample_through,
)
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress, sub_progress
from brainseg_gui.core.readiness import MAX_BRAIN_ML, MAX_SLICE_MM, grid_problems, read_sequences, skull_check
from brainseg_gui.core.registration import IDENTITY, RegistrationSettings, RigidTransform, register_rigid
from brainseg_gui.core.study import SEQUENCES, Grid, Study

log = logging.getLogger(__name__)

__all__ = ["PreparedStudy", "apply_brain_mask", "brain_sequence", "map_to_original", "prepare_study",
           "resample_prepared"]

#: Which sequence the brain is extracted from, in order of preference (T1-like first).
BRAIN_SEQUENCES = ("t1", "t1ce", "flair", "t2")
#: Reference used when the requested one is missing, in order of preference.
REFERENCE_FALLBACK = ("t1ce", "t1", "flair", "t2")
MASK_NAME = "brainmask"
#: The ground truth of a prepared case, when the study had one: `<case>_seg.nii.gz`, as BraTS names it.
TRUTH_NAME = "seg"
#: An extracted brain smaller than this (mL) is suspect (adults ~1000-1900 mL, infants less).
MIN_BRAIN_ML = 600.0


@dataclass(frozen=True)
class PreparedStudy:
    """What `prepare_study` wrote: file per sequence, the brain mask, the record (parsed and path).

    `images` (unmasked, prepared grid) and `brain` are filled only with `keep_images=True`, for
    a viewer that shows the mask over the head for the user to check.
    """

    case_id: str
    out_dir: Path
    files: Mapping[str, Path]
    brain_mask: Path
    record_path: Path
    record: PrepareRecord
    images: Mapping[str, np.ndarray] = field(default_factory=dict)
    brain: np.ndarray | None = None

    @property
    def grid(self) -> Grid:
        return self.record.grid

    @property
    def missing(self) -> tuple[str, ...]:
        return self.record.missing


def prepare_study(
    source: Path | str | CaseFiles | Study | None,
    out_dir: Path | str,
    *,
    files: Mapping[str, Path] | None = None,
    reference: str = "t1ce",
    resolution_mm: float = 1.0,
    skull_strip: bool = True,
    brain_params: BrainExtractionParams | Mapping[str, Any] | None = None,
    registration: RegistrationSettings | None = None,
    case_id: str | None = None,
    keep_images: bool = False,
    truth_file: Path | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    output: OutputFolder | None = None,
) -> PreparedStudy:
    """Register, resample, skull-strip and write a raw study as a BraTS-ready case in `out_dir`.

    `source`: a case folder or file, a CaseFiles, or a loaded Study; `files` ({sequence: path},
    e.g. one DICOM folder per sequence) adds to or replaces its sequences; the study's ground truth
    (or `truth_file`) is carried onto the prepared grid as `<case>_seg.nii.gz`, so it can be scored. Sequences missing from
    the study are reported in the record and the log, and the rest is prepared. With
    `skull_strip=False`, or when the study is already skull-stripped, the brain mask is the
    non-zero region. Raises StudyLoadError for unreadable input, RegistrationError for a failed
    registration, BrainSegError for bad settings; Cancelled if cancelled (nothing half-written
    is left: the record is written last). `out_dir` is created only when the files are written;
    `output` (`out_dir` claimed by `brainseg prepare`) records them first and refuses to replace a
    file it did not write.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(out_dir)
    settings = registration or RegistrationSettings()
    if reference not in SEQUENCES:
        raise BrainSegError(f"unknown reference sequence {reference!r}; expected one of {SEQUENCES}")
    brain_settings = brain_params if isinstance(brain_params, BrainExtractionParams) else \
        BrainExtractionParams.from_dict(dict(brain_params or {}))  # bad settings fail before any work

    progress(0.0, "reading the study")
    name_of_case, sources, volumes, seg = _read(source, files)
    truth = _read_truth(source, seg) if truth_file is None else _read_labels(Path(truth_file))
    case_id = case_id or name_of_case
    _check(cancel)
    timings["read"] = time.perf_counter() - started
    present = [name for name in SEQUENCES if name in volumes]
    missing = [name for name in SEQUENCES if name not in volumes]
    if output is not None:  # a file of the user's with a name written below refuses before the work
        output.refuse_foreign(*_output_names(out, case_id, present, truth=truth is not None))
    warnings: list[str] = []
    if missing:
        warnings.append(f"missing sequences: {', '.join(missing)} (prepared what is there: {', '.join(present)})")
    chosen = reference if reference in volumes else next(n for n in REFERENCE_FALLBACK if n in volumes)
    if chosen != reference:
        warnings.append(f"reference {reference} is missing; registered to {chosen} instead")
    grids = {name: grid for name, (_, grid) in volumes.items()}
    readiness_problems = grid_problems(grids)

    # 1. registration (10% .. 60%)
    transforms: dict[str, RigidTransform] = {chosen: IDENTITY}
    fixed, fixed_grid = volumes[chosen]
    others = [name for name in present if name != chosen]
    for index, name in enumerate(others):
        _check(cancel)
        report = sub_progress(progress, 0.1 + 0.5 * index / len(others), 0.1 + 0.5 * (index + 1) / len(others))
        report(0.0, f"registering {name} to {chosen}")
        moving, moving_grid = volumes[name]
        transforms[name] = register_rigid(fixed, fixed_grid, moving, moving_grid, settings=settings,
                                          progress=report, cancel=cancel)
        timings[f"register_{name}"] = transforms[name].seconds

    # 2. resampling onto the prepared grid (60% .. 75%)
    target = prepared_grid(fixed_grid, resolution_mm)
    tick = time.perf_counter()
    images: dict[str, np.ndarray] = {}
    for index, name in enumerate(present):
        _check(cancel)
        progress(0.6 + 0.15 * index / len(present), f"resampling {name} to {resolution_mm:g} mm {''.join(PREPARED_AXCODES)}")
        array, grid = volumes[name]
        images[name] = resample_through(array, grid, target, transforms[name].matrix)
    del volumes
    truth_prepared, truth_record = _truth_onto(truth, grids, chosen, transforms, target, warnings)
    timings["resample"] = time.perf_counter() - tick

    # 3. brain extraction (75% .. 90%)
    _check(cancel)
    progress(0.75, "extracting the brain")
    tick = time.perf_counter()
    brain, extraction = _brain(images, target, skull_strip, brain_settings, grids, cancel)
    timings["brain_extraction"] = time.perf_counter() - tick
    volume = float(brain.sum()) * target.voxel_volume_ml
    if extraction["method"] == METHOD and not MIN_BRAIN_ML <= volume <= MAX_BRAIN_ML:
        warnings.append(f"the extracted brain is {volume:.0f} mL, {'more' if volume > MAX_BRAIN_ML else 'less'} "
                        f"than a brain ({MIN_BRAIN_ML:.0f}-{MAX_BRAIN_ML:.0f} mL): check the brain mask, and "
                        f"redo it with a {'higher' if volume > MAX_BRAIN_ML else 'lower'} fractional threshold "
                        "(--fractional-threshold, default 0.5) or adjust it by hand")
    _check(cancel)

    # 4. writing (90% .. 100%)
    progress(0.9, f"writing {case_id} to {out}")
    record = {
        "format": RECORD_FORMAT, "version": RECORD_VERSION, "case_id": case_id,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "brainseg_version": __version__,
        "reference": chosen, "reference_requested": reference,
        "resolution_mm": float(resolution_mm), "orientation": "".join(PREPARED_AXCODES),
        "prepared_grid": grid_to_dict(target),
        "transform_convention": ("matrix: 4x4, RAS mm, maps a point of prepared space (the reference's "
                                 "world) to the same anatomy in the sequence's original world; rotation_deg "
                                 "about R, A, S applied in that order around centre_mm, translation_mm moves "
                                 "the centre"),
        "sequences": {name: {"source": str(sources[name]), "original_grid": grid_to_dict(grids[name]),
                             "transform": transforms[name].as_dict(),
                             "registered": name != chosen, "file": _file_name(case_id, name)}
                      for name in present},
        "missing": missing,
        "registration": settings.as_dict(),
        "readiness_before": readiness_problems,
        "warnings": warnings,
        **({"truth": {**truth_record, "file": _file_name(case_id, TRUTH_NAME)}} if truth_record else {}),
    }
    protect = [*sources.values(), *([truth[2]] if truth is not None else [])]
    prepared = _write(out, case_id, images, brain, record, extraction, protect=protect, timings=timings,
                      started=started, output=output, truth=truth_prepared)
    for warning in warnings:
        log.warning("%s: %s", case_id, warning)
    progress(1.0, f"prepared {case_id}")
    if keep_images:
        prepared = PreparedStudy(prepared.case_id, prepared.out_dir, prepared.files, prepared.brain_mask,
                                 prepared.record_path, prepared.record, images, brain)
    return prepared


def apply_brain_mask(
    record: PrepareRecord | Path | str | PreparedStudy,
    mask: np.ndarray,
    *,
    method: str = "edited by the user",
    params: Mapping[str, Any] | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> PreparedStudy:
    """Rewrite a prepared case with another brain mask (e.g. the user's corrected one).

    The images are resampled again from the original sources through the recorded transforms
    (nothing outside the old mask was kept), masked with `mask`, and written with the record.
    """
    parsed = as_record(record)
    if parsed.path is None:
        raise BrainSegError("apply_brain_mask needs a record read from its folder (a path or PreparedStudy)")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != parsed.grid.shape:
        raise BrainSegError(f"the brain mask has shape {mask.shape}, the prepared grid is {parsed.grid.shape}")
    started = time.perf_counter()
    images = resample_prepared(parsed, progress=sub_progress(progress, 0.0, 0.8), cancel=cancel)
    data = {k: v for k, v in parsed.data.items() if k not in ("brain_extraction", "files", "timings_s")}
    extraction = {"method": method, "params": dict(params or {}), "sequence": None}
    progress(0.8, "writing")
    sources = [entry.source for entry in parsed.sequences.values()]
    timings = {"resample": time.perf_counter() - started}
    result = _write(parsed.path.parent, parsed.case_id, images, mask, data, extraction, protect=sources,
                    timings=timings, started=started)
    progress(1.0, "brain mask applied")
    return result


def resample_prepared(record: PrepareRecord | Path | str | PreparedStudy, sequences: tuple[str, ...] | None = None,
                      *, progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> dict[str, np.ndarray]:
    """The prepared sequences again from their sources, unmasked (what the brain mask is drawn over)."""
    parsed = as_record(record)
    names = [name for name in (sequences or SEQUENCES) if name in parsed.sequences]
    out: dict[str, np.ndarray] = {}
    for index, name in enumerate(names):
        _check(cancel)
        progress(index / max(len(names), 1), f"resampling {name}")
        entry = parsed.sequences[name]
        case = CaseFiles(case_id=parsed.case_id, layout="files", files={name: entry.source})
        array, grid = read_sequences(case)[name]
        if not grid.same_as(entry.original_grid):
            raise BrainSegError(f"{entry.source} is no longer on the grid it was prepared from "
                                f"({grid.describe()}, recorded {entry.original_grid.describe()})")
        out[name] = resample_through(array, grid, parsed.grid, entry.matrix)
    return out


# -- steps ---------------------------------------------------------------------------------------


def _check(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()


def _read(source: Path | str | CaseFiles | Study | None, files: Mapping[str, Path] | None
          ) -> tuple[str, dict[str, Path], dict[str, tuple[np.ndarray, Grid]], Path | None]:
    """(case id, source per sequence, (float32 array, grid) per sequence on its own grid, the case's
    label map file or None)."""
    if isinstance(source, Study):
        volumes = {name: (np.asarray(image, dtype=np.float32), source.grid) for name, image in source.images.items()}
        sources = {name: Path(source.sources.get(name, f"<{source.case_id} {name}>")) for name in volumes}
        case_id = source.case_id
        extra = CaseFiles(case_id, "files", dict(files)) if files else None
        seg = None
    else:
        if source is None and not files:
            raise BrainSegError("nothing to prepare: give a study folder or file, or the sequence files")
        if source is None:
            first = Path(next(iter(files.values())))  # type: ignore[union-attr]
            case = CaseFiles(case_id=first.name.split(".")[0], layout="files", files={})
        else:
            case = source if isinstance(source, CaseFiles) else find_case(Path(source))
        merged = {**case.files, **{name: Path(path) for name, path in (files or {}).items()}}
        case = CaseFiles(case.case_id, case.layout, merged, case.seg, case.msd_image)
        volumes, sources, case_id, extra = {}, dict(case.files), case.case_id, case
        seg = case.seg
    if extra is not None:
        for name, (array, grid) in read_sequences(extra).items():
            volumes[name] = (np.asarray(array, dtype=np.float32), grid)
            sources[name] = extra.files[name]
    for name, (array, grid) in volumes.items():
        if array.ndim != 3:
            raise BrainSegError(f"{sources[name]}: {name} must be a 3D volume, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            volumes[name] = (np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0), grid)
    if not volumes:
        raise BrainSegError(f"case {case_id!r} has no image to prepare")
    return case_id, sources, volumes, Path(seg) if seg is not None else None


def brain_sequence(original_grids: Mapping[str, Grid]) -> str:
    """The sequence to extract the brain from: T1-like first, but thin slices before thick ones.

    A thick-slice acquisition blurs the dark gap under the skull along its slices, where the
    surface then leaks into the scalp; a thin-slice one (often the 3D T1) keeps it.
    """
    names = [name for name in BRAIN_SEQUENCES if name in original_grids]
    if not names:
        raise BrainSegError(f"no sequence to extract the brain from (have {sorted(original_grids)})")
    thin = [name for name in names if max(original_grids[name].spacing) <= MAX_SLICE_MM]
    return thin[0] if thin else min(names, key=lambda name: max(original_grids[name].spacing))


def _brain(images: Mapping[str, np.ndarray], grid: Grid, skull_strip: bool,
           settings: BrainExtractionParams,
           original_grids: Mapping[str, Grid],
           cancel: CancelToken | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The brain mask on the prepared grid, and how it was made (for the record)."""

    nonzero = np.zeros(grid.shape, dtype=bool)
    for image in images.values():
        nonzero |= image > 0
    sequence = brain_sequence({name: original_grids[name] for name in images})
    if not skull_strip:
        return fill_holes(nonzero), {
            "method": "none (skull stripping off): the non-zero region", "sequence": None, "params": {}}
    check = skull_check(images[sequence], grid)
    if check.stripped:
        # The non-zero region of the thin sequence alone: thick slices interpolated onto 1 mm smear a rim
        # of faint values past the brain's edge, and the union with them grew the brain by ~15 %.
        log.info("%s looks skull-stripped already (%s): brain mask = its non-zero region", sequence, check.evidence())
        return fill_holes(images[sequence] > 0), {
            "method": "already skull-stripped: the non-zero region", "sequence": sequence, "params": {},
            "skull_check": check.evidence()}
    mask = extract_brain(images[sequence], grid, cancel=cancel, **settings.as_dict())
    return mask, {"method": METHOD, "sequence": sequence, "params": settings.as_dict(),
                  "skull_check": check.evidence()}


def _file_name(case_id: str, name: str) -> str:
    return f"{case_id}_{name}.nii.gz"


def _output_names(out: Path, case_id: str, sequences: Iterable[str], *, truth: bool = False) -> list[Path]:
    """The files a prepare writes: one per sequence, the brain mask, the truth if any, and last the record."""
    names = (*sequences, MASK_NAME, *([TRUTH_NAME] if truth else []))
    return [*(out / _file_name(case_id, name) for name in names), out / f"{case_id}_prepare.json"]


def _read_truth(source: Path | str | CaseFiles | Study | None, seg: Path | None) -> tuple[np.ndarray, Grid, Path] | None:
    """The study's ground-truth label map on its own grid, with its file, when it has one (`seg`: the
    label file `_read` found with the case)."""
    if isinstance(source, Study):
        if source.labels is None:
            return None
        return np.asarray(source.labels), source.grid, Path(source.sources.get("seg", f"<{source.case_id} labels>"))
    return None if seg is None else _read_labels(seg)


def _read_labels(path: Path) -> tuple[np.ndarray, Grid, Path]:
    from brainseg_gui.core.image_io import read_image

    labels, grid = read_image(path)
    return np.asarray(labels), grid, path


def _truth_onto(truth: tuple[np.ndarray, Grid, Path] | None, grids: Mapping[str, Grid], reference: str,
                transforms: Mapping[str, RigidTransform], target: Grid,
                warnings: list[str]) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The truth on the prepared grid, nearest neighbour through the transform of the sequence whose grid
    it shares (the reference's first), so the prepared case can still be scored; and its record entry."""
    if truth is None:
        return None, {}
    labels, grid, path = truth
    if labels.ndim != 3 or np.issubdtype(labels.dtype, np.floating) and not np.all(np.mod(labels, 1) == 0):
        warnings.append(f"the ground truth {path} is not a 3D label map: not carried into the prepared case")
        return None, {}
    on = next((name for name in (reference, *grids) if name in grids and grids[name].same_as(grid)), None)
    if on is None:
        warnings.append(f"the ground truth {path} lies on none of the sequences' grids: not carried into the "
                        "prepared case (score on the original study instead)")
        return None, {}
    mapped = resample_through(labels.astype(np.uint8), grid, target, transforms[on].matrix, nearest=True)
    return mapped, {"source": str(path), "on": on}


def _write(out: Path, case_id: str, images: Mapping[str, np.ndarray], brain: np.ndarray,
           record: Mapping[str, Any], extraction: Mapping[str, Any], *, protect: Any,
           timings: dict[str, float], started: float, output: OutputFolder | None = None,
           truth: np.ndarray | None = None) -> PreparedStudy:
    """The masked images, the mask, the mapped ground truth (when given) and the record, as one set:
    all of them replace an earlier preparation of the case, or none does.

    With `output`, every file is recorded as the command's before the first is written (a file of
    the user's with one of these names refuses the whole case).
    """
    tick = time.perf_counter()
    grid = grid_from_dict(record["prepared_grid"])
    protect = [Path(p) for p in protect]
    record_path = _output_names(out, case_id, images)[-1]
    if output is not None:
        output.own(*_output_names(out, case_id, images, truth=truth is not None))
    files: dict[str, Path] = {}
    mask_path = out / _file_name(case_id, MASK_NAME)
    with FileSet() as written:
        for name in SEQUENCES:
            if name not in images:
                continue
            path = out / _file_name(case_id, name)
            masked = np.where(brain, images[name], np.float32(0)).astype(np.float32)
            write_image(path, masked, grid, description=f"BrainSeg prepared {name}", protect=protect, files=written)
            files[name] = path
        write_image(mask_path, brain.astype(np.uint8), grid, description="BrainSeg brain mask", protect=protect,
                    files=written)
        if truth is not None:  # the truth's labels as they were, on the prepared grid: BraTS's <case>_seg name
            write_image(out / _file_name(case_id, TRUTH_NAME), truth.astype(np.uint8), grid,
                        description="ground truth, prepared", protect=protect, files=written)
        timings["write"] = time.perf_counter() - tick
        timings["total"] = time.perf_counter() - started
        full = dict(record)
        full["brain_extraction"] = {**extraction, "volume_ml": float(brain.sum()) * grid.voxel_volume_ml}
        full["files"] = {**{name: path.name for name, path in files.items()}, MASK_NAME: mask_path.name}
        full["timings_s"] = {name: round(value, 3) for name, value in timings.items()}
        written.add(record_path, json.dumps(full, indent=2, default=str) + "\n")
    log.info("prepared %s in %.1f s: %s", case_id, timings["total"], ", ".join(p.name for p in files.values()))
    parsed = PrepareRecord.from_dict(full, path=record_path)
    return PreparedStudy(case_id, out, files, mask_path, record_path, parsed)
