"""What the status bar says about one voxel: position (file voxel and world mm), the four
intensities, the ground-truth label and the predicted class under it."""

from __future__ import annotations

import numpy as np

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.region_codes import tissue_of_code
from brainseg_gui.core.study import SEQUENCE_TITLES, SEQUENCES


def describe_voxel(volume: DisplayVolume, voxel: tuple[int, int, int],
                   prediction: np.ndarray | None = None, *, brain_mask: bool = False) -> str:
    """One line for the status bar; `voxel` is a RAS index, shown as the file's own (i, j, k).

    `brain_mask`: the layer under the cursor is the brain mask being checked (Prepare), not a tumour
    prediction, so it is named as such (its code is no tissue class).
    """
    i, j, k = volume.file_index(voxel)
    x, y, z = volume.world_mm(voxel)
    parts = [f"voxel ({i}, {j}, {k})", f"RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm"]
    values = []
    for name in SEQUENCES:
        image = volume.images.get(name)
        values.append(f"{SEQUENCE_TITLES[name]} {image[voxel]:.5g}" if image is not None else f"{SEQUENCE_TITLES[name]} –")
    parts.append("  ".join(values))
    truth = volume.truth_label(voxel)
    if truth is not None:
        parts.append(f"label {truth}")
    if prediction is not None and brain_mask:
        parts.append("brain mask" if int(prediction[voxel]) else "outside the brain mask")
    elif prediction is not None:
        parts.append(f"predicted {tissue_of_code(int(prediction[voxel])) or 'background'}")
    return "   |   ".join(parts)
