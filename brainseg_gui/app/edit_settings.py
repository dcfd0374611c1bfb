"""What the editing tools read from the viewer: the tool, the brush and the class painted.

The viewer's state (`ui.viewer_state.ViewerState`, which the edit panel and the menus change)
satisfies `EditSettings`; the app layer only reads it, so `Editing` runs without a display.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from brainseg_gui.core.orientation import AXIS_OF_PLANE, PLANES

__all__ = ["AXIS_OF_PLANE", "PLANES", "EditSettings", "Tool"]  # the planes: core's, read here by app and ui


class Tool(str, Enum):
    NAVIGATE = "navigate"  # left click moves the crosshair
    BRUSH = "brush"
    ERASER = "eraser"
    FILL = "fill"
    THRESHOLD = "threshold"  # brush limited to an intensity range of the shown sequence
    CLICK = "click"  # AI-assisted correction: a click re-segments around it (see ui/click_tool.py)
    RULER = "ruler"  # drag draws a ruler (distance in mm); see ui/measure_items.py
    ROI = "roi"  # drag draws an ellipse ROI (statistics in the Measure panel)

    @property
    def paints(self) -> bool:
        """Tools drawn with the round brush (they show its outline under the mouse)."""
        return self in (Tool.BRUSH, Tool.ERASER, Tool.THRESHOLD)

    @property
    def edits_mask(self) -> bool:
        """Tools whose press, drag and release change the mask voxel by voxel (`Editing.press`)."""
        return self in (Tool.BRUSH, Tool.ERASER, Tool.FILL, Tool.THRESHOLD)


class EditSettings(Protocol):
    """The viewer state an edit reads: tool, brush, class, limits, and where the user looks."""

    tool: Tool
    brush_mm: float
    brush_3d: bool
    label: str  # the tissue class painted: NCR, ED or ET
    erase_only: bool
    threshold: tuple[float, float] | None
    sequence: str
    windows: dict[str, tuple[float, float]]
    crosshair: tuple[int, int, int]
