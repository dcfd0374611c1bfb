"""PACS from the command line against a real Orthanc (DICOMweb and DIMSE): nodes with their secrets
kept apart, find, get (resumable, cached), send back; every fault one clear line, nothing partial."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pydicom
import pytest

from brainseg_gui.core.errors import Cancelled
from brainseg_gui.core.pacs_cache import COMPLETE, retrieve_study, study_folder
from brainseg_gui.core.pacs_client import StudyQuery
from brainseg_gui.core.pacs_connect import connect
from brainseg_gui.core.pacs_nodes import NodeStore, PacsError, PacsNode
from brainseg_gui.core.progress import CancelToken
from tests.cli_support import one_error_line, run
from tests.pacs_orthanc import AE_TITLE, PASSWORD, USER, Orthanc, Relay, free_port, orthanc_missing

sys.path.insert(0, str(Path(__file__).parent / "core"))
from dicom_study_builder import BuiltStudy, build_study

pytestmark = pytest.mark.skipif(bool(orthanc_missing()), reason=orthanc_missing() or "Orthanc is installed")
PROTOCOLS = ("web", "dimse")


@pytest.fixture(scope="module")
def study(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> BuiltStudy:
    """A multi-series tumour study (from the phantom case) uploaded to Orthanc."""
    from brainseg_gui.core.phantom import write_phantom_case

    case = write_phantom_case(tmp_path_factory.mktemp("phantom"), seed=4, shape=(96, 112, 80))
    built = build_study(case, tmp_path_factory.mktemp("study") / "export", thin=True, patient_id="PACS-TEST-1")
    orthanc.upload(_files(built.root))
    return built


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_nodes_are_kept_with_their_secret_apart(capsys, orthanc: Orthanc, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAINSEG_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("BRAINSEG_SECRETS", "file")
    monkeypatch.setenv("BRAINSEG_PACS_SECRET", PASSWORD)
    status, out, err = run(capsys, "pacs", "nodes", "add", "web", "--dicomweb", orthanc.dicomweb_url, "--auth", "basic",
                           "--user", USER)
    assert status == 0, err
    status, out, err = run(capsys, "pacs", "nodes", "add", "dimse", "--dimse", f"{AE_TITLE}@127.0.0.1:{orthanc.dicom_port}")
    assert status == 0, err
    nodes_file, secrets_file = tmp_path / "config" / "pacs_nodes.json", tmp_path / "config" / "pacs_secrets.json"
    assert PASSWORD not in nodes_file.read_text()
    assert json.loads(secrets_file.read_text()) == {"web": PASSWORD}
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    status, out, err = run(capsys, "pacs", "nodes")
    assert "web: DICOMweb" in out and "dimse: DIMSE ORTHANC@127.0.0.1" in out and PASSWORD not in out + err
    for name in PROTOCOLS:
        status, out, err = run(capsys, "pacs", "nodes", "test", name, "-v")
        assert status == 0 and out.startswith("ok: "), err
        assert PASSWORD not in out + err
    status, out, err = run(capsys, "pacs", "nodes", "add", "web", "--dicomweb", orthanc.dicomweb_url)
    assert status == 2 and "exists already" in one_error_line(err)
    status, out, err = run(capsys, "pacs", "nodes", "remove", "web")
    assert status == 0 and json.loads(secrets_file.read_text()) == {}


@pytest.mark.parametrize("name", PROTOCOLS)
def test_find_studies_and_series(capsys, pacs_nodes: NodeStore, study: BuiltStudy, name: str) -> None:
    status, out, err = run(capsys, "pacs", "find", "--node", name, "--patient-id", "PACS-TEST-1", "--modality", "MR",
                           "--from", "2024-01-01", "--to", "2024-12-31", "--json")
    assert status == 0, err
    found = json.loads(out)
    assert [row["study_uid"] for row in found] == [study.study_uid]
    assert found[0]["series_count"] == len(study.series)
    status, out, err = run(capsys, "pacs", "find", "--node", name, "--patient-id", "NOBODY")
    assert status == 0 and "0 studies found" in out
    status, out, err = run(capsys, "pacs", "find", "--node", name, "--study", study.study_uid)
    assert status == 0, err
    for series in study.series:
        assert series.series_uid in out and series.description in out


@pytest.mark.parametrize("name", PROTOCOLS)
def test_get_brings_the_study_that_then_opens(capsys, pacs_nodes: NodeStore, study: BuiltStudy, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("BRAINSEG_CACHE_DIR", str(tmp_path / "cache"))
    output = tmp_path / "got"
    status, out, err = run(capsys, "pacs", "get", study.study_uid, "--node", name, "-o", output)
    assert status == 0, err
    got = {p.name for p in _files(output)}
    assert got == {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID + ".dcm" for p in _files(study.root)}
    status, out, err = run(capsys, "info", output, "--json")
    assert status == 0, err
    chosen = json.loads(out)["dicom"]["sequences"]
    for sequence in ("t1", "t1ce", "t2", "flair"):
        assert chosen[sequence]["series_uid"] == study.get(sequence).series_uid
    again = tmp_path / "again"
    status, out, err = run(capsys, "pacs", "get", study.study_uid, "--node", name, "-o", again)
    assert status == 0 and "0 fetched now" in out
    status, out, err = run(capsys, "pacs", "get", study.study_uid, "--node", name, "-o", output)  # not empty
    assert status == 2 and "not an empty folder" in one_error_line(err)


@pytest.mark.parametrize("name", PROTOCOLS)
def test_an_interrupted_retrieve_resumes_with_what_is_missing(pacs_nodes: NodeStore, study: BuiltStudy, tmp_path: Path,
                                                              name: str) -> None:
    connection = connect(pacs_nodes.get(name), pacs_nodes.secret(pacs_nodes.get(name)))
    cancel = CancelToken()

    def stop_after_some(fraction: float, _message: str) -> None:
        if fraction > 0.4:
            cancel.cancel()

    with pytest.raises(Cancelled):
        retrieve_study(connection, study.study_uid, cache_dir=tmp_path, progress=stop_after_some, cancel=cancel)
    folder = study_folder(study.study_uid, tmp_path)
    kept = _files(folder)
    assert not (folder / COMPLETE).exists() and kept
    assert not [p for p in kept if p.name.startswith(".")]  # no half-written file
    result = retrieve_study(connection, study.study_uid, cache_dir=tmp_path)
    assert (folder / COMPLETE).is_file()
    assert result.fetched == result.instances - (len(kept) - 1)  # retrieve.json is the one other file
    assert result.instances == len(_files(study.root))


def test_send_results_back_and_read_them_from_the_pacs(capsys, pacs_nodes: NodeStore, orthanc: Orthanc, study: BuiltStudy,
                                                       tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    source = pydicom.dcmread(study.get("t1ce").files[0])
    for index, name in enumerate(PROTOCOLS):  # one SR-like instance per protocol, in the study
        from pydicom.uid import generate_uid

        source.SOPInstanceUID = generate_uid()
        source.SeriesInstanceUID = generate_uid()
        source.SeriesDescription = f"BrainSeg test result {index}"
        path = results / f"{name}.dcm"
        source.save_as(path, enforce_file_format=True)
        status, out, err = run(capsys, "pacs", "send", path, "--to", name, "--yes")
        assert status == 0, err
        assert f"sent {source.SOPInstanceUID}" in out
        stored = orthanc.rest("POST", "/tools/find", json.dumps(
            {"Level": "Instance", "Query": {"SOPInstanceUID": source.SOPInstanceUID}}).encode())
        assert len(stored) == 1
    log = (Path(os.environ["BRAINSEG_CONFIG_DIR"]) / "pacs_sent.jsonl").read_text().splitlines()
    assert len(log) == 2 and json.loads(log[-1])["node"] == "dimse"
    status, out, err = run(capsys, "pacs", "send", results, "--to", "web")  # not a terminal: asks for --yes
    assert status == 2 and "--yes" in one_error_line(err)


def test_each_fault_is_one_line_that_says_what_failed(capsys, pacs_nodes: NodeStore, orthanc: Orthanc,
                                                     study: BuiltStudy, tmp_path: Path) -> None:
    closed = free_port()
    pacs_nodes.add(PacsNode("closed", "dimse", ae_title=AE_TITLE, host="127.0.0.1", port=closed))
    pacs_nodes.add(PacsNode("closedweb", "dicomweb", url=f"http://127.0.0.1:{closed}/dicom-web"))
    pacs_nodes.add(PacsNode("nowhere", "dicomweb", url="http://no-such-host.invalid/dicom-web"))
    pacs_nodes.add(PacsNode("badpass", "dicomweb", url=orthanc.dicomweb_url, auth="basic", username=USER), secret="wrong")
    pacs_nodes.add(PacsNode("badaet", "dimse", ae_title="NOT-ORTHANC", host="127.0.0.1", port=orthanc.dicom_port))
    for name, start in (("closed", "refused:"), ("closedweb", "refused:"), ("nowhere", "DNS:"), ("badpass", "auth:"),
                        ("badaet", "auth:")):
        status, _, err = run(capsys, "pacs", "nodes", "test", name)
        line = one_error_line(err)
        assert status == 2 and line.startswith(f"brainseg: error: {start}"), (name, line)
        assert "wrong" not in line
    status, _, err = run(capsys, "pacs", "find", "--node", "missing")
    assert status == 2 and "no PACS node called 'missing'" in one_error_line(err)
    status, _, err = run(capsys, "pacs", "get", "1.2.3.4.5", "--node", "web", "-o", tmp_path / "x")
    assert status == 2 and "has no study 1.2.3.4.5" in one_error_line(err) and not (tmp_path / "x").exists()
    status, _, err = run(capsys, "pacs", "get", "../../etc", "--node", "web", "-o", tmp_path / "x")
    assert status == 2 and "not a DICOM study UID" in one_error_line(err)
    status, _, err = run(capsys, "pacs", "find", "--node", "web", "--from", "2024-13-45")
    assert status == 2 and "not a date" in one_error_line(err)


@pytest.mark.parametrize("name", PROTOCOLS)
def test_a_study_deleted_mid_retrieve_leaves_nothing_in_the_cache(pacs_nodes: NodeStore, orthanc: Orthanc,
                                                                  tmp_path: Path, name: str) -> None:
    from brainseg_gui.core.phantom import write_phantom_case

    case = write_phantom_case(tmp_path / "phantom", seed=5, shape=(64, 72, 56))
    doomed = build_study(case, tmp_path / "doomed", thin=True, patient_id=f"DOOMED-{name}")
    orthanc.upload(_files(doomed.root))
    orthanc_id = orthanc.rest("POST", "/tools/lookup", doomed.study_uid.encode())[0]["ID"]
    connection = connect(pacs_nodes.get(name), pacs_nodes.secret(pacs_nodes.get(name)))
    deleted = []

    def delete_once(fraction: float, _message: str) -> None:
        if fraction > 0.2 and not deleted:
            orthanc.rest("DELETE", f"/studies/{orthanc_id}")
            deleted.append(True)

    with pytest.raises(PacsError, match="no longer has|has no study|did not arrive"):
        retrieve_study(connection, doomed.study_uid, cache_dir=tmp_path / "cache", progress=delete_once)
    assert not study_folder(doomed.study_uid, tmp_path / "cache").exists()


def test_a_study_without_mr_is_refused_before_anything_is_fetched(pacs_nodes: NodeStore, orthanc: Orthanc,
                                                                  study: BuiltStudy, tmp_path: Path) -> None:
    from pydicom.uid import generate_uid

    ct_study, ct_series = generate_uid(), generate_uid()
    source = pydicom.dcmread(_files(study.root)[0])
    source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID = ct_study, ct_series, generate_uid()
    source.Modality, source.PatientID = "CT", "CT-ONLY"
    source.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    orthanc.upload([tmp_path / "ct.dcm"])
    connection = connect(pacs_nodes.get("web"), pacs_nodes.secret(pacs_nodes.get("web")))
    assert connection.find_studies(StudyQuery(modality="CT"))
    with pytest.raises(PacsError, match="holds no MR series"):
        retrieve_study(connection, ct_study, cache_dir=tmp_path / "cache")
    assert not study_folder(ct_study, tmp_path / "cache").exists()


def test_a_tls_node_is_trusted_only_with_the_sites_ca(capsys, pacs_nodes: NodeStore, orthanc: Orthanc,
                                                      study: BuiltStudy, tmp_path: Path) -> None:
    import shutil as which

    if which.which("openssl") is None:
        pytest.skip("the openssl tool is needed to make the test certificates")
    proxy = Relay(orthanc.http_port, tls_folder=tmp_path / "tls")
    try:
        url = f"https://127.0.0.1:{proxy.port}/dicom-web"
        os.environ["BRAINSEG_PACS_SECRET"] = PASSWORD
        status, _, err = run(capsys, "pacs", "nodes", "add", "untrusted", "--dicomweb", url, "--auth", "basic",
                             "--user", USER)
        assert status == 0, err
        status, _, err = run(capsys, "pacs", "nodes", "test", "untrusted")
        assert status == 2 and one_error_line(err).startswith("brainseg: error: TLS: "), err
        assert "--ca-bundle" in err
        status, _, err = run(capsys, "pacs", "nodes", "add", "site", "--dicomweb", url, "--auth", "basic", "--user",
                             USER, "--ca-bundle", proxy.ca_file)
        assert status == 0, err
        status, out, err = run(capsys, "pacs", "find", "--node", "site", "--patient-id", "PACS-TEST-1", "--json")
        assert status == 0, err
        assert [row["study_uid"] for row in json.loads(out)] == [study.study_uid]
    finally:
        os.environ.pop("BRAINSEG_PACS_SECRET", None)
        proxy.close()


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_a_connection_dropped_mid_send_says_so_and_leaves_nothing_in_the_pacs(
        capsys, pacs_nodes: NodeStore, orthanc: Orthanc, study: BuiltStudy, tmp_path: Path, kind: str) -> None:
    from pydicom.uid import generate_uid

    source = pydicom.dcmread(study.get("t1ce").files[0])
    source.SOPInstanceUID, source.SeriesInstanceUID = generate_uid(), generate_uid()
    source.save_as(tmp_path / "result.dcm", enforce_file_format=True)
    size = (tmp_path / "result.dcm").stat().st_size
    relay = Relay(orthanc.http_port if kind == "dicomweb" else orthanc.dicom_port, cut_after=size // 2)
    try:
        if kind == "dicomweb":
            pacs_nodes.add(PacsNode("flaky", "dicomweb", url=f"http://127.0.0.1:{relay.port}/dicom-web", auth="basic",
                                    username=USER), secret=PASSWORD)
        else:
            pacs_nodes.add(PacsNode("flaky", "dimse", ae_title=AE_TITLE, host="127.0.0.1", port=relay.port))
        status, _, err = run(capsys, "pacs", "send", tmp_path / "result.dcm", "--to", "flaky", "--yes")
        line = one_error_line(err)
        assert status == 2 and line.startswith("brainseg: error: connection lost: ") and "again" in line, line
    finally:
        relay.close()
    stored = orthanc.rest("POST", "/tools/find", json.dumps(
        {"Level": "Instance", "Query": {"SOPInstanceUID": source.SOPInstanceUID}}).encode())
    assert stored == []
    assert not (Path(os.environ["BRAINSEG_CONFIG_DIR"]) / "pacs_sent.jsonl").exists()
