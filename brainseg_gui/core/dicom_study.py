"""A radiologist's DICOM study as a BrainSeg case: indexed, classified, assigned, staged.

`open_dicom_study` indexes a study path and classes its series (`dicom_index`, `dicom_classify`);
`stage_case` writes the assignment as a small case folder: one series file
(`<case>_<sequence>.dcmseries`, `dicom_volume.py`) per chosen series, BraTS-named, and
`dicom_study.json`, the record of every series with its class and evidence. The rest of BrainSeg
(loading, readiness, prepare, predict, the viewer) reads that folder like any raw case, while the
pixels stay in the original DICOM files. The staged folder lives in the user's cache, never in the
study folder; its name is a hash of the study and the choices, so reopening finds it again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brainseg_gui.core.atomic import FileSet
from brainseg_gui.core.case_files import CaseFiles
from brainseg_gui.core.dicom_classify import Assignment, classify_study, reassign
from brainseg_gui.core.dicom_index import DicomIndex, index_dicom
from brainseg_gui.core.dicom_sources import cache_root, study_uid_of
from brainseg_gui.core.dicom_volume import SERIES_FILE_SUFFIX, write_series_file
from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.core.read_guard import read_small_text
from brainseg_gui.core.study import SEQUENCES

RECORD_NAME = "dicom_study.json"
RECORD_FORMAT = "brainseg-dicom-study"


def open_dicom_study(path: Path | str, *, study_uid: str | None = None, overrides: Mapping[str, str] | None = None,
                     progress: ProgressFn = no_progress,
                     cancel: CancelToken | None = None) -> tuple[DicomIndex, Assignment]:
    """Index `path`, pick the study (the only one, or `study_uid`), class its series, apply `overrides`."""
    index = index_dicom(Path(path), progress=progress, cancel=cancel)
    if study_uid is None and _is_one_file(Path(path)):
        study_uid = study_uid_of(Path(path))  # a double-clicked file: its own study, whatever lies beside it
    study = index.study(study_uid)
    assignment = classify_study(study)
    if overrides:
        assignment = reassign(assignment, dict(overrides))
    return index, assignment


def _is_one_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() != ".zip" and path.name.upper() != "DICOMDIR"


def case_id_of(assignment: Assignment) -> str:
    """A file-name-safe case id: the patient ID (else accession, else the study UID's tail)."""
    study = assignment.study
    raw = study.patient_id or study.accession or study.uid[-12:]
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", raw).strip("-.") or "study"
    return safe[:48] + (f"-{study.date}" if study.date else "")


def gap_problems(assignment: Assignment) -> dict[str, list[str]]:
    """Missing slices or uneven spacing of each chosen series ({sequence: problems}); empty when none."""
    out: dict[str, list[str]] = {}
    for name in SEQUENCES:
        series = assignment.series_for(name)
        if series is None or series.main_stack is None:
            continue
        geometry = series.main_stack.geometry
        problems = [*([geometry.duplicate] if geometry.duplicate else []), *geometry.gaps]
        if problems:
            out[name] = problems
    return out


def default_stage_folder(assignment: Assignment, *, accept_gaps: bool = False) -> Path:
    """Where `stage_case` puts a study by default: the cache, keyed by the study and the choices."""
    key = "|".join([assignment.study.uid, *(f"{n}={assignment.chosen.get(n, '')}" for n in SEQUENCES),
                    str(accept_gaps)])
    return cache_root() / "studies" / hashlib.sha256(key.encode()).hexdigest()[:20]


def stage_case(index: DicomIndex, assignment: Assignment, folder: Path | None = None, *,
               accept_gaps: bool = False) -> CaseFiles:
    """Write the chosen series as series files (and the study record) into `folder`; the case they make."""
    if not assignment.chosen:
        raise StudyLoadError(f"no T1, T1ce, T2 or FLAIR series found in study {assignment.study.label}: "
                             + _others(assignment))
    folder = Path(folder) if folder is not None else default_stage_folder(assignment, accept_gaps=accept_gaps)
    case_id = case_id_of(assignment)
    files: dict[str, Path] = {}
    with FileSet() as staged:  # the series files and the record replace an earlier staging together
        for name in SEQUENCES:
            series = assignment.series_for(name)
            if series is None:
                continue
            found = assignment.classes[series.uid]
            files[name] = write_series_file(folder / f"{case_id}_{name}{SERIES_FILE_SUFFIX}", series,
                                            accept_gaps=accept_gaps, files=staged,
                                            extra={"sequence": name, "confidence": found.confidence,
                                                   "evidence": list(found.evidence)})
        for stale in folder.glob(f"*{SERIES_FILE_SUFFIX}"):
            if not stale.name.startswith(".") and stale.name not in {path.name for path in files.values()}:
                staged.remove(stale)  # an earlier staging's series, now assigned elsewhere
        staged.add(folder / RECORD_NAME,
                   json.dumps(study_record(index, assignment, accept_gaps=accept_gaps), indent=1) + "\n")
    warnings = [f"DICOM study {assignment.study.label}: " + ", ".join(
        f"{name} = series {assignment.series_for(name).label}" for name in files)]  # type: ignore[union-attr]
    return CaseFiles(case_id=case_id, layout="dicom", files=files, warnings=tuple(warnings))


def study_record(index: DicomIndex, assignment: Assignment, *, accept_gaps: bool = False) -> dict[str, Any]:
    """What was found and chosen, with the evidence: for `info --json`, the staged folder and provenance."""
    return {"format": RECORD_FORMAT, "version": 1, "source": str(index.root), "accept_gaps": accept_gaps,
            "patient_id": assignment.study.patient_id, "study_date": assignment.study.date,
            "study_description": assignment.study.description, "accession": assignment.study.accession,
            "studies_found": [{"study_uid": s.uid, "label": s.label, "series": len(s.series)} for s in index.studies],
            "skipped_files": [{"file": str(p), "why": why} for p, why in index.skipped],
            "duplicate_instances": index.duplicates, "notes": list(index.notes), **assignment.as_dict()}


def read_study_record(folder: Path) -> dict[str, Any] | None:
    """The `dicom_study.json` of a staged case folder, or None when the folder is not one."""
    path = Path(folder) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(read_small_text(path, "study record"))
    except (StudyLoadError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == RECORD_FORMAT else None


def dicom_inputs(path: Path) -> list[Path]:
    """For a staged series file: the folders its DICOM files lie in, and the study the user opened.

    Nothing is ever written there (exports check against these); other paths give [].
    """
    path = Path(path)
    if not path.name.endswith(SERIES_FILE_SUFFIX) or not path.is_file():
        return []
    from brainseg_gui.core.dicom_volume import read_series_file

    try:
        folders = {Path(entry["file"]).parent for entry in read_series_file(path)["frames"]}
    except StudyLoadError:
        return []
    record = read_study_record(path.parent)
    if record is not None and record.get("source"):
        source = Path(record["source"])
        folders.add(source.parent if source.is_file() else source)
    return sorted(folders)


def result_flags(series_file: Path) -> list[str]:
    """What a result (SR, sidecar) must say about how the staged study was read: missing sequences,
    series whose missing slices were rebuilt by interpolation."""
    record = read_study_record(series_file.parent) or {}
    flags = []
    missing = list(record.get("missing") or [])
    if missing:
        flags.append(f"segmented without {', '.join(missing)} (missing from the study)")
    if record.get("accept_gaps"):
        chosen = {entry.get("series_uid") for entry in (record.get("sequences") or {}).values()}
        gaps = [f"series {s.get('series_number')} {s.get('description') or ''}".strip()
                for s in record.get("series") or []
                if s.get("series_uid") in chosen and s.get("gaps")]
        if gaps:
            flags.append(f"series with missing slices accepted ({', '.join(gaps)}): slices rebuilt by interpolation")
    return flags


def _others(assignment: Assignment) -> str:
    parts = [f"{s.label} ({assignment.classes[s.uid].reason or assignment.classes[s.uid].sequence})"
             for s in assignment.study.series]
    return "its series are " + "; ".join(parts[:12]) + ("; ..." if len(parts) > 12 else "")
