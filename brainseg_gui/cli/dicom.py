"""What `info`, `predict` and `prepare` share for DICOM studies: the options and finding the case.

`--study UID` picks one study of several, `--series SEQ=UID_OR_NUMBER` overrides the automatic
choice of a sequence's series (repeatable), `--accept-gaps` accepts chosen series with missing
slices or uneven spacing (rebuilt by interpolation, and flagged).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainseg_gui.cli.common import UsageError

SEQUENCE_NAMES = ("t1", "t1ce", "t2", "flair")


@dataclass(frozen=True)
class FoundCase:
    """The case a command works on; for a DICOM study also its index and series assignment."""

    case: Any
    index: Any = None
    assignment: Any = None
    accept_gaps: bool = False

    @property
    def is_dicom(self) -> bool:
        return self.assignment is not None


def add_dicom_options(parser: argparse.ArgumentParser) -> None:
    """--study, --series and --accept-gaps."""
    group = parser.add_argument_group("DICOM studies (a folder tree, a .zip or a DICOMDIR)")
    group.add_argument("--study", dest="study_uid", metavar="UID", help="the study to use when the path holds several (its "
                                                      "StudyInstanceUID or a unique beginning of it)")
    group.add_argument("--series", action="append", default=[], metavar="SEQ=SERIES",
                       help="use this series for a sequence: t1, t1ce, t2 or flair = its SeriesInstanceUID or series "
                            "number (repeatable; the rest is chosen automatically)")
    group.add_argument("--accept-gaps", action="store_true",
                       help="use chosen series with missing slices or uneven spacing: the slices are rebuilt by "
                            "interpolation and the result is flagged")


def parse_series(values: list[str]) -> dict[str, str]:
    """--series t1ce=1.2.3 --series flair=7 -> {'t1ce': '1.2.3', 'flair': '7'}."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, key = value.partition("=")
        name = name.strip().lower()
        if not sep or not key.strip():
            raise UsageError(f"--series {value!r}: expected SEQ=SERIES, e.g. t1ce=7 or t1ce=1.2.840...")
        if name not in SEQUENCE_NAMES:
            raise UsageError(f"--series {value!r}: {name!r} is not one of {', '.join(SEQUENCE_NAMES)}")
        if name in out:
            raise UsageError(f"--series gives {name} twice")
        out[name] = key.strip()
    return out


def find_study_case(args: argparse.Namespace, path: Path, *, stage_in: Path | None = None) -> FoundCase:
    """The case at `path`: a DICOM study (classified, overrides applied, staged) or any other case."""
    from brainseg_gui.core.cases import is_dicom_study

    overrides = parse_series(getattr(args, "series", []) or [])
    dicom = is_dicom_study(path)
    if not dicom:
        if overrides or getattr(args, "study_uid", None) or getattr(args, "accept_gaps", False):
            raise UsageError(f"{path} is not a DICOM study: --study, --series and --accept-gaps apply to DICOM only")
        from brainseg_gui.core import io

        return FoundCase(io.find_case(path))
    from brainseg_gui.cli.common import ProgressBar
    from brainseg_gui.core.dicom_study import gap_problems, open_dicom_study, stage_case

    with ProgressBar("indexing") as bar:
        index, assignment = open_dicom_study(path, study_uid=getattr(args, "study_uid", None), overrides=overrides,
                                             progress=bar)
    accept = bool(getattr(args, "accept_gaps", False))
    case = stage_case(index, assignment, stage_in, accept_gaps=accept)
    gaps = gap_problems(assignment)
    if gaps and accept:
        case = _with_warning(case, "accepted gaps: " + "; ".join(f"{n}: {', '.join(p)}" for n, p in gaps.items()))
    return FoundCase(case, index, assignment, accept)


def refuse_gaps(found: FoundCase) -> None:
    """Before segmenting: a chosen series with missing slices needs --accept-gaps (duplicates never pass)."""
    from brainseg_gui.core.dicom_study import gap_problems
    from brainseg_gui.core.dicom_volume import GapsError

    gaps = gap_problems(found.assignment)
    for name in gaps:
        series = found.assignment.series_for(name)
        if series.main_stack.geometry.duplicate:
            raise GapsError(f"{name} series {series.label}: {series.main_stack.geometry.duplicate}; choose another "
                            f"series with --series {name}=SERIES")
    if gaps and not found.accept_gaps:
        listing = "; ".join(f"{name} series {found.assignment.series_for(name).label}: {', '.join(p)}"
                            for name, p in gaps.items())
        raise GapsError(f"{listing}. Add --accept-gaps to rebuild the missing slices by interpolation "
                        "(the result is flagged), or choose another series with --series")


def is_dicom_study(path: Path) -> bool:
    """See core.cases.is_dicom_study (imported late: the CLI starts without numpy or pydicom)."""
    from brainseg_gui.core.cases import is_dicom_study as core_is_dicom_study

    return core_is_dicom_study(path)


def _with_warning(case: Any, warning: str) -> Any:
    import dataclasses

    return dataclasses.replace(case, warnings=(*case.warnings, warning))


def dicom_report(found: FoundCase) -> dict[str, Any]:
    """`info --json`'s DICOM part: the study record with every series, class and evidence."""
    from brainseg_gui.core.dicom_study import study_record

    return study_record(found.index, found.assignment, accept_gaps=found.accept_gaps)


def dicom_text(found: FoundCase) -> str:
    """`info`'s DICOM part for a terminal: series table, classes with evidence, the chosen four."""
    from brainseg_gui.core.dicom_classify import format_assignment

    lines = [format_assignment(found.assignment)]
    others = [s for s in found.index.studies if s.uid != found.assignment.study.uid]
    if others:
        lines.append(f"other studies here: {', '.join(f'{s.uid} ({s.label})' for s in others)} (choose with --study)")
    if found.index.skipped:
        lines.append(f"skipped {len(found.index.skipped)} file(s): " + "; ".join(
            f"{p.name}: {why}" for p, why in found.index.skipped[:5]) + ("; ..." if len(found.index.skipped) > 5 else ""))
    if found.index.duplicates:
        lines.append(f"ignored {found.index.duplicates} duplicate instance(s) (same SOPInstanceUID)")
    return "\n".join(lines)
