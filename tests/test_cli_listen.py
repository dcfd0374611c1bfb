"""The automatic node end to end with a real Orthanc: a study sent by C-STORE comes back as SEG + SR in
the PACS; a study that cannot be segmented is reported and does not block the next; a node killed
mid-study finishes it after a restart, once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brainseg_gui.core.pacs_nodes import NodeStore, PacsNode
from tests.pacs_orthanc import AE_TITLE, Orthanc, free_port, orthanc_missing

sys.path.insert(0, str(Path(__file__).parent / "core"))
from dicom_study_builder import build_study

pytestmark = pytest.mark.skipif(bool(orthanc_missing()), reason=orthanc_missing() or "Orthanc is installed")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from brainseg_gui.core.phantom import write_phantom_case

    return write_phantom_case(tmp_path_factory.mktemp("phantom"), seed=4, shape=(96, 112, 80))


class Node:
    """`brainseg listen` in its own process, with private settings, cache and work folder."""

    def __init__(self, orthanc: Orthanc, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.env = {**os.environ, "BRAINSEG_CONFIG_DIR": str(folder / "config"), "BRAINSEG_SECRETS": "file",
                    "BRAINSEG_CACHE_DIR": os.environ.get("BRAINSEG_CACHE_DIR", str(folder / "cache"))}
        NodeStore(folder / "config").add(PacsNode("pacs", "dimse", ae_title=AE_TITLE, host="127.0.0.1",
                                                  port=orthanc.dicom_port))
        self.config = folder / "listen.json"
        self.config.write_text(json.dumps({"ae_title": "BRAINSEG", "host": "127.0.0.1", "port": self.port,
                                           "work_dir": str(folder / "work"), "destination": "pacs",
                                           "stable_seconds": 1, "device": "cpu", "report_pdf": True,
                                           "report_failures": True}))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "brainseg_gui", "listen", "--config", str(self.config)],
                                        cwd=REPO, env=self.env, stdout=(self.folder / "node.log").open("ab"),
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "listening as" not in self.log():
            assert self.process.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.2)

    def log(self) -> str:
        path = self.folder / "node.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def state(self, study_uid: str) -> dict:
        path = self.folder / "work" / "state" / f"{study_uid}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def wait(self, study_uid: str, states: tuple[str, ...], timeout: float = 400) -> dict:
        deadline = time.monotonic() + timeout
        while self.state(study_uid).get("state") not in states:
            assert self.process is not None and self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, (self.state(study_uid), self.log()[-3000:])
            time.sleep(0.5)
        return self.state(study_uid)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)


def send(files: list[Path], port: int) -> None:
    """Our own C-STORE sender (what a scanner or a PACS router does)."""
    import pydicom
    from pynetdicom import AE, StoragePresentationContexts

    ae = AE(ae_title="SCANNER")
    ae.requested_contexts = StoragePresentationContexts
    assoc = ae.associate("127.0.0.1", port, ae_title="BRAINSEG")
    assert assoc.is_established
    try:
        for path in files:
            status = assoc.send_c_store(pydicom.dcmread(path))
            assert status and status.Status == 0x0000
    finally:
        assoc.release()


def results_in_pacs(orthanc: Orthanc, study_uid: str) -> dict[str, int]:
    series = orthanc.rest("POST", "/tools/find", json.dumps({"Level": "Series", "Expand": True, "Query": {
        "StudyInstanceUID": study_uid}}).encode())
    found: dict[str, int] = {}
    for entry in series:
        modality = entry["MainDicomTags"].get("Modality", "")
        found[modality] = found.get(modality, 0) + 1
    return found


def _text_of_sr(orthanc: Orthanc, study_uid: str) -> str:
    [instance] = orthanc.rest("POST", "/tools/find", json.dumps({"Level": "Instance", "Query": {
        "StudyInstanceUID": study_uid}}).encode())
    content = orthanc.rest("GET", f"/instances/{instance}/simplified-tags")
    return json.dumps(content)


def test_studies_in_results_out_failures_reported_and_restart_safe(orthanc: Orthanc, phantom: Path,
                                                                    tmp_path: Path) -> None:
    good = build_study(phantom, tmp_path / "good", thin=True, patient_id="LISTEN-GOOD")
    partial = build_study(phantom, tmp_path / "partial", thin=True, patient_id="LISTEN-PARTIAL")
    node = Node(orthanc, tmp_path / "node")
    node.start()
    try:
        two_of_four = [p for s in partial.series if s.key not in ("t2", "flair") for p in s.files]
        send(two_of_four, node.port)
        failed = node.wait(partial.study_uid, ("failed", "done"))
        assert failed["state"] == "failed" and "flair" in failed["detail"], failed
        send(good.files, node.port)
        node.wait(good.study_uid, ("processing",))
        node.stop(signal.SIGKILL)  # killed mid-study
        node.start()
        done = node.wait(good.study_uid, ("done", "failed"))
        assert done["state"] == "done", (done, node.log()[-3000:])
        assert done["attempts"] == 2 and len(done["sent"]) == 3
        assert results_in_pacs(orthanc, good.study_uid) == {"SEG": 1, "SR": 1, "DOC": 1}  # once, after a restart too
        assert results_in_pacs(orthanc, partial.study_uid) == {"SR": 1}  # why it was not segmented
        assert "did not segment" in _text_of_sr(orthanc, partial.study_uid)
        listen_log = (tmp_path / "node" / "work" / "listen.log").read_text()
        assert good.study_uid in listen_log and "segmented and sent" in listen_log
    finally:
        node.stop()
