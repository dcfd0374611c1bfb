"""Tumour overlays on a slice: one pyqtgraph ImageItem per source with a lookup table.

Each source (prediction, ground truth) is a uint8 region code per voxel (WT=1, TC=2, ET=4 bits,
see `display_volume.region_code`). What a code looks like (regions or tissues, which are shown,
colour, opacity) is an 8-entry RGBA lookup table, so toggling a region or moving the opacity slider
changes only the table, never the image. Outline mode keeps only the boundary pixels of the
current slice: in regions mode the border of each visible region (TC's border is that of NCR+ET,
WT's that of the whole tumour), in tissues mode the border of each class. This module is the one
place that says which colour a region or label is drawn in (`colour_of`, `label_colour`): the
legend, the edit panel's class swatches and the brush outline ask it. The colours themselves are
core/region_colours.py's, which the report's key slices share.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QImage

from brainseg_gui.app.region_codes import REGION_BITS, tissue_of_code
from brainseg_gui.core.region_colours import COLOURS, OVERLAY_OPACITY, TISSUE_ET_COLOUR


class OverlayMode(str, Enum):
    REGIONS = "regions"  # nested WT / TC / ET, innermost visible region wins
    TISSUES = "tissues"  # the raw label classes NCR / ED / ET


class Fill(str, Enum):
    FILLED = "filled"
    OUTLINE = "outline"


#: Class names per mode, in drawing priority order (outermost first).
CLASSES: dict[OverlayMode, tuple[str, str, str]] = {
    OverlayMode.REGIONS: ("WT", "TC", "ET"),
    OverlayMode.TISSUES: ("ED", "NCR", "ET"),
}


def colour_of(name: str, mode: OverlayMode) -> tuple[int, int, int]:
    if mode is OverlayMode.TISSUES and name == "ET":
        return TISSUE_ET_COLOUR
    return COLOURS[name]


def label_colour(tissue: str, look: OverlayLook) -> tuple[int, int, int]:
    """The colour the overlay draws a voxel of a tissue class (NCR, ED, ET) in, under `look`.

    In regions mode a painted NCR voxel shows as TC, ED as WT (the innermost visible region that holds
    it): the edit panel and the brush show this colour, so what is painted looks like the swatch.
    A class whose regions are all hidden gets the colour it has when they are shown.
    """
    code = max(c for c in range(1, 8) if tissue_of_code(c) == tissue)  # the nested code: NCR = WT|TC
    for visible in (look.visible, frozenset(CLASSES[look.mode])):
        drawn = int(class_of_code(look.mode, visible)[code])
        if drawn:
            return colour_of(CLASSES[look.mode][drawn - 1], look.mode)
    raise ValueError(f"unknown tissue class {tissue!r}")


@dataclass(frozen=True)
class OverlayLook:
    """How overlays are drawn: the same for every view; `fill` per source."""

    mode: OverlayMode = OverlayMode.REGIONS
    visible: frozenset[str] = frozenset({"WT", "TC", "ET", "ED", "NCR"})
    opacity: float = OVERLAY_OPACITY


def class_of_code(mode: OverlayMode, visible: frozenset[str]) -> np.ndarray:
    """(8,) uint8: code -> index+1 of the class drawn for it in CLASSES[mode], 0 for nothing."""
    table = np.zeros(8, dtype=np.uint8)
    names = CLASSES[mode]
    for code in range(1, 8):
        if mode is OverlayMode.TISSUES:
            tissue = tissue_of_code(code)
            candidates = [tissue] if tissue is not None else []
        else:  # innermost visible region the voxel belongs to
            candidates = [r for r in ("ET", "TC", "WT") if code & REGION_BITS[r]]
        shown = [name for name in candidates if name in visible]
        if shown:
            table[code] = names.index(shown[0]) + 1
    return table


def code_lut(look: OverlayLook, fill: Fill) -> np.ndarray:
    """(256, 4) uint8 RGBA table over region codes (0-7 used): the colour drawn for each code.

    256 entries because pyqtgraph spreads a uint8 image's table over 0-255 when no levels are set;
    with a full table each code indexes its own entry (Qt's Indexed8 colour table).
    """
    alpha = look.opacity if fill is Fill.FILLED else 0.55 + 0.45 * look.opacity
    classes = class_of_code(look.mode, look.visible)
    lut = np.zeros((256, 4), dtype=np.uint8)
    names = CLASSES[look.mode]
    for code in range(1, 8):
        if classes[code]:
            lut[code, :3] = colour_of(names[classes[code] - 1], look.mode)
            lut[code, 3] = round(255 * min(max(alpha, 0.0), 1.0))
    return lut


def outline(classes: np.ndarray) -> np.ndarray:
    """Boundary pixels of a 2D class image: non-zero and unlike a 4-neighbour (outside counts as 0)."""
    padded = np.pad(classes, 1)
    centre = padded[1:-1, 1:-1]
    edge = ((padded[:-2, 1:-1] != centre) | (padded[2:, 1:-1] != centre)
            | (padded[1:-1, :-2] != centre) | (padded[1:-1, 2:] != centre))
    return edge & (centre != 0)


#: Code drawn on each region's border in `region_outline`: the nested code whose innermost region it is.
_BORDER_CODES = (("ET", 7), ("TC", 3), ("WT", 1))


def region_outline(code: np.ndarray, visible: frozenset[str]) -> np.ndarray:
    """uint8 code image of the borders of the visible regions of a 2D code slice, 0 elsewhere.

    Each region's border is that of its whole extent (TC = NCR+ET, WT = all labels), so a ring of
    enhancing tumour around necrosis shows the TC border at its outside and the ET border inside.
    Where borders coincide the outer region is drawn: with the inner one drawn instead, TC would
    vanish under ET's outer border wherever ET forms the rim of the core (the usual case).
    Each border pixel holds a code whose innermost region is the border's, so the code LUT colours it.
    """
    drawn = np.zeros(code.shape, dtype=np.uint8)
    for name, border_code in _BORDER_CODES:  # inner first: outer borders overwrite
        if name in visible:
            drawn[outline((code & REGION_BITS[name]) != 0)] = border_code
    return drawn


def outline_image(code: np.ndarray, look: OverlayLook) -> np.ndarray:
    """The outline drawing of a 2D code slice: region borders (regions mode) or each tissue class's
    own border (tissue classes do not nest). Computed on the box around the labelled pixels only
    (a tumour is a small part of a slice: this keeps a slice step at a few ms with outlines on)."""
    rows, cols = np.flatnonzero(code.any(axis=1)), np.flatnonzero(code.any(axis=0))
    drawn = np.zeros(code.shape, dtype=np.uint8)
    if rows.size == 0:
        return drawn
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # the border of the box is outside
    crop = code[box]
    if look.mode is OverlayMode.REGIONS:
        drawn[box] = region_outline(crop, look.visible)
    else:
        classes = class_of_code(look.mode, look.visible)[crop]
        drawn[box] = np.where(outline(classes), crop, 0)
    return drawn


class SliceImageItem(pg.ImageItem):
    """A pyqtgraph ImageItem that hands Qt an image in the raster engine's native format.

    pyqtgraph renders a uint8 image with a lookup table as Indexed8 and a windowed grey image as
    Grayscale8. Qt draws those through a generic path at every paint (up to 10x slower per image
    than premultiplied ARGB32 when scaled and flipped as here; bench/ui.py), so the rendered image
    is converted once, in C++, when its data, levels or table change. The table lookup itself stays
    Qt's (the Indexed8 colour table): no per-pixel work in Python.
    """

    def render(self) -> None:
        super().render()
        qimage = getattr(self, "qimage", None)
        if qimage is not None and not self._unrenderable and qimage.format() != QImage.Format.Format_ARGB32_Premultiplied:
            self.qimage = qimage.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)


class OverlayLayer:
    """One overlay source in one slice view: an ImageItem showing code slices through a code LUT.

    The image is indexed straight into the table (Qt's Indexed8 format): no per-pixel colour work in
    Python. Filled mode shows the code slice itself; outline mode keeps the codes on class borders.
    """

    def __init__(self, name: str, fill: Fill, z_value: float) -> None:
        self.name = name
        self.fill = fill
        self.item = SliceImageItem(axisOrder="col-major")
        self.item.setZValue(z_value)
        self.item.setVisible(False)
        self._look = OverlayLook()
        self._code: np.ndarray | None = None
        self.item.setLookupTable(code_lut(self._look, self.fill))

    @property
    def look(self) -> OverlayLook:
        return self._look

    def set_look(self, look: OverlayLook, fill: Fill | None = None) -> None:
        """Change mode, visible classes, opacity or fill. Filled mode only swaps the table."""
        outline_before = self.fill is Fill.OUTLINE
        shown_before = (self._look.mode, self._look.visible)
        self._look = look
        if fill is not None:
            self.fill = fill
        self.item.setLookupTable(code_lut(look, self.fill))
        outline_now = self.fill is Fill.OUTLINE
        if outline_before != outline_now or (outline_now and shown_before != (look.mode, look.visible)):
            self._redraw()

    def set_slice(self, code: np.ndarray | None) -> None:
        """Show a 2D code slice (col-major: first axis horizontal), or nothing."""
        self._code = code
        self._redraw()

    def code_at(self, u: int, v: int) -> int:
        """The code drawn at image pixel (u, v) of the current slice (0 outside or without data)."""
        if self._code is None or not (0 <= u < self._code.shape[0] and 0 <= v < self._code.shape[1]):
            return 0
        return int(self._code[u, v])

    def _redraw(self) -> None:
        if self._code is None:
            self.item.setVisible(False)
            return
        image = self._code
        if self.fill is Fill.OUTLINE:
            image = outline_image(image, self._look)
        self.item.setImage(np.ascontiguousarray(image), autoLevels=False)
        self.item.setVisible(True)
