"""Compare two label maps voxel by voxel (smoke.sh: the bundle's prediction against the package's).

Prints the share of identical voxels and Dice per BraTS region; exits 1 when they disagree more
than a rounding difference could explain (Dice < 0.999 in a region, or under 99.9% identical voxels).
"""

from __future__ import annotations

import sys

import nibabel as nib
import numpy as np

from brainseg_gui.core.labels import REGIONS, LabelConvention, to_regions


def main(bundle: str, package: str) -> int:
    first, second = (nib.load(path) for path in (bundle, package))
    a, b = (np.asarray(image.dataobj).astype(np.uint8) for image in (first, second))
    if a.shape != b.shape or not np.allclose(first.affine, second.affine, atol=1e-4):
        print(f"compare: DIFFERENT grids: {a.shape} vs {b.shape}")
        return 1
    identical = float((a == b).mean())
    regions_a, regions_b = to_regions(a, LabelConvention.BRATS), to_regions(b, LabelConvention.BRATS)
    dice = {}
    for index, name in enumerate(REGIONS):
        x, y = regions_a[index], regions_b[index]
        total = int(x.sum()) + int(y.sum())
        dice[name] = 1.0 if total == 0 else 2 * int((x & y).sum()) / total
    text = " ".join(f"{name} {value:.4f}" for name, value in dice.items())
    print(f"compare: {identical * 100:.3f}% identical voxels ({int((a != b).sum())} differ); Dice {text}")
    return 0 if identical >= 0.999 and min(dice.values()) >= 0.999 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
