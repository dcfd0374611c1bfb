"""The mask shown and the DICOM study it goes back to: what File > Export DICOM-SEG and SR and File >
Send to PACS write (no Qt; ui/dicom_export.py asks where, ui/pacs_send_dialog.py sends).

The SEG (WT/TC/ET) and the SR (region volumes) are written on the grid of the study's T1ce series
(`core.dicom_results`), so a PACS viewer lays them over the images the scanner made. On the
prepared study the mask is mapped back through the inverse registration; in the scanner-space view
it is already on a series' grid; on the study as opened it is resampled from the display grid.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainseg_gui.core.dicom_results import WrittenResults, write_study_results
from brainseg_gui.core.dicom_study import result_flags
from brainseg_gui.core.dicom_volume import SERIES_FILE_SUFFIX
from brainseg_gui.core.labels import LabelConvention
from brainseg_gui.core.prepared_space import PrepareRecord
from brainseg_gui.core.progress import CancelToken, ProgressFn
from brainseg_gui.core.study import Grid

TARGET = "t1ce"


@dataclass(frozen=True)
class ResultsSource:
    """Where the shown mask lies and the staged series files of the DICOM study it came from.

    record: the prepare record when the prepared study (or its scanner view) is shown.
    scanner_sequence: the sequence whose original grid the scanner view shows, else None.
    """

    series_files: Mapping[str, Path]
    record: PrepareRecord | None = None
    scanner_sequence: str | None = None

    @property
    def target(self) -> str:
        """The series the SEG references: the scanner view's, else T1ce, else the first there is."""
        if self.scanner_sequence is not None:
            return self.scanner_sequence
        return TARGET if TARGET in self.series_files else next(iter(self.series_files))

    @property
    def case_id(self) -> str:
        """The staged case id (series files are `<case>_<sequence>.dcmseries`)."""
        return self.series_files[self.target].name.removesuffix(SERIES_FILE_SUFFIX).rsplit("_", 1)[0]


@dataclass(frozen=True)
class ResultsRequest:
    """The mask shown, taken at one moment, and the DICOM series it goes back to: what an export or a
    send writes. `labels`: BraTS values, (i, j, k) on `grid` (the display grid), a read-only copy."""

    source: ResultsSource
    labels: np.ndarray
    grid: Grid
    model_version: str | None
    edited: bool

    @property
    def series_file(self) -> Path:
        """The staged series file of the series the SEG references."""
        return self.source.series_files[self.source.target]

    def write(self, out_dir: Path, *, with_report: bool = False, progress: ProgressFn,
              cancel: CancelToken) -> tuple[WrittenResults, list[str]]:
        """SEG + SR (+ the report with `with_report`) into `out_dir`, and the flags the SR carries."""
        flags = result_flags(self.series_file)
        written = write_results(self.source, self.labels, self.grid, out_dir, model_version=self.model_version,
                                edited=self.edited, user=_user(), flags=flags, with_report=with_report,
                                progress=progress, cancel=cancel)
        return written, flags


def write_results(source: ResultsSource, labels: np.ndarray, grid: Grid, out_dir: Path, *,
                  model_version: str | None, edited: bool, user: str, flags: list[str], progress: ProgressFn,
                  cancel: CancelToken, with_report: bool = False) -> WrittenResults:
    """Put `labels` (BraTS, on the shown `grid`) on the target series' grid and write SEG + SR there
    (and, `with_report`, the one-page report as an Encapsulated PDF)."""
    from brainseg_gui.core.dicom_volume import read_series_volume
    from brainseg_gui.core.prepared_space import map_to_original
    from brainseg_gui.core.resample import resample_to_grid

    target = source.target
    series_file = source.series_files[target]
    progress(0.1, f"Putting the mask on the {target} series' grid")
    if source.scanner_sequence is None and source.record is not None:
        labels, grid = map_to_original(labels, source.record, target)
    elif source.scanner_sequence is None:
        _pixels, series_grid = read_series_volume(series_file)
        if not grid.same_as(series_grid):
            labels = resample_to_grid(labels, grid, series_grid, nearest=True)
        grid = series_grid
    cancel.raise_if_cancelled()
    progress(0.4, "Writing the DICOM-SEG and the SR" + (" and the report" if with_report else ""))
    return write_study_results(out_dir, np.ascontiguousarray(labels, dtype=np.uint8), LabelConvention.BRATS, grid,
                               series_file, model_version=model_version, edited=edited, user=user,
                               flags=flags, name=source.case_id, with_report=with_report)


def inside(folder: Path, others: list[Path]) -> Path | None:
    """The first of `others` that `folder` is (or lies inside), else None."""
    resolved = Path(folder).expanduser().resolve()
    for other in others:
        other = other.resolve()
        if resolved == other or other in resolved.parents:
            return other
    return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
