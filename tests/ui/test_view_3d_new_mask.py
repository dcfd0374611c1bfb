"""A mask arriving while a new study's surfaces are still being built (an edit session restored on
open) must not lose the camera reset: the view showed nothing but black."""

from __future__ import annotations

import numpy as np

from brainseg_gui.app.region_codes import REGION_BITS
from brainseg_gui.core.labels import REGIONS


def test_a_mask_set_right_after_the_study_keeps_the_camera_reset(qtbot, make_view_3d) -> None:
    view, volume, _ = make_view_3d()
    view.planes_check.setChecked(False)
    view.set_volume(volume)  # starts building the surfaces, to reset the camera when done
    regions = np.stack([(volume.truth_code & REGION_BITS[r]) != 0 for r in REGIONS])
    view.set_prediction(regions)  # at once: cancels that job and starts another
    qtbot.waitUntil(lambda: view._job is None and "WT" in view.actors, timeout=30_000)
    image = view.render_image()
    r, g, b = (image[..., c].astype(int) for c in range(3))
    assert ((g > r + 40) & (g > b + 20)).sum() > 200  # the WT surface is in the picture
    view.close()
