"""Where the files of one case are: the small value `find_case` returns and everything downstream reads.

Its own module so that the finders of every layout (`core/cases.py`, DICOM studies in
`core/dicom_study.py`) can build one without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.study import SEQUENCES

Layout = Literal["brats", "brats23", "msd", "files", "dicom"]


@dataclass(frozen=True)
class CaseFiles:
    """Where the files of one case are. `files` maps each present sequence to its file or folder.

    For the "msd" layout every sequence maps to the one 4D file, which is also `msd_image`.
    `warnings` says what a user should know before trusting the case (e.g. only one sequence).
    `seg_convention` names the label convention of `seg` when it is known (a mask corrected and
    exported by BrainSeg): values 1/2/3 are ambiguous between BraTS 2023 and MSD, so it beats a guess.
    """

    case_id: str
    layout: Layout
    files: Mapping[str, Path]
    seg: Path | None = None
    msd_image: Path | None = None
    warnings: tuple[str, ...] = field(default=())
    seg_convention: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.files) - set(SEQUENCES))
        if unknown:
            raise StudyLoadError(f"case {self.case_id!r}: unknown sequence names {unknown}; "
                                 f"expected some of {SEQUENCES}")
        ordered = {name: Path(self.files[name]) for name in SEQUENCES if name in self.files}
        object.__setattr__(self, "files", MappingProxyType(ordered))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(name for name in SEQUENCES if name not in self.files)
