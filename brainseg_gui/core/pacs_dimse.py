"""A DIMSE node through pynetdicom: C-ECHO to test, C-FIND to find, C-GET to retrieve, C-STORE to send."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from brainseg_gui.core.errors import Cancelled
from brainseg_gui.core.pacs_client import (
    TIMEOUT_S,
    InstanceSink,
    SeriesMatch,
    StudyMatch,
    StudyQuery,
    check_reachable,
    series_match,
    study_match,
    text_of,
)
from brainseg_gui.core.pacs_nodes import PacsError, PacsNode
from brainseg_gui.core.progress import CancelToken

log = logging.getLogger(__name__)

#: The storage SOP classes a C-GET may bring back (one presentation context each, with role selection):
#: the MR images a brain study holds, and the results BrainSeg and other tools store beside them.
RETRIEVED_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.4",        # MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.1",      # Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.3",      # Enhanced MR Color Image Storage
    "1.2.840.10008.5.1.4.1.1.4.4",      # Legacy Converted Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.66.4",     # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.88.22",    # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",    # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",    # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.7",        # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.104.1",    # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.2",        # CT Image Storage (a study may hold one; it is not used)
)


def _transfer_syntaxes() -> list[str]:
    from pydicom import uid

    return [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
            uid.JPEGLosslessSV1, uid.JPEGLossless, uid.JPEGLSLossless, uid.JPEG2000Lossless, uid.JPEG2000,
            uid.RLELossless, uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit]


class DimseConnection:
    """A PacsConnection over DIMSE (see core/pacs_client.py); one association per call."""

    def __init__(self, node: PacsNode) -> None:
        self.node = node

    @contextmanager
    def _association(self, what: str, contexts: Sequence[str], *, get_roles: bool = False,
                     sink: InstanceSink | None = None) -> Iterator[Any]:
        from pynetdicom import AE, build_role, evt

        check_reachable(self.node, self.node.host, self.node.port)
        ae = AE(ae_title=self.node.our_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
        syntaxes = _transfer_syntaxes()
        for abstract in contexts:
            ae.add_requested_context(abstract, syntaxes)
        roles: list[Any] = []
        if get_roles:
            for abstract in RETRIEVED_CLASSES:
                ae.add_requested_context(abstract, syntaxes)
                roles.append(build_role(abstract, scp_role=True))
        handlers: list[Any] = [(evt.EVT_C_STORE, _store_handler(sink))] if sink is not None else []
        assoc = ae.associate(self.node.host, self.node.port, ae_title=self.node.ae_title, ext_neg=roles,
                             evt_handlers=handlers)
        if not assoc.is_established:
            raise PacsError(self._refusal(assoc, what))
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _refusal(self, assoc: Any, what: str) -> str:
        where = f"{self.node.ae_title}@{self.node.host}:{self.node.port}"
        if assoc.is_rejected:
            return (f"auth: {where} (node {self.node.name}) rejected our association for {what}: check that it "
                    f"knows our AE title {self.node.our_ae_title!r} and that its AE title is {self.node.ae_title!r}")
        if assoc.is_aborted:
            return f"{where} (node {self.node.name}) aborted the association for {what}"
        return f"timeout: {where} (node {self.node.name}) did not complete the association for {what}"

    def echo(self) -> str:
        with self._association("C-ECHO", ["1.2.840.10008.1.1"]) as assoc:
            status = assoc.send_c_echo()
            _check_status(status, self.node, "C-ECHO")
        return f"{self.node.ae_title}@{self.node.host}:{self.node.port} answered C-ECHO"

    def _find(self, what: str, identifier: Any) -> list[Any]:
        model = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve - FIND
        found = []
        with self._association(what, [model]) as assoc:
            for status, answer in assoc.send_c_find(identifier, model):
                if not status:
                    raise PacsError(f"timeout: {self.node.name} stopped answering {what}")
                code = int(status.Status)
                if code in (0xFF00, 0xFF01) and answer is not None:
                    found.append(answer)
                elif code != 0x0000:
                    raise PacsError(f"{self.node.name} refused {what} (status 0x{code:04X})")
        return found

    def find_studies(self, query: StudyQuery) -> list[StudyMatch]:
        from pydicom import Dataset

        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        for keyword, value in (("PatientName", query.patient_name), ("PatientID", query.patient_id),
                               ("AccessionNumber", query.accession), ("StudyDate", query.study_date()),
                               ("ModalitiesInStudy", query.modality.upper()), ("StudyInstanceUID", ""),
                               ("StudyDescription", ""), ("NumberOfStudyRelatedSeries", None),
                               ("NumberOfStudyRelatedInstances", None)):
            setattr(identifier, keyword, value)
        return [study_match(answer) for answer in self._find("a study query (C-FIND)", identifier)][: query.limit]

    def find_series(self, study_uid: str) -> list[SeriesMatch]:
        from pydicom import Dataset

        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study_uid
        for keyword in ("SeriesInstanceUID", "Modality", "SeriesDescription"):
            setattr(identifier, keyword, "")
        identifier.SeriesNumber = None
        identifier.NumberOfSeriesRelatedInstances = None
        return [series_match(answer) for answer in self._find("a series query (C-FIND)", identifier)]

    def instance_uids(self, study_uid: str, series_uid: str) -> list[str]:
        from pydicom import Dataset

        identifier = Dataset()
        identifier.QueryRetrieveLevel = "IMAGE"
        identifier.StudyInstanceUID = study_uid
        identifier.SeriesInstanceUID = series_uid
        identifier.SOPInstanceUID = ""
        return [text_of(answer, "SOPInstanceUID") for answer in self._find("an instance query (C-FIND)", identifier)]

    def retrieve(self, study_uid: str, series_uid: str, only: Sequence[str] | None, sink: InstanceSink,
                 cancel: CancelToken) -> None:
        from pydicom import Dataset

        model = "1.2.840.10008.5.1.4.1.2.2.3"  # Study Root Query/Retrieve - GET
        identifier = Dataset()
        identifier.StudyInstanceUID = study_uid
        identifier.SeriesInstanceUID = series_uid
        identifier.QueryRetrieveLevel = "SERIES"
        if only is not None:
            identifier.QueryRetrieveLevel = "IMAGE"
            identifier.SOPInstanceUID = list(only)
        with self._association("a retrieve (C-GET)", [model], get_roles=True, sink=sink) as assoc:
            for status, _ in assoc.send_c_get(identifier, model):
                if cancel.cancelled:
                    assoc.abort()
                    raise Cancelled("retrieve cancelled")
                if not status:
                    raise PacsError(f"timeout: {self.node.name} stopped answering the retrieve (C-GET)")
                code = int(status.Status)
                if code == 0xFF00:
                    continue
                if code == 0x0000:
                    return
                failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
                raise PacsError(f"{self.node.name} could not send the series {series_uid} (C-GET status 0x{code:04X}, "
                                f"{failed} images failed)")

    def store(self, datasets: Iterable[Any]) -> list[str]:
        datasets = list(datasets)
        classes = sorted({str(ds.SOPClassUID) for ds in datasets})
        stored: list[str] = []
        with self._association("a C-STORE", classes) as assoc:
            for dataset in datasets:
                uid = text_of(dataset, "SOPInstanceUID")
                status = assoc.send_c_store(dataset)
                if not status:  # pynetdicom gives no status when the connection drops or no answer comes
                    assoc.abort()
                    before = f"; stored before it: {', '.join(stored)}" if stored else "; nothing was stored"
                    raise PacsError(f"connection lost: {self.node.name} gave no answer to the C-STORE of {uid} (the "
                                    f"connection dropped, or no answer within {TIMEOUT_S:.0f} s){before}; sending "
                                    "again is safe (the same UIDs)")
                _check_status(status, self.node, f"the C-STORE of {uid}")
                stored.append(uid)
        return stored


def _check_status(status: Any, node: PacsNode, what: str) -> None:
    if not status:
        raise PacsError(f"timeout: {node.name} did not answer {what}")
    code = int(status.Status)
    if code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success, or stored with coercion/warnings
        raise PacsError(f"{node.name} refused {what} (status 0x{code:04X})")


def _store_handler(sink: InstanceSink | None):  # type: ignore[no-untyped-def]
    def handle(event: Any) -> int:
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            assert sink is not None
            sink(dataset, text_of(dataset, "SOPInstanceUID"))
        except Exception:  # the peer gets a failure status; the retrieve reports the missing images
            log.exception("could not keep a retrieved instance")
            return 0xA700
        return 0x0000

    return handle
