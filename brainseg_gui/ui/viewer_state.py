"""The viewer's small observable state: widgets follow it and write back to it, never to each other.

Positions are RAS voxel indices (x to the Right, y Anterior, z Superior) of the study's
`DisplayVolume`. Setters ignore a value equal to the current one, so following widgets cannot
loop through each other. The editing part (tool, brush, label, threshold) is here too, so the
edit panel, the menus and the slice views' brush cursor all follow one place.
"""

from __future__ import annotations

from enum import Enum

from PySide6.QtCore import QObject, Signal

from brainseg_gui.app.edit_settings import AXIS_OF_PLANE, PLANES, Tool
from brainseg_gui.core.labels import TISSUES, LabelConvention
from brainseg_gui.ui.overlay import Fill, OverlayLook

__all__ = ["AXIS_OF_PLANE", "PLANES", "Layout", "Tool", "ViewerState"]

#: Overlay sources: the (editable) segmentation, the study's own labels, and the AI's original
#: mask (shown in review mode, against the corrected one).
SOURCES = ("prediction", "truth", "original")
#: Brush radius limits in mm.
BRUSH_MM_RANGE = (0.5, 40.0)
#: What the Click tool acts on: a region, or "label" (the tissue class the brush paints).
CLICK_TARGETS = ("label", "WT", "TC", "ET")
#: `[` / `]` scale the brush radius by this ratio (3 -> 30 mm in 10 presses, not 54 half-mm steps).
BRUSH_STEP_RATIO = 1.25


class Layout(str, Enum):
    ROW = "1x3"  # axial, coronal, sagittal side by side, active sequence
    GRID = "2x2"  # one view per sequence, all in the main plane
    SINGLE = "single"  # the main plane, active sequence


