"""Talking to a PACS node: test it, find studies and series, list instances, fetch them, send results.

Two protocols behind one interface (`PacsConnection`, made by core/pacs_connect.py): DICOMweb (QIDO-RS, WADO-RS, STOW-RS through
dicomweb-client, core/pacs_dicomweb.py) and DIMSE (C-ECHO, C-FIND, C-GET, C-STORE through pynetdicom,
core/pacs_dimse.py). C-GET rather than C-MOVE: the images come back on our own association, so the
PACS need not be told our address as a move destination (a PACS administrator's chore, and blocked by
most firewalls). Every failure is a PacsError whose message starts with what failed: DNS, refused,
timeout, TLS, auth, or the node's own answer.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from brainseg_gui.core.pacs_nodes import PacsError, PacsNode
from brainseg_gui.core.progress import CancelToken

#: Seconds to wait for a node to answer a connection or a request.
TIMEOUT_S = 20.0

#: Where one retrieved instance goes: (the dataset as received, its SOP Instance UID) -> None.
InstanceSink = Callable[[Any, str], None]


@dataclass(frozen=True)
class StudyQuery:
    """What `find` looks for; empty fields match anything. Names may use * and ? wildcards."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    date_from: str = ""  # YYYYMMDD or YYYY-MM-DD
    date_to: str = ""
    modality: str = ""
    limit: int = 200

    def study_date(self) -> str:
        """The DICOM date range ('20240101-20240131', '20240101-', '-20240131', or '')."""
        low, high = _dicom_date(self.date_from, "from"), _dicom_date(self.date_to, "to")
        if low and high and low > high:
            raise PacsError(f"the date range {self.date_from} .. {self.date_to} is empty")
        return f"{low}-{high}" if (low or high) else ""


@dataclass(frozen=True)
class StudyMatch:
    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    accession: str = ""
    description: str = ""
    modalities: tuple[str, ...] = ()
    series_count: int | None = None
    instance_count: int | None = None


@dataclass(frozen=True)
class SeriesMatch:
    series_uid: str
    modality: str = ""
    description: str = ""
    number: int | None = None
    instance_count: int | None = None


class PacsConnection(Protocol):
    """What BrainSeg asks of a node (core/pacs_dicomweb.py, core/pacs_dimse.py)."""

    node: PacsNode

    def echo(self) -> str:
        """Check the node answers and accepts us; a short description of what answered."""

    def find_studies(self, query: StudyQuery) -> list[StudyMatch]: ...

    def find_series(self, study_uid: str) -> list[SeriesMatch]: ...

    def instance_uids(self, study_uid: str, series_uid: str) -> list[str]:
        """The SOP Instance UIDs of one series, as the node lists them."""

    def retrieve(self, study_uid: str, series_uid: str, only: Sequence[str] | None, sink: InstanceSink,
                 cancel: CancelToken) -> None:
        """Fetch the instances `only` of one series (None: the whole series) into `sink`."""

    def store(self, datasets: Iterable[Any]) -> list[str]:
        """Send datasets (pydicom); the SOP Instance UIDs the node accepted, in order."""


def check_reachable(node: PacsNode, host: str, port: int) -> None:
    """DNS, then a TCP connection: PacsError saying which failed (the protocols' own errors say less)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise PacsError(f"DNS: {host!r} (node {node.name}) is not a known host name ({error.strerror})") from None
    last: OSError | None = None
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.settimeout(min(TIMEOUT_S, 10.0))
                probe.connect(address)
                return
        except TimeoutError as error:
            last = error
        except OSError as error:
            last = error
    if isinstance(last, TimeoutError):
        raise PacsError(f"timeout: {host}:{port} (node {node.name}) did not answer within 10 s") from None
    reason = last.strerror if last is not None and last.strerror else str(last)
    raise PacsError(f"refused: nothing accepts connections on {host}:{port} (node {node.name}): {reason}") from None


def _dicom_date(text: str, which: str) -> str:
    text = text.strip()
    if not text:
        return ""
    for pattern in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return datetime.datetime.strptime(text, pattern).strftime("%Y%m%d")
        except ValueError:
            continue
    raise PacsError(f"date {which} {text!r} is not a date (YYYY-MM-DD or YYYYMMDD)")


def text_of(dataset: Any, keyword: str) -> str:
    """A header value as text ('' when absent); person names as written."""
    value = dataset.get(keyword, "") if dataset is not None else ""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def int_of(dataset: Any, keyword: str) -> int | None:
    try:
        return int(dataset.get(keyword)) if dataset.get(keyword) not in (None, "") else None
    except (TypeError, ValueError):
        return None


def study_match(dataset: Any) -> StudyMatch:
    """A study from a C-FIND answer or a QIDO-RS result (as a pydicom Dataset)."""
    modalities = text_of(dataset, "ModalitiesInStudy")
    return StudyMatch(
        study_uid=text_of(dataset, "StudyInstanceUID"), patient_name=text_of(dataset, "PatientName"),
        patient_id=text_of(dataset, "PatientID"), study_date=text_of(dataset, "StudyDate"),
        accession=text_of(dataset, "AccessionNumber"), description=text_of(dataset, "StudyDescription"),
        modalities=tuple(m for m in modalities.split("\\") if m),
        series_count=int_of(dataset, "NumberOfStudyRelatedSeries"),
        instance_count=int_of(dataset, "NumberOfStudyRelatedInstances"))


def series_match(dataset: Any) -> SeriesMatch:
    return SeriesMatch(
        series_uid=text_of(dataset, "SeriesInstanceUID"), modality=text_of(dataset, "Modality"),
        description=text_of(dataset, "SeriesDescription"), number=int_of(dataset, "SeriesNumber"),
        instance_count=int_of(dataset, "NumberOfSeriesRelatedInstances"))


def read_datasets(paths: Iterable[Path]) -> list[Any]:
    """DICOM files as pydicom datasets (PacsError naming a file that is not DICOM)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    datasets = []
    for path in paths:
        try:
            datasets.append(pydicom.dcmread(str(path)))
        except (InvalidDicomError, OSError, ValueError) as error:
            raise PacsError(f"{path} is not a DICOM file: {error}") from None
    return datasets
