"""Overlay lookup tables and outlines (pure numpy)."""

from __future__ import annotations

import numpy as np

from brainseg_gui.ui.overlay import (
    COLOURS,
    TISSUE_ET_COLOUR,
    Fill,
    OverlayLook,
    OverlayMode,
    class_of_code,
    code_lut,
    outline,
)

ALL = frozenset({"WT", "TC", "ET", "ED", "NCR"})


def test_regions_draw_the_innermost_visible_region() -> None:
    table = class_of_code(OverlayMode.REGIONS, ALL)
    assert table.tolist() == [0, 1, 2, 2, 3, 3, 3, 3]  # WT=1, TC=2, ET=3 by bit priority
    without_et = class_of_code(OverlayMode.REGIONS, ALL - {"ET"})
    assert without_et[7] == 2  # an ET voxel then shows as tumour core
    only_wt = class_of_code(OverlayMode.REGIONS, frozenset({"WT"}))
    assert only_wt[7] == 1 and only_wt[4] == 0  # ET outside WT has no WT bit


def test_tissue_mode_and_lut_colours() -> None:
    look = OverlayLook(mode=OverlayMode.TISSUES, visible=ALL - {"ED"}, opacity=1.0)
    lut = code_lut(look, Fill.FILLED)
    assert lut.shape == (256, 4)
    assert tuple(lut[1]) == (0, 0, 0, 0)  # oedema hidden
    assert tuple(lut[3][:3]) == COLOURS["NCR"] and lut[3][3] == 255
    assert tuple(lut[7][:3]) == TISSUE_ET_COLOUR
    half = code_lut(OverlayLook(opacity=0.5), Fill.FILLED)
    assert half[1][3] == 128 and tuple(half[1][:3]) == COLOURS["WT"]


def test_outline_keeps_borders_between_classes() -> None:
    classes = np.zeros((7, 7), dtype=np.uint8)
    classes[1:6, 1:6] = 1
    classes[3, 3] = 2
    edge = outline(classes)
    assert edge[1, 1] and edge[1, 3] and not edge[2, 2] and not edge[0, 0]
    assert edge[3, 3] and edge[2, 3]  # the inner class and its neighbours
    assert edge.sum() == 16 + 1 + 4