class ViewerState(QObject):
    crosshair_changed = Signal(object)  # tuple[int, int, int]
    sequence_changed = Signal(str)
    window_changed = Signal(str)  # the sequence whose window changed
    overlay_changed = Signal()
    layout_changed = Signal()
    link_views_changed = Signal(bool)  # zoom and pan linked across the slice views, or not
    edit_changed = Signal()  # tool, brush, label, threshold or displayed convention

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.shape: tuple[int, int, int] = (1, 1, 1)
        self.crosshair: tuple[int, int, int] = (0, 0, 0)
        self.sequence = "t1ce"
        self.windows: dict[str, tuple[float, float]] = {}
        self.look = OverlayLook()
        self.fills: dict[str, Fill] = {"prediction": Fill.FILLED, "truth": Fill.OUTLINE,
                                       "original": Fill.OUTLINE}
        self.shown: dict[str, bool] = {"prediction": True, "truth": True, "original": False}
        self.layout = Layout.ROW
        self.main_plane = "axial"
        # On by default: every plane at the same mm per pixel keeps sizes comparable between planes,
        # and zooming into the tumour in one view shows it magnified in all (see ui/view_link.py).
        self.link_views = True
        self.tool = Tool.NAVIGATE
        self.brush_mm = 3.0
        self.brush_3d = False
        self.label = "ED"  # the tissue class painted: NCR, ED or ET
        self.erase_only = False  # the eraser removes only `label`
        self.click_target = "label"  # the Click tool acts on this region, or on `label`
        self.threshold: tuple[float, float] | None = None
        self.convention = LabelConvention.BRATS  # how label values are shown and exported

    def reset(self, shape: tuple[int, int, int], crosshair: tuple[int, int, int],
              windows: dict[str, tuple[float, float]], sequence: str) -> None:
        """A new study: new grid, crosshair, windows and sequence; everything is re-emitted."""
        self.shape = shape
        self.crosshair = self._clamp(crosshair)
        self.windows = dict(windows)
        self.sequence = sequence
        self.crosshair_changed.emit(self.crosshair)
        self.sequence_changed.emit(sequence)
        for name in windows:
            self.window_changed.emit(name)
        self.overlay_changed.emit()

    def set_crosshair(self, voxel: tuple[int, int, int]) -> None:
        voxel = self._clamp(voxel)
        if voxel != self.crosshair:
            self.crosshair = voxel
            self.crosshair_changed.emit(voxel)

    def step_slice(self, plane: str, steps: int) -> None:
        """Move the crosshair `steps` slices through a plane (positive = R, A or S)."""
        axis = AXIS_OF_PLANE[plane]
        voxel = list(self.crosshair)
        voxel[axis] += steps
        self.set_crosshair((voxel[0], voxel[1], voxel[2]))

    def set_sequence(self, name: str) -> None:
        if name != self.sequence:
            self.sequence = name
            self.sequence_changed.emit(name)

    def set_window(self, sequence: str, low: float, high: float) -> None:
        high = max(high, low + 1e-6)
        if self.windows.get(sequence) != (low, high):
            self.windows[sequence] = (low, high)
            self.window_changed.emit(sequence)

    def set_look(self, look: OverlayLook) -> None:
        if look != self.look:
            self.look = look
            self.overlay_changed.emit()

    def set_fill(self, source: str, fill: Fill) -> None:
        if self.fills[source] is not fill:
            self.fills[source] = fill
            self.overlay_changed.emit()

    def set_shown(self, source: str, shown: bool) -> None:
        if self.shown[source] != shown:
            self.shown[source] = shown
            self.overlay_changed.emit()

    def set_layout(self, layout: Layout, main_plane: str | None = None) -> None:
        plane = main_plane or self.main_plane
        if layout is not self.layout or plane != self.main_plane:
            self.layout = layout
            self.main_plane = plane
            self.layout_changed.emit()

    def set_link_views(self, on: bool) -> None:
        """Link zoom and pan across the slice views (see `ui/view_link.py`), or let each view go its own way."""
        if bool(on) != self.link_views:
            self.link_views = bool(on)
            self.link_views_changed.emit(self.link_views)

    # ---- editing ----------------------------------------------------------------------------
    def set_tool(self, tool: Tool | str) -> None:
        tool = Tool(tool)
        if tool is not self.tool:
            self.tool = tool
            self.edit_changed.emit()

    def set_brush_mm(self, radius: float) -> None:
        low, high = BRUSH_MM_RANGE
        radius = round(min(max(float(radius), low), high), 1)
        if radius != self.brush_mm:
            self.brush_mm = radius
            self.edit_changed.emit()

    def step_brush(self, larger: bool) -> None:
        """One `]` (larger) or `[` press: a fixed ratio, on the slider's half-mm grid, at least 0.5 mm."""
        radius = self.brush_mm
        wanted = radius * BRUSH_STEP_RATIO if larger else radius / BRUSH_STEP_RATIO
        wanted = round(wanted * 2) / 2
        self.set_brush_mm(max(wanted, radius + 0.5) if larger else min(wanted, radius - 0.5))

    def set_brush_3d(self, on: bool) -> None:
        if bool(on) != self.brush_3d:
            self.brush_3d = bool(on)
            self.edit_changed.emit()

    def set_label(self, tissue: str) -> None:
        if tissue not in TISSUES:
            raise ValueError(f"unknown tissue class {tissue!r}; expected one of {TISSUES}")
        if tissue != self.label:
            self.label = tissue
            self.edit_changed.emit()

    def set_click_target(self, target: str) -> None:
        if target not in CLICK_TARGETS:
            raise ValueError(f"unknown click target {target!r}; expected one of {CLICK_TARGETS}")
        if target != self.click_target:
            self.click_target = target
            self.edit_changed.emit()

    def set_erase_only(self, on: bool) -> None:
        if bool(on) != self.erase_only:
            self.erase_only = bool(on)
            self.edit_changed.emit()

    def set_threshold(self, low: float, high: float) -> None:
        value = (float(min(low, high)), float(max(low, high)))
        if value != self.threshold:
            self.threshold = value
            self.edit_changed.emit()

    def set_convention(self, convention: LabelConvention) -> None:
        if convention is not self.convention:
            self.convention = convention
            self.edit_changed.emit()

    def _clamp(self, voxel: tuple[int, int, int]) -> tuple[int, int, int]:
        x, y, z = (min(max(int(v), 0), n - 1) for v, n in zip(voxel, self.shape))
        return x, y, z
