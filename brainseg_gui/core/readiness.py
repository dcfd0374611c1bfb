"""Is a study BraTS-ready? The model only works on what it was trained on.

BraTS studies are co-registered (one grid), 1 mm isotropic, axis-aligned, stored in LPS order and
skull-stripped (zero outside the brain). Studies straight from a scanner are none of these.
`assess_readiness` lists, one clear sentence each, every way a study differs; `brainseg info`
prints them and `predict` refuses a study that is not ready unless it is prepared first
(`core/prepare.py`, `brainseg prepare`).

Skull detection: a skull-stripped image has an exactly constant background and a brain-sized
foreground (BraTS: 1200-1750 mL); a raw head MRI has noise in its background and a head-sized
foreground (scalp, skull, often the neck: 2500 mL and more). Validated on the 16 real BraTS cases
(all ready), the DICOM head series and the two NRRD head scans (all flagged).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui.core.cases import MSD_ORDER, CaseFiles, find_case
from brainseg_gui.core.errors import BrainSegError, StudyLoadError
from brainseg_gui.core.image_io import NIFTI_SUFFIXES, image_suffix, read_image
from brainseg_gui.core.morphology import fill_holes
from brainseg_gui.core.nib import nib
from brainseg_gui.core.read_guard import read_small_text
from brainseg_gui.core.study import SEQUENCES, Grid, Study

log = logging.getLogger(__name__)

#: The training data's axis order (nibabel axis codes of the BraTS files).
TRAINING_AXCODES: tuple[str, str, str] = ("L", "P", "S")
#: Thicker slices than this (mm) lose detail the network was trained to see.
MAX_SLICE_MM = 2.0
#: Largest / smallest voxel side above this is anisotropic.
MAX_ANISOTROPY = 1.25
#: Grid axes rotated more than this (degrees) from the world axes are oblique.
MAX_OBLIQUE_DEG = 2.0
#: A foreground larger than this (mL) is a head, not a brain (adult brains: 1000-1900 mL).
MAX_BRAIN_ML = 2200.0
#: Share of the background (well outside the foreground) that may be non-constant in a stripped image.
MAX_BACKGROUND_NOISE = 0.2
#: Voxel size (mm) of the copy the skull check runs on.
CHECK_MM = 2.0
#: Fewer voxels than this along any axis is not a volume (a single slice, a localizer, a thumbnail):
#: the network's smallest feature map is 1/8 of its input, and no preparing adds the missing slices.
MIN_AXIS_VOXELS = 8

PREPARE_HINT = "prepare it first: brainseg prepare STUDY -o OUT_DIR (or Prepare in the viewer)"
#: The words of a degenerate grid (a single slice, too few voxels), which preparing cannot fix.
NOT_A_VOLUME = "not a 3D volume"
VOLUME_HINT = "BrainSeg needs a 3D volume of the head: open the whole series, not a slice of it"
#: The words of a different-grid problem (a study loaded with allow_resample has agreed to those).
DIFFERENT_GRID = "is on a different grid from"
#: The words of an axis-order difference: the predictor re-orients exactly (flips and permutations,
#: no resampling) and undoes it on the way out, so this alone does not make a study not ready.
OTHER_AXIS_ORDER = "differs from the training data's"


def blocking(problems: tuple[str, ...] | list[str], *, allow_resample: bool = False) -> list[str]:
    """The problems that stop a study going to the network (axis order never; grids if resampling is allowed)."""
    return [p for p in problems if OTHER_AXIS_ORDER not in p and not (allow_resample and DIFFERENT_GRID in p)]


class NotReadyError(BrainSegError):
    """A study that is not BraTS-ready was given where a ready one is needed (e.g. to predict)."""


@dataclass(frozen=True)
class SkullCheck:
    """Evidence about one image: is it skull-stripped?"""

    stripped: bool
    foreground_ml: float
    background_noise: float | None  # share of background voxels above the minimum; None: no background

    def evidence(self) -> str:
        noise = ("no background in the field of view" if self.background_noise is None
                 else f"{100 * self.background_noise:.0f}% of the background is non-zero")
        return f"{noise}, {self.foreground_ml:.0f} mL of tissue"


@dataclass(frozen=True)
class Readiness:
    """Whether a study can go to the network as it is; `problems` says why not, one sentence each."""

    ready: bool
    problems: tuple[str, ...]
    missing: tuple[str, ...] = ()
    skull: Mapping[str, SkullCheck] | None = None

    def describe(self) -> str:
        """Text for `brainseg info`: 'ready' or the problems and how to fix them."""
        if self.ready and self.problems:
            return ("BraTS-ready: yes, re-oriented on the fly (exact, no resampling)\n"
                    + "\n".join(f"  - {problem}" for problem in self.problems))
        if self.ready:
            return "BraTS-ready: yes"
        lines = ["BraTS-ready: no"] + [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines + [f"  {self.hint}"])

    @property
    def hint(self) -> str | None:
        """What to do about a study that is not ready (None when it is)."""
        if self.ready:
            return None
        return VOLUME_HINT if any(NOT_A_VOLUME in problem for problem in self.problems) else PREPARE_HINT

    def as_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "problems": list(self.problems), "blocking": blocking(self.problems),
                "missing": list(self.missing), "hint": self.hint}


def assess_readiness(source: Study | CaseFiles | Path | str, *, check_skull: bool = True) -> Readiness:
    """Every way `source` differs from BraTS-ready input (grids, slices, voxels, axes, skull).

    `source` is a loaded Study, a CaseFiles, or a path (case folder or file). For a Study, the
    original grids are read from the headers of NIfTI sources (the study itself may have been
    resampled onto one grid when loaded). Reads each file once; raises StudyLoadError as loading does.
    """
    if isinstance(source, Study):
        grids = _study_grids(source)
        images = {name: (source.images[name], source.grid) for name in source.images}
        missing = source.missing
        files = [Path(source.sources[name]) for name in source.images if name in source.sources]
    else:
        case = source if isinstance(source, CaseFiles) else find_case(Path(source))
        images = read_sequences(case, allow_slices=True)
        grids = {name: grid for name, (_, grid) in images.items()}
        missing = case.missing
        files = list(case.files.values())
    problems = grid_problems(grids)
    skull: dict[str, SkullCheck] = {}
    if check_skull and len(files) == len(images) and prepared_by_brainseg(files):
        log.debug("%s: prepared by BrainSeg (a prepare record lists them): brain mask trusted", files[0])
    elif check_skull:
        skull = {name: skull_check(array, grid) for name, (array, grid) in images.items()}
        flagged = [name for name in SEQUENCES if name in skull and not skull[name].stripped]
        if flagged:
            which = "" if len(flagged) == len(skull) else f" ({', '.join(flagged)})"
            problems.append(f"tissue outside the brain: the study looks not skull-stripped (skull/scalp "
                            f"present{which}: {skull[flagged[0]].evidence()})")
    return Readiness(not blocking(problems), tuple(problems), tuple(missing), skull or None)


def load_if_ready(case: CaseFiles, *, allow_resample: bool = False) -> tuple[Study | None, list[str]]:
    """(the case loaded for segmenting, []) when it is BraTS-ready, else (None, what blocks it).

    The images are read once: the readiness of a loaded study is judged on its arrays. A study that
    does not load (grids that do not fit, a single slice) is judged from its files instead, and its
    load error is raised when nothing blocks it. Without its labels: a prediction does not read them.
    """
    import dataclasses

    from brainseg_gui.core.io import load_study

    try:
        study = load_study(dataclasses.replace(case, seg=None), allow_resample=allow_resample)
    except StudyLoadError:
        problems = blocking(assess_readiness(case).problems, allow_resample=allow_resample)
        if problems:
            return None, problems
        raise
    problems = blocking(assess_readiness(study).problems, allow_resample=allow_resample)
    return (None, problems) if problems else (study, [])


def prepared_by_brainseg(files: list[Path]) -> bool:
    """Whether every file is a sequence that a BrainSeg prepare record beside it lists.

    Such a study had its brain extracted and checked (the Prepare step): the skull check, which
    may flag an accepted generous mask as 'head-sized', is not repeated.
    """
    import json

    listed: set[Path] = set()
    for folder in {path.parent for path in files}:
        for record in folder.glob("*_prepare.json"):
            try:
                data = json.loads(read_small_text(record, "prepare record"))  # never a pipe or a huge file
                if data.get("format") == "brainseg-prepare":
                    listed |= {(folder / str(name)).resolve() for name in dict(data.get("files", {})).values()}
            except (StudyLoadError, ValueError, TypeError, AttributeError):
                continue  # not a readable record: the usual checks apply
    return bool(files) and all(path.resolve() in listed for path in files)


def read_sequences(case: CaseFiles, *, allow_slices: bool = False) -> dict[str, tuple[np.ndarray, Grid]]:
    """Each sequence of a case on its own grid: {name: ((i, j, k) array, grid)}, each file read once.

    A sequence that is not a volume (see `volume_problem`) raises NotReadyError, so that preparing
    refuses it up front; `allow_slices` reads it anyway (to describe it, as `assess_readiness` does).
    """
    out: dict[str, tuple[np.ndarray, Grid]] = {}
    cache: dict[Path, tuple[np.ndarray, Grid]] = {}
    for name, path in case.files.items():
        if path not in cache:
            cache[path] = read_image(path)
            problem = volume_problem(cache[path][1])
            if problem and not allow_slices:
                raise NotReadyError(f"{path}: {problem}; {VOLUME_HINT}")
        array, grid = cache[path]
        if array.ndim == 4:
            array = array[..., MSD_ORDER.index(name)]
        out[name] = (array, grid)
    return out


def grid_problems(grids: Mapping[str, Grid]) -> list[str]:
    """Sentences for sequences on different grids, thick slices, anisotropic/oblique voxels, axis order."""
    names = [name for name in SEQUENCES if name in grids]
    if not names:
        return []
    reference = "flair" if "flair" in grids else names[0]
    problems = [f"{name} {DIFFERENT_GRID} {reference} ({name}: {grids[name].describe()}; "
                f"{reference}: {grids[reference].describe()})"
                for name in names if name != reference and not grids[name].same_as(grids[reference])]
    groups: dict[int, list[str]] = {}
    for name in names:
        first = next(other for other in names if grids[other].same_as(grids[name]))
        groups.setdefault(names.index(first), []).append(name)
    for members in groups.values():
        prefix = "" if len(groups) == 1 else f"{', '.join(members)}: "
        problems += [prefix + sentence for sentence in _geometry_problems(grids[members[0]])]
    return problems


def volume_problem(grid: Grid) -> str | None:
    """Why a grid is not a 3D volume the network can segment (one slice, too few voxels), or None."""
    shape = "x".join(map(str, grid.shape))
    if sorted(grid.shape)[1] == 1:
        return f"the image is {shape} voxels, {NOT_A_VOLUME} (a line or a single voxel)"
    if min(grid.shape) == 1:
        return f"the image is {shape} voxels: a single slice, {NOT_A_VOLUME}"
    if min(grid.shape) < MIN_AXIS_VOXELS:
        return (f"the image is {shape} voxels: {min(grid.shape)} along one axis, {NOT_A_VOLUME} "
                f"(at least {MIN_AXIS_VOXELS} along each)")
    return None


def _geometry_problems(grid: Grid) -> list[str]:
    spacing = grid.spacing
    sizes = " x ".join(f"{s:.3g}" for s in spacing)
    problem = volume_problem(grid)
    problems = [problem] if problem else []
    if max(spacing) > MAX_SLICE_MM:
        problems.append(f"slice thickness {max(spacing):.3g} mm is over {MAX_SLICE_MM:g} mm")
    if max(spacing) / min(spacing) > MAX_ANISOTROPY:
        problems.append(f"voxels are anisotropic ({sizes} mm)")
    angle, sheared = obliquity(grid)
    if sheared:
        problems.append("the voxel axes are not perpendicular (sheared grid)")
    if angle > MAX_OBLIQUE_DEG:
        problems.append(f"the grid is oblique (axes rotated {angle:.0f} degrees from the scanner axes)")
    if grid.axcodes != TRAINING_AXCODES:
        problems.append(f"orientation {''.join(grid.axcodes)} differs from the training data's "
                        f"{''.join(TRAINING_AXCODES)}")
    return problems


def obliquity(grid: Grid) -> tuple[float, bool]:
    """(degrees between the grid's axes and the nearest world axes, whether the axes are sheared)."""
    columns = grid.affine[:3, :3] / np.array(grid.spacing)[None, :]
    sheared = bool(np.abs(columns.T @ columns - np.eye(3)).max() > 1e-3)
    u, _, vt = np.linalg.svd(columns)
    rotation = u @ vt  # the nearest orthonormal matrix to the direction cosines
    nearest = np.zeros((3, 3))  # the closest flips-and-permutation (nibabel's axis codes)
    for axis, (world, flip) in enumerate(nib.orientations.io_orientation(grid.affine)):
        nearest[int(world), axis] = flip
    cosine = (np.trace(nearest.T @ rotation) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))), sheared


