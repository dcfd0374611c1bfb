"""The cases corrected in this app: each exported corrected mask, remembered for the fine-tune panel.

Exporting a corrected mask as NIfTI records the study's sequence files and the mask in
`state_dir()/corrected_cases.json` (written atomically); the fine-tune panel offers them as
training or validation cases. A later export of the same study replaces its record, so the newest
correction is the one trained on. Records whose files have gone are skipped when read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.cases import CaseFiles
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.read_guard import read_small_text
from brainseg_gui.core.study import SEQUENCES, Study

log = logging.getLogger(__name__)

FILE_NAME = "corrected_cases.json"


@dataclass(frozen=True)
class CorrectedCase:
    """A study's sequence files and the corrected mask exported for it."""

    case_id: str
    files: dict[str, Path]
    mask: Path
    convention: str
    saved_at: str

    def case_files(self) -> CaseFiles:
        """As a labelled case for training (MSD studies: one 4D file for all four sequences)."""
        paths = set(self.files.values())
        if len(paths) == 1 and len(self.files) == len(SEQUENCES):
            image = next(iter(paths))
            return CaseFiles(self.case_id, "msd", dict(self.files), seg=self.mask, msd_image=image,
                             seg_convention=self.convention or None)
        return CaseFiles(self.case_id, "files", dict(self.files), seg=self.mask,
                         seg_convention=self.convention or None)

    def exists(self) -> bool:
        return self.mask.exists() and all(p.exists() for p in self.files.values())

    def to_json(self) -> dict[str, object]:
        return {"case_id": self.case_id, "files": {k: str(v) for k, v in self.files.items()},
                "mask": str(self.mask), "convention": self.convention, "saved_at": self.saved_at}

    @classmethod
    def from_json(cls, data: dict) -> CorrectedCase:
        return cls(str(data["case_id"]), {str(k): Path(v) for k, v in dict(data["files"]).items()},
                   Path(data["mask"]), str(data.get("convention", "")), str(data.get("saved_at", "")))


def default_path() -> Path:
    from brainseg_gui.core.journal import state_dir

    return state_dir() / FILE_NAME


class CorrectedCases:
    """The list of corrected cases in one JSON file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()

    def all(self, *, existing_only: bool = True) -> list[CorrectedCase]:
        """Newest first."""
        if not (self.path.exists() or self.path.is_symlink()):
            return []
        try:
            raw = json.loads(read_small_text(self.path, "list of corrected cases"))
            records = [CorrectedCase.from_json(item) for item in raw.get("cases", [])]
        except (OSError, BrainSegError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("%s is unreadable (%s): no corrected cases listed", self.path, error)
            return []
        if existing_only:
            records = [r for r in records if r.exists()]
        return sorted(records, key=lambda r: r.saved_at, reverse=True)

    def record(self, study: Study, mask: Path, convention: str) -> CorrectedCase:
        """Remember `mask` as the correction of `study` (replacing an earlier one of the same files)."""
        files = {name: Path(study.sources[name]).resolve() for name in SEQUENCES if name in study.sources}
        entry = CorrectedCase(study.case_id, files, Path(mask).resolve(), convention,
                              datetime.now(UTC).isoformat(timespec="seconds"))
        kept = [r for r in self.all(existing_only=False) if r.files != entry.files and r.mask != entry.mask]
        self._write([entry, *kept])
        return entry

    def forget(self, mask: Path) -> None:
        mask = Path(mask).resolve()
        self._write([r for r in self.all(existing_only=False) if r.mask != mask])

    def _write(self, records: list[CorrectedCase]) -> None:
        write_atomic(self.path, json.dumps({"cases": [r.to_json() for r in records]}, indent=2) + "\n")
