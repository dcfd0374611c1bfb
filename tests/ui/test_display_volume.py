"""DisplayVolume: RAS reorientation, file/world positions, window presets; region codes."""

from __future__ import annotations

import numpy as np

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.region_codes import region_code, tissue_of_code
from brainseg_gui.core.labels import LabelConvention, to_regions
from tests.ui.conftest import TOY_SHAPE, TOY_SPACING


def test_region_code_bits_and_tissues() -> None:
    regions = np.zeros((3, 2, 2, 1), dtype=bool)
    regions[0, 0, 0, 0] = True  # WT only: oedema
    regions[:2, 0, 1, 0] = True  # WT + TC: necrosis
    regions[:, 1, 0, 0] = True  # all: enhancing
    regions[2, 1, 1, 0] = True  # ET outside WT (non-nested prediction) still counts as ET
    code = region_code(regions)
    assert code[:, :, 0].tolist() == [[1, 3], [7, 4]]
    assert [tissue_of_code(c) for c in (0, 1, 3, 7, 4)] == [None, "ED", "NCR", "ET", "ET"]


def test_reorients_lps_file_to_ras(toy_study) -> None:
    volume = DisplayVolume.from_study(toy_study)
    assert toy_study.grid.axcodes == ("L", "P", "S")
    assert volume.shape == TOY_SHAPE and volume.spacing == TOY_SPACING
    # RAS x is the file's i reversed
    np.testing.assert_array_equal(volume.images["t1"], toy_study.images["t1"][::-1, ::-1, :])
    # world position of a RAS voxel = the grid affine applied to its file index
    voxel = (3, 5, 7)
    i, j, k = volume.file_index(voxel)
    assert (i, j, k) == (TOY_SHAPE[0] - 1 - 3, TOY_SHAPE[1] - 1 - 5, 7)
    expected = toy_study.grid.affine @ np.array([i, j, k, 1.0])
    np.testing.assert_allclose(volume.world_mm(voxel), expected[:3])
    # higher RAS index = further right / anterior / superior in world mm
    assert volume.world_mm((4, 5, 7))[0] > volume.world_mm(voxel)[0]
    assert volume.world_mm((3, 6, 7))[1] > volume.world_mm(voxel)[1]


def test_truth_code_matches_labels(toy_study) -> None:
    volume = DisplayVolume.from_study(toy_study)
    regions = to_regions(toy_study.labels, LabelConvention.BRATS)
    for bit, region in zip((1, 2, 4), regions):
        assert ((volume.truth_code & bit) != 0).sum() == region.sum() > 0
    centre = volume.centre()
    assert volume.truth_code[centre] == 7  # the tumour's centre is enhancing
    assert volume.truth_label(centre) == "ET (4)"


def test_window_presets_follow_percentiles(toy_study) -> None:
    volume = DisplayVolume.from_study(toy_study)
    low, high = volume.window("t1", "Full range")
    brain = toy_study.images["t1"][toy_study.images["t1"] != 0]
    assert (low, high) == (brain.min(), brain.max())
    soft = volume.window("t1", "Soft (2-98%)")
    assert low <= soft[0] < soft[1] <= high


def test_default_windows_are_ready_when_the_volume_is(toy_study, monkeypatch) -> None:
    """The loading worker computes every sequence's default window, so the first draw on the GUI
    thread computes no percentile; a preset asked for later is computed once and kept."""
    from brainseg_gui.app import display_volume

    volume = DisplayVolume.from_study(toy_study)
    calls = []
    real = np.percentile
    monkeypatch.setattr(display_volume.np, "percentile", lambda *a, **k: calls.append(1) or real(*a, **k))
    defaults = {name: volume.window(name) for name in volume.sequences}
    assert calls == [] and all(low < high for low, high in defaults.values())
    assert volume.window("t1", "Full range") == volume.window("t1", "Full range") and len(calls) == 1
