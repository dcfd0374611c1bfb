"""Time the full metric set (3 regions, all metrics incl. HD95) on real BraTS cases; prints seconds.

Run: python bench/bench_metrics.py [path to ../shared/data]. Pairs: a case against an eroded and
shifted copy of itself (typical), and against another patient's labels (far-apart surfaces, the
slow case for HD95: the common bounding box is large).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainseg_gui.core.labels import LabelConvention, to_regions
from brainseg_gui.core.metrics import evaluate_regions, format_table

DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"


def regions(case: str) -> np.ndarray:
    seg = nib.load(DATA / "brats2021" / case / f"{case}_seg.nii.gz")
    return to_regions(np.asanyarray(seg.dataobj), LabelConvention.BRATS)


def main() -> None:
    truth = regions("BraTS2021_00003")
    brain = np.asanyarray(nib.load(DATA / "brats2021" / "BraTS2021_00003" / "BraTS2021_00003_t1.nii.gz").dataobj) > 0
    shifted = np.roll(truth, (3, -2), axis=(1, 3))
    shifted[0] = ndimage.binary_erosion(shifted[0], iterations=2)
    pairs = {"eroded+shifted": shifted, "another patient": regions("BraTS2021_00005")}
    for name, pred in pairs.items():
        times = []
        for _ in range(5):
            start = time.perf_counter()
            results = evaluate_regions(pred, truth, (1.0, 1.0, 1.0), brain=brain)
            times.append(time.perf_counter() - start)
        print(f"{name}: {truth.shape[1:]} 3 regions, all metrics: best {min(times):.3f} s, "
              f"median {sorted(times)[2]:.3f} s")
        print(format_table(results))


if __name__ == "__main__":
    main()
