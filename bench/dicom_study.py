"""Time a radiologist's DICOM study through BrainSeg: indexing, and study to DICOM-SEG + SR written.

Run: python bench/dicom_study.py [path to ../shared/data] [--vendor ge] [--case BraTS2021_00019]
The study is built from a real BraTS case the shipped model did not train on (`dicom_study_builder`:
localizer, 5 mm T1, 4 mm T2, tilted 5 mm FLAIR, DWI with two b-values, ADC, 3D 1 mm T1ce; one
vendor's naming). Stages and targets (issue 17, on the 2-core CPU):
- indexing (every header read once, grouped, every series classed): <= 3 s; reference in the same
  run: a bare pydicom header read of the same files (the floor), printed as a ratio;
- study to SEG + SR written (`brainseg predict STUDY -o ... --dicom-out ...` in a fresh process:
  index, classify, read the four series, prepare, segment, map back to the T1ce series, write):
  <= 60 s and <= 2.5 GB peak memory; reference: `brainseg predict` on the BraTS-ready case folder,
  same process start, same model (ratio);
- Dice of the mask read back from the SEG against the truth on the T1ce grid.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "core"))

from dicom_study_builder import build_study

from brainseg_gui.core.dicom_study import open_dicom_study

ARGS = [a for i, a in enumerate(sys.argv[1:]) if not a.startswith("--") and not sys.argv[i].startswith("--")]
DATA = Path(ARGS[0]) if ARGS else REPO.parent / "shared" / "data"


def option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def timed_process(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of a child process; fails loudly on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024**2
    return seconds, peak


def main() -> None:
    import pydicom

    from brainseg_gui.core.dicom_results import read_study_seg
    from brainseg_gui.core.labels import LabelConvention, to_regions
    from brainseg_gui.core.metrics import evaluate_regions

    vendor, case_name = option("--vendor", "siemens"), option("--case", "BraTS2021_00019")
    case = next(DATA.glob(f"brats20*/{case_name}"))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="bench-dicom-") as folder:
        work = Path(folder)
        built = build_study(case, work / "study", vendor=vendor)
        files = built.files
        print(f"study: {case_name} as {vendor}, {len(built.series)} series, {len(files)} files "
              f"({sum(p.stat().st_size for p in files) / 1e6:.0f} MB)")

        start = time.perf_counter()
        for path in files:
            pydicom.dcmread(path, stop_before_pixels=True)
        floor = time.perf_counter() - start
        start = time.perf_counter()
        _index, assignment = open_dicom_study(built.root)
        indexing = time.perf_counter() - start
        right = sum(assignment.classes[s.series_uid].sequence == s.true_class for s in built.series)
        print(f"indexing + classing: {indexing:.2f} s (target 3 s); bare header read {floor:.2f} s; "
              f"ratio {indexing / floor:.2f}; {right}/{len(built.series)} series classed right")

        brainseg = [sys.executable, "-m", "brainseg_gui"]
        reference, reference_peak = timed_process(
            [*brainseg, "predict", str(case), "-o", str(work / "ref.nii.gz"), "--device", "cpu"])
        seconds, peak = timed_process(
            [*brainseg, "predict", str(built.root), "-o", str(work / "pred.nii.gz"), "--device", "cpu",
             "--dicom-out", str(work / "dicom")])
        print(f"study -> SEG + SR: {seconds:.1f} s (target 60 s), peak {peak:.2f} GB (target 2.5); "
              f"reference predict on the BraTS folder {reference:.1f} s, peak {reference_peak:.2f} GB; "
              f"ratio {seconds / reference:.2f}")

        import json

        sidecar = json.loads((work / "pred.json").read_text())
        series_file = Path(sidecar["prepared"]["source"])
        seg = next((work / "dicom").glob("*_seg.dcm"))
        regions = read_study_seg(seg, built.truth_grid, series_file)
        truth = to_regions(np.asarray(built.truth, dtype=np.uint8), LabelConvention.BRATS)
        scores = evaluate_regions(regions, truth, built.truth_grid.spacing)
        print("Dice of the SEG read back, on the T1ce grid: " + ", ".join(
            f"{name} {m.dice:.3f} (HD95 {m.hd95:.1f} mm)" for name, m in scores.items()))


if __name__ == "__main__":
    main()
