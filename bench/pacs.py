"""PACS speed against a local Orthanc: find, retrieve, and the automatic node's study -> SEG + SR.

Run: python bench/pacs.py [CASE_DIR] [--runs 5]
CASE_DIR (default ../shared/data/brats2021/BraTS2021_00003; the phantom when absent) is written as a
full clinical study (tests/core/dicom_study_builder.py: 7 series, ~330 files) and uploaded to a fresh
Orthanc (tests/pacs_orthanc.py). Each figure has a reference measured in the same run:
- find (DICOMweb QIDO-RS and DIMSE C-FIND) beside Orthanc's own REST /tools/find; goal <= 1 s;
- retrieve into an empty cache (WADO-RS, C-GET) beside Orthanc's own zip of the study (/archive);
  goal <= 10 s;
- `brainseg listen`: from the first instance sent by C-STORE to SEG and SR stored in Orthanc, beside
  `brainseg predict STUDY --dicom-out` run directly on the same files; goal <= 75 s.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "core")]
DEFAULT_CASE = REPO.parent / "shared" / "data" / "brats2021" / "BraTS2021_00003"


def timed(action, runs: int) -> float:  # type: ignore[no-untyped-def]
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> int:
    from dicom_study_builder import build_study

    from brainseg_gui.core.pacs_cache import retrieve_study
    from brainseg_gui.core.pacs_client import StudyQuery
    from brainseg_gui.core.pacs_connect import connect
    from brainseg_gui.core.pacs_nodes import NodeStore, PacsNode
    from tests.pacs_orthanc import AE_TITLE, PASSWORD, USER, orthanc_missing, start_orthanc
    from tests.test_cli_listen import Node, results_in_pacs, send

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    if orthanc_missing():
        raise SystemExit(f"bench/pacs.py: {orthanc_missing()}")
    work = Path(tempfile.mkdtemp(prefix="bench-pacs-"))
    os.environ.update({"BRAINSEG_CONFIG_DIR": str(work / "config"), "BRAINSEG_SECRETS": "file",
                       "BRAINSEG_CACHE_DIR": str(work / "cache")})
    case = Path(args[0]) if args else DEFAULT_CASE
    if not case.is_dir():
        from brainseg_gui.core.phantom import write_phantom_case

        case = write_phantom_case(work / "phantom", seed=4, shape=(160, 192, 144))
    study = build_study(case, work / "study", patient_id="BENCH-1")
    files = [p for s in study.series for p in s.files]
    orthanc = start_orthanc(work / "orthanc")
    try:
        orthanc.upload(files)
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; Orthanc "
              f"{orthanc.rest('GET', '/system')['Version']}; study of {len(study.series)} series, {len(files)} files, "
              f"{sum(p.stat().st_size for p in files) / 1e6:.0f} MB ({case.name})")
        store = NodeStore()
        store.add(PacsNode("web", "dicomweb", url=orthanc.dicomweb_url, auth="basic", username=USER), secret=PASSWORD)
        store.add(PacsNode("dimse", "dimse", ae_title=AE_TITLE, host="127.0.0.1", port=orthanc.dicom_port))
        query = json.dumps({"Level": "Study", "Expand": True, "Query": {"PatientID": "BENCH-1"}}).encode()
        reference = timed(lambda: orthanc.rest("POST", "/tools/find", query), runs)
        print(f"\nfind (median of {runs}; goal <= 1 s): Orthanc REST /tools/find {reference:.3f} s")
        for name in ("web", "dimse"):
            connection = connect(store.get(name), store.secret(store.get(name)))
            seconds = timed(lambda c=connection: c.find_studies(StudyQuery(patient_id="BENCH-1")), runs)
            print(f"  {name:5}: {seconds:.3f} s ({seconds / reference:.1f}x the REST reference)")
        orthanc_id = orthanc.rest("POST", "/tools/lookup", study.study_uid.encode())[0]["ID"]
        started = time.perf_counter()
        import urllib.request

        request = urllib.request.Request(f"{orthanc.url}/studies/{orthanc_id}/archive")
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        with urllib.request.urlopen(request, timeout=300) as answer:
            size = len(answer.read())
        reference = time.perf_counter() - started
        print(f"\nretrieve into an empty cache (goal <= 10 s): Orthanc's zip of the study {reference:.2f} s "
              f"({size / 1e6:.0f} MB)")
        for name in ("web", "dimse"):
            connection = connect(store.get(name), store.secret(store.get(name)))
            started = time.perf_counter()
            result = retrieve_study(connection, study.study_uid, cache_dir=work / f"cache-{name}")
            seconds = time.perf_counter() - started
            print(f"  {name:5}: {seconds:.2f} s for {result.instances} files ({seconds / reference:.1f}x the zip)")
        started = time.perf_counter()
        direct = subprocess.run([sys.executable, "-m", "brainseg_gui", "predict", str(study.root), "-o",
                                 str(work / "direct.nii.gz"), "--dicom-out", str(work / "direct")],
                                capture_output=True, text=True, check=False)
        reference = time.perf_counter() - started
        if direct.returncode != 0:
            raise SystemExit(f"brainseg predict failed: {direct.stderr[-1500:]}")
        node = Node(orthanc, work / "node")
        node.start()
        try:
            started = time.perf_counter()
            send(files, node.port)
            received = time.perf_counter() - started
            while results_in_pacs(orthanc, study.study_uid).get("SR", 0) < 1:
                if time.perf_counter() - started > 600:
                    raise SystemExit(f"no results after 600 s:\n{node.log()[-2000:]}")
                time.sleep(0.25)
            seconds = time.perf_counter() - started
        finally:
            node.stop()
        state = node.state(study.study_uid)
        print(f"\nautomatic node, study sent -> SEG + SR stored back (goal <= 75 s): {seconds:.1f} s "
              f"(receiving {received:.1f} s, quiet wait 1 s, segmenting + sending {state.get('seconds', 0):.1f} s); "
              f"brainseg predict --dicom-out on the files directly: {reference:.1f} s (ratio {seconds / reference:.2f})")
    finally:
        orthanc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
