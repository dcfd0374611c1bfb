"""Exporting a corrected mask: NIfTI in a chosen label convention, with its provenance.

The mask is written on the study's own grid (shape and affine exactly as read), atomically, never
over an input file, and over an earlier export only when asked (`overwrite=True`). Its
provenance (who, when, which model, whether and how much it was edited, which source files) goes
into a JSON sidecar beside it and, in short, into the NIfTI description.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui import RESEARCH_USE_NOTE, __version__
from brainseg_gui.core.atomic import FileSet
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.image_io import NIFTI_SUFFIXES, image_suffix, save_label_map, sidecar_path
from brainseg_gui.core.labels import LabelConvention, convert, parse_convention
from brainseg_gui.core.review import Comparison, compare
from brainseg_gui.core.study import Study

log = logging.getLogger(__name__)

#: Files bigger than this are not hashed for the provenance (a DICOM folder is never hashed).
HASH_LIMIT_BYTES = 2 * 1024**3


class ExportExistsError(BrainSegError):
    """The export target exists already and overwriting was not asked for."""


@dataclass(frozen=True)
class Provenance:
    """Where an exported mask came from. `comparison` is the AI mask against the exported one."""

    case_id: str
    model_version: str | None
    base: str
    comparison: Comparison
    voxel_ml: float
    sources: Mapping[str, Path]
    user: str = field(default_factory=lambda: _user())
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    software: str = f"BrainSeg {__version__}"

    @property
    def edited(self) -> bool:
        return self.comparison.edited

    def to_dict(self, convention: LabelConvention | None = None, *, hash_sources: bool = True) -> dict[str, Any]:
        """The JSON sidecar's content."""
        out: dict[str, Any] = {
            "software": self.software,
            "research_use": RESEARCH_USE_NOTE,
            "case_id": self.case_id,
            "model_version": self.model_version,
            "mask_origin": self.base,
            "edited": self.edited,
            **self.comparison.as_dict(self.voxel_ml),
            "source_files": {name: str(path) for name, path in self.sources.items()},
            "created_by": self.user,
            "created_at": self.created,
        }
        if hash_sources:
            out["source_sha256"] = {name: digest for name, path in self.sources.items()
                                    if (digest := file_sha256(path)) is not None}
        if convention is not None:
            out["label_convention"] = convention.value
            out["label_values"] = dict(convention.tissue_values)
            out["label_convention_description"] = convention.description
        return out

    def description(self, convention: LabelConvention) -> str:
        """The short form for the NIfTI header (80 bytes)."""
        model = (self.model_version or "none")[:12]
        edits = f"edited {self.comparison.changed} vox" if self.edited else "unedited"
        return f"BrainSeg {__version__} {convention.value} model {model} {edits}"


def provenance(study: Study, corrected: np.ndarray, ai: np.ndarray | None, *, model_version: str | None,
               base: str = "") -> Provenance:
    """The provenance of `corrected` (BraTS values) against the AI mask `ai` (default: itself)."""
    reference = corrected if ai is None else ai
    return Provenance(
        case_id=study.case_id,
        model_version=model_version,
        base=base or (f"model {model_version}" if model_version else "unknown"),
        comparison=compare(reference, corrected),
        voxel_ml=study.grid.voxel_volume_ml,
        sources=dict(study.sources),
    )


def export_nifti(path: Path, labels: np.ndarray, study: Study, prov: Provenance, *,
                 convention: LabelConvention | str = LabelConvention.BRATS,
                 overwrite: bool = False, protect: Iterable[Path] = (), files: FileSet | None = None) -> Path:
    """Write `labels` (BraTS values, the study's grid) as NIfTI in `convention`, with a JSON sidecar.

    With `files`, both join that set (written with the rest of an export, or not at all).

    Raises ExportExistsError when the file (or its sidecar) exists and `overwrite` is False, and
    BrainSegError when the path is one of the study's inputs or of `protect` (the mask files the
    labels were read from), whatever `overwrite` says.
    """
    path = Path(path)
    chosen = parse_convention(convention)
    if image_suffix(path) not in NIFTI_SUFFIXES:
        raise BrainSegError(f"cannot export to {path}: the mask is written as NIfTI (.nii.gz or .nii)")
    protect = tuple(Path(p) for p in protect)
    check_target(path, study, overwrite=overwrite, extra=(sidecar_path(path),), protect=protect)
    values = convert(labels, LabelConvention.BRATS, chosen)
    save_label_map(path, values, study.grid, description=prov.description(chosen),
                   sidecar=prov.to_dict(chosen), protect=[*input_paths(study), *protect], files=files)
    log.info("exported the mask of %s to %s (%s)", study.case_id, path, chosen.value)
    return path


def check_target(path: Path, study: Study, *, overwrite: bool, extra: tuple[Path, ...] = (),
                 protect: Iterable[Path] = ()) -> None:
    """Refuse an input file (the study's, or one of `protect`) always, an existing file unless
    `overwrite`; the folder must exist. `extra`: more files the same export writes (sidecars)."""
    protected = {Path(p).expanduser().resolve() for p in (*input_paths(study), *protect)}
    for target in (Path(path), *extra):
        resolved = target.expanduser().resolve()
        if resolved in protected or any(parent in protected for parent in resolved.parents):
            raise BrainSegError(f"refusing to write {target}: it is one of the study's input files")
        if target.exists() and not overwrite:
            raise ExportExistsError(f"{target} exists already (an earlier export?); "
                                    "choose another name or allow overwriting (--force)")
    if not Path(path).parent.is_dir():
        raise BrainSegError(f"cannot write {path}: the folder {Path(path).parent} does not exist")


def input_paths(study: Study) -> list[Path]:
    """Every file (or DICOM folder) the study was read from; for a DICOM study, its folders too."""
    from brainseg_gui.core.dicom_study import dicom_inputs

    paths = [Path(p) for p in study.sources.values()]
    return paths + [folder for path in paths for folder in dicom_inputs(path)]


def default_export_name(study: Study, convention: LabelConvention | str, suffix: str = ".nii.gz") -> str:
    """'<case>_seg_corrected_<convention>.nii.gz': never the name of an input."""
    return f"{study.case_id}_seg_corrected_{parse_convention(convention).value}{suffix}"


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a source file (None for folders, missing or huge files)."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size > HASH_LIMIT_BYTES:
            return None
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return "unknown"
