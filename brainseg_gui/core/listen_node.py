"""The automatic segmentation node: receive studies by C-STORE, segment each, send SEG and SR back.

    brainseg listen --config FILE     FILE (JSON): {"ae_title": "BRAINSEG", "port": 11112,
        "host": "0.0.0.0", "work_dir": "...", "destination": "<a node of brainseg pacs nodes>",
        "stable_seconds": 30, "max_parallel": 1, "model": null, "device": "auto", "report_pdf": false,
        "report_failures": false}

A study is taken as complete when nothing of it has arrived for `stable_seconds` (what PACS routers
and Orthanc's StableAge do: DICOM has no end-of-study message). Each study is segmented in its own
`brainseg predict STUDY --dicom-out ...` process: the DICOM-study path (series identified, prepared,
segmented, mapped back onto the T1ce series), with memory returned to the system after every study,
and a study that crashes its process cannot take the node down. At most `max_parallel` run at once.
The SEG and SR (and with report_pdf the one-page report as an Encapsulated PDF) are then sent to
`destination` (C-STORE or STOW-RS). A study that cannot be segmented
(missing sequences, gaps, not a brain MRI) is failed with the one-line reason in the log and its
state file, and the queue goes on; a failure to send is retried (3 attempts a study). The queue
lives on disk (core/listen_queue.py): a restart loses and repeats nothing.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.listen_queue import StudyQueue
from brainseg_gui.core.pacs_cache import checked_uid
from brainseg_gui.core.pacs_client import text_of
from brainseg_gui.core.pacs_connect import connect
from brainseg_gui.core.pacs_nodes import NodeStore, PacsError, PacsNode
from brainseg_gui.core.pacs_send import send_files
from brainseg_gui.core.read_guard import read_small_text

log = logging.getLogger(__name__)

#: How long one study's segmentation may run before it is stopped and failed.
STUDY_TIMEOUT_S = 1800


@dataclass(frozen=True)
class ListenConfig:
    work_dir: Path
    destination: str
    ae_title: str = "BRAINSEG"
    host: str = "0.0.0.0"
    port: int = 11112
    stable_seconds: float = 30.0
    max_parallel: int = 1
    model: str | None = None
    device: str = "auto"
    report_pdf: bool = False  # also send the one-page report as an Encapsulated PDF
    report_failures: bool = False  # send a study that cannot be segmented an SR saying why

    @classmethod
    def read(cls, path: Path) -> ListenConfig:
        """The config file, checked: PacsError naming the first bad key."""
        try:
            data = json.loads(read_small_text(Path(path), "listen config", 1 << 20))
        except (BrainSegError, ValueError) as error:
            raise PacsError(f"{path} is not a listen configuration (JSON): {error}") from None
        if not isinstance(data, dict):
            raise PacsError(f"{path}: expected a JSON object")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise PacsError(f"{path}: unknown keys {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        for key in ("work_dir", "destination"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise PacsError(f"{path}: {key!r} is required (text)")
        try:
            config = cls(**{**data, "work_dir": Path(data["work_dir"]).expanduser()})
            PacsNode("listen", "dimse", ae_title=config.ae_title, host="localhost", port=int(config.port))
        except (TypeError, ValueError) as error:
            raise PacsError(f"{path}: {error}") from None
        if not 0 <= float(config.stable_seconds) <= 3600 or not 1 <= int(config.max_parallel) <= 64:
            raise PacsError(f"{path}: stable_seconds must be 0..3600 and max_parallel 1..64")
        if config.device not in ("auto", "cpu", "cuda"):
            raise PacsError(f"{path}: device must be auto, cpu or cuda")
        return config


class ListenNode:
    """Receives, queues, segments and sends; `serve()` runs until `stop()`."""

    def __init__(self, config: ListenConfig, *, nodes: NodeStore | None = None) -> None:
        self.config = config
        self.queue = StudyQueue(config.work_dir)
        self.nodes = nodes or NodeStore()
        self.destination = self.nodes.get(config.destination)  # a wrong name fails before listening
        self._stop = threading.Event()
        self._server: Any = None

    def start_receiver(self) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        ae = AE(ae_title=self.config.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        ae.maximum_pdu_size = 0
        try:
            self._server = ae.start_server((self.config.host, int(self.config.port)), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        except OSError as error:
            raise PacsError(f"cannot listen on {self.config.host}:{self.config.port}: {error.strerror or error}") from None
        log.info("listening as %s on %s:%s", self.config.ae_title, self.config.host, self.config.port)

    def _on_store(self, event: Any) -> int:
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            study = checked_uid(text_of(dataset, "StudyInstanceUID"), "study")
            sop = checked_uid(text_of(dataset, "SOPInstanceUID"), "SOP instance")
            self.queue.received(study, sop, lambda path: dataset.save_as(str(path), enforce_file_format=True))
        except Exception:  # the sender gets a failure status for this instance; the node goes on
            log.exception("could not keep a received instance")
            return 0xA700
        return 0x0000

    def serve(self, poll_seconds: float = 0.5, on_ready: Callable[[], None] | None = None) -> None:
        """Receive and process until stop(): settled studies are claimed as workers free up."""
        for study in self.queue.recover():
            log.info("%s: back in the queue after a restart", study)
        self.start_receiver()
        if on_ready is not None:
            on_ready()
        running: set[Future[None]] = set()
        with ThreadPoolExecutor(max_workers=int(self.config.max_parallel)) as pool:
            while not self._stop.is_set():
                for study in self.queue.settle(float(self.config.stable_seconds)):
                    log.info("%s: complete (nothing new for %g s), queued", study, self.config.stable_seconds)
                running = {future for future in running if not future.done()}
                while len(running) < int(self.config.max_parallel):
                    claimed = self.queue.claim()
                    if claimed is None:
                        break
                    running.add(pool.submit(self._process, claimed))
                self._stop.wait(poll_seconds)
        if self._server is not None:
            self._server.shutdown()

    def stop(self) -> None:
        self._stop.set()

    def _process(self, study: str) -> None:
        started = time.perf_counter()
        out = self.queue.results / study
        dicom_out = out / "dicom"
        shutil.rmtree(out, ignore_errors=True)  # the last attempt's files: results are made anew
        out.mkdir(parents=True)
        command = [sys.executable, "-m", "brainseg_gui", "predict", str(self.queue.incoming / study), "-o",
                   str(out / "segmentation.nii.gz"), "--dicom-out", str(dicom_out), "--device", self.config.device]
        command += ["--model", str(self.config.model)] if self.config.model else []
        command += ["--report-pdf"] if self.config.report_pdf else []
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=STUDY_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            self._failed(study, f"segmentation ran over {STUDY_TIMEOUT_S} s", retry=False)
            return
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            reason = lines[-1].removeprefix("brainseg: error: ") if lines else f"exit status {done.returncode}"
            self._failed(study, reason, retry=done.returncode != 2)  # 2: the study itself cannot be segmented
            return
        try:
            sent = send_files(self.destination.name, sorted(dicom_out.glob("*.dcm")), self.nodes)  # logged too
        except PacsError as error:
            self._failed(study, f"sending to {self.destination.name} failed: {error}", retry=True)
            return
        seconds = time.perf_counter() - started
        self.queue.finish(study, ok=True, detail=f"SEG and SR sent to {self.destination.name}", sent=sent,
                          seconds=round(seconds, 1))
        log.info("%s: segmented and sent to %s in %.1f s (%s)", study, self.destination.name, seconds, ", ".join(sent))

    def _failed(self, study: str, reason: str, *, retry: bool) -> None:
        state = self.queue.finish(study, ok=False, detail=reason, retry=retry)
        log.warning("%s: %s (%s)", study, reason, "will retry" if state == "queued" else state)
        if state == "failed" and self.config.report_failures:
            self._report_failure(study, reason)

    def _report_failure(self, study: str, reason: str) -> None:
        """Send the study an SR saying it was not segmented and why (the command-line advice left out)."""
        import pydicom

        from brainseg_gui.core.dicom_sr import build_failure_report

        plain = re.split(r"[:;] (?:add|use) --|; run with", reason)[0]
        try:
            first = next(iter(sorted((self.queue.incoming / study).glob("*.dcm"))))
            report = build_failure_report([pydicom.dcmread(first, stop_before_pixels=True)], plain)
            connect(self.destination, self.nodes.secret(self.destination)).store([report])
            log.info("%s: sent an SR saying why to %s", study, self.destination.name)
        except (StopIteration, PacsError, OSError, ValueError) as error:
            log.warning("%s: could not send the SR saying why: %s", study, error)