def skull_check(image: np.ndarray, grid: Grid) -> SkullCheck:
    """Whether an image looks skull-stripped: constant background and a brain-sized foreground."""
    from scipy import ndimage

    steps = tuple(max(1, round(CHECK_MM / s)) for s in grid.spacing)
    array = np.asarray(image[:: steps[0], :: steps[1], :: steps[2]], dtype=np.float32)
    voxel_ml = grid.voxel_volume_ml * float(np.prod(steps))
    lowest = float(array.min())
    high = float(np.percentile(array, 99.5))
    if high <= lowest:
        return SkullCheck(True, 0.0, None)
    smooth = ndimage.gaussian_filter(array, 1.0)
    labels, count = ndimage.label(smooth > lowest + 0.1 * (high - lowest))
    if count == 0:
        return SkullCheck(True, 0.0, None)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    foreground = fill_holes(labels == int(sizes.argmax()))
    outside = ~ndimage.binary_dilation(foreground, iterations=3)
    noise = float((array[outside] > lowest).mean()) if outside.sum() >= 0.01 * array.size else None
    volume = float(foreground.sum()) * voxel_ml
    stripped = volume <= MAX_BRAIN_ML and (noise is None or noise <= MAX_BACKGROUND_NOISE)
    return SkullCheck(stripped, volume, noise)


def _study_grids(study: Study) -> dict[str, Grid]:
    """Each sequence's grid as stored in its file where the header says (NIfTI), else the study's."""

    grids: dict[str, Grid] = {}
    for name in study.images:
        grid = study.grid
        source = study.sources.get(name)
        if source is not None and str(source).endswith(".dcmseries") and Path(source).is_file():
            from brainseg_gui.core.dicom_volume import series_grid

            try:
                grid = series_grid(Path(source))
            except BrainSegError:  # the study loaded already; a header re-read only refines the report
                log.debug("could not re-read the series of %s", source, exc_info=True)
        elif source is not None and image_suffix(Path(source)) in NIFTI_SUFFIXES and Path(source).is_file():
            try:
                header: Any = nib.load(str(source))
                shape = tuple(int(n) for n in header.shape)
                if len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 4)):
                    grid = Grid((shape[0], shape[1], shape[2]), np.array(header.affine, dtype=np.float64))
            except Exception:  # the study loaded already; a header re-read only refines the report
                log.debug("could not re-read the header of %s", source, exc_info=True)
        grids[name] = grid
    return grids
