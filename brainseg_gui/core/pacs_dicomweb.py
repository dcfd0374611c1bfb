"""A DICOMweb node through dicomweb-client: QIDO-RS to find, WADO-RS to retrieve, STOW-RS to send."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

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
T = TypeVar("T")

_STUDY_FIELDS = ["StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                 "NumberOfStudyRelatedInstances", "AccessionNumber", "StudyDate", "PatientName", "PatientID"]
_SERIES_FIELDS = ["SeriesDescription", "SeriesNumber", "Modality", "NumberOfSeriesRelatedInstances"]


class _TimedSession(requests.Session):
    """A session whose every request times out (dicomweb-client passes none, and a dead node would hang)."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", TIMEOUT_S)
        # The node's CA file per request: requests lets $REQUESTS_CA_BUNDLE override a session's own.
        kwargs.setdefault("verify", self.verify)
        return super().request(*args, **kwargs)


class DicomWebConnection:
    """A PacsConnection over DICOMweb (see core/pacs_client.py)."""

    def __init__(self, node: PacsNode, secret: str | None) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.node = node
        session = _TimedSession()
        if node.auth == "basic":
            session.auth = (node.username, secret or "")
        elif node.auth == "bearer":
            session.headers["Authorization"] = f"Bearer {secret or ''}"
        if node.ca_bundle:
            session.verify = node.ca_bundle
        self.client = DICOMwebClient(url=node.url, session=session)
        # Busy-server answers (429, 503, ...) are retried 3 times from 0.2 s apart, not 5 times from 1 s:
        # a node that is down must be reported in seconds, and a connection test answer at once.
        self.client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=200)
        self._reachable = False

    def _call(self, what: str, action: Callable[[], T]) -> T:
        """Run one request; any failure becomes a PacsError saying what failed (DNS, TLS, auth, ...)."""
        if not self._reachable:  # DNS and TCP first: said precisely, and without the client's retries
            parts = urlsplit(self.node.url)
            check_reachable(self.node, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
            self._reachable = True
        try:
            return action()
        except requests.exceptions.SSLError as error:
            found = re.search(r"certificate verify failed:?[^)\]'\"]*", str(error))
            reason = found.group(0).strip() if found else _first_line(error)
            raise PacsError(f"TLS: the certificate of {self._host()} cannot be verified ({reason}); "
                            "give the site's CA file (--ca-bundle)") from None
        except requests.exceptions.ConnectionError:
            parts = urlsplit(self.node.url)
            check_reachable(self.node, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
            raise PacsError(f"connection lost: {self._host()} closed the connection during {what}; a STOW-RS "
                            "upload cut short stores nothing, and sending again is safe (the same UIDs)"
                            if "STOW" in what else f"connection lost: {self._host()} closed the connection during "
                            f"{what}; try again") from None
        except requests.exceptions.Timeout:
            raise PacsError(f"timeout: {self._host()} did not answer {what} within {TIMEOUT_S:.0f} s") from None
        except requests.exceptions.HTTPError as error:
            status = error.response.status_code if error.response is not None else 0
            if status in (401, 403):
                raise PacsError(f"auth: {self.node.name} refused our credentials for {what} (HTTP {status}); "
                                "check the user name and password or token") from None
            raise PacsError(f"{self.node.name} answered {what} with HTTP {status}: {_first_line(error)}") from None
        except (ValueError, KeyError, TypeError) as error:
            raise PacsError(f"{self.node.name} gave an answer to {what} that is not DICOMweb: {_first_line(error)}") from None

    def _host(self) -> str:
        return urlsplit(self.node.url).netloc or self.node.url

    def echo(self) -> str:
        self._call("a study query", lambda: self.client.search_for_studies(limit=1))
        return f"{self.node.name} answers QIDO-RS at {self.node.url}"

    def find_studies(self, query: StudyQuery) -> list[StudyMatch]:
        filters = {key: value for key, value in (
            ("PatientName", query.patient_name), ("PatientID", query.patient_id),
            ("AccessionNumber", query.accession), ("StudyDate", query.study_date()),
            ("ModalitiesInStudy", query.modality.upper())) if value}
        found = self._call("a study query", lambda: self.client.search_for_studies(
            search_filters=filters, fields=_STUDY_FIELDS, limit=query.limit))
        return [study_match(_dataset(entry)) for entry in found]

    def find_series(self, study_uid: str) -> list[SeriesMatch]:
        found = self._call("a series query", lambda: self.client.search_for_series(
            study_instance_uid=study_uid, fields=_SERIES_FIELDS))
        return [series_match(_dataset(entry)) for entry in found]

    def instance_uids(self, study_uid: str, series_uid: str) -> list[str]:
        found = self._call("an instance query", lambda: self.client.search_for_instances(
            study_instance_uid=study_uid, series_instance_uid=series_uid, fields=["SOPInstanceUID"]))
        return [text_of(_dataset(entry), "SOPInstanceUID") for entry in found]

    def retrieve(self, study_uid: str, series_uid: str, only: Sequence[str] | None, sink: InstanceSink,
                 cancel: CancelToken) -> None:
        if only is None:  # the whole series, streamed as one multipart answer
            stream = self._call("a series retrieve", lambda: self.client.iter_series(study_uid, series_uid))
            for dataset in _guarded(self, "a series retrieve", stream):
                if cancel.cancelled:
                    raise Cancelled("retrieve cancelled")
                sink(dataset, text_of(dataset, "SOPInstanceUID"))
            return
        for sop in only:
            if cancel.cancelled:
                raise Cancelled("retrieve cancelled")
            dataset = self._call("an instance retrieve", lambda sop=sop: self.client.retrieve_instance(  # type: ignore[misc]
                study_uid, series_uid, sop))
            sink(dataset, sop)

    def store(self, datasets: Iterable[Any]) -> list[str]:
        datasets = list(datasets)
        answer = self._call("a STOW-RS upload", lambda: self.client.store_instances(datasets))
        failed = [text_of(item, "ReferencedSOPInstanceUID") for item in answer.get("FailedSOPSequence", [])]
        if failed:
            raise PacsError(f"{self.node.name} refused {len(failed)} of {len(datasets)} instances: {', '.join(failed)}")
        return [text_of(item, "ReferencedSOPInstanceUID") for item in answer.get("ReferencedSOPSequence", [])]


def _guarded(connection: DicomWebConnection, what: str, items: Iterable[T]) -> Iterable[T]:
    """Iterate a streamed answer, turning a failure mid-stream into the same PacsError as a request's."""
    iterator = iter(items)
    while True:
        try:
            item = connection._call(what, lambda: next(iterator))
        except PacsError:
            raise
        except StopIteration:
            return
        yield item


def _dataset(entry: Any) -> Any:
    from pydicom import Dataset

    return Dataset.from_json(entry)


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:300]
