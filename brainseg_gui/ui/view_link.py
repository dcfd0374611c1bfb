"""How the slice views are framed: the default fit to the brain, and zoom and pan linked across views.

Linked views share one "camera": a scale (mm per screen pixel) and a centre in RAS millimetres
(measured from the grid's corner: voxel i of an axis spans [i, i + 1) * spacing). Each view shows
the camera's centre along its two in-plane axes at the camera's scale, so:
- views of one plane (the 2x2 layout) show the same area;
- panning one view moves the others by the same millimetres along the axes they share (an axial pan
  to the left moves the coronal view to the left, an anterior pan moves the sagittal view);
- zooming one view zooms the others to the same mm per pixel, centred on the crosshair along the
  axis the zoomed view does not show (so a zoom into the tumour shows it in every plane).
The default fit frames the brain (the study's tissue mask, `DisplayVolume.brain`) with a small
margin; linked views fit at one common scale. Nothing here runs on a slice step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction

from brainseg_gui.app.display_volume import DisplayVolume, brain_box_mm
from brainseg_gui.ui.viewer_state import ViewerState

if TYPE_CHECKING:
    from brainseg_gui.ui.slice_view import SliceView

def fit_scale(extents: list[tuple[float, float, int, int]]) -> float | None:
    """The smallest mm per pixel at which every (width_mm, height_mm, width_px, height_px) fits; None
    when no view has a size yet."""
    scales = [max(w_mm / w_px, h_mm / h_px) for w_mm, h_mm, w_px, h_px in extents if w_px > 0 and h_px > 0]
    return max(scales) if scales else None


# ---- one view's framing, in RAS mm from the grid's corner (scene x is minus the horizontal axis' mm) ----
def mm_per_pixel(view: SliceView) -> float:
    """Millimetres per screen pixel of a view (the same both ways: the aspect is locked); 0 before a size."""
    (x0, x1), _ = view.box.viewRange()
    width = view.box.width()
    return (x1 - x0) / width if width > 0 else 0.0


def view_centre_mm(view: SliceView) -> tuple[float, float]:
    """The centre of the area a view shows, along its (horizontal, vertical) in-plane axes."""
    (x0, x1), (y0, y1) = view.box.viewRange()
    return -(x0 + x1) / 2, (y0 + y1) / 2


def show_area(view: SliceView, centre: tuple[float, float], scale: float) -> None:
    """Make a view show the area around `centre` (in-plane axes' mm) at `scale` mm per pixel."""
    width, height = view.box.width(), view.box.height()
    if width <= 0 or height <= 0 or scale <= 0:
        return
    half_w, half_h = width * scale / 2, height * scale / 2
    h, v = centre
    view.box.setRange(xRange=(-h - half_w, -h + half_w), yRange=(v - half_h, v + half_h), padding=0)


class ViewLink(QObject):
    """Keeps the slice views at one scale and one centre while `state.link_views` is on."""

    def __init__(self, state: ViewerState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.views: list[SliceView] = []
        self.centre: list[float] | None = None  # RAS mm from the grid's corner
        self.scale: float | None = None  # mm per screen pixel
        self.fitted = True  # showing the default fit: a resize fits again instead of keeping the scale
        self._last_moved: SliceView | None = None
        self._applying = False
        state.link_views_changed.connect(self._on_link_changed)

    def set_views(self, views: list[SliceView]) -> None:
        """The views now shown (a new layout or study): connect them and fit them together."""
        for old in self.views:  # rebuilt views live on until deleted: they must not move the new ones
            old.view_moved.disconnect(self._on_moved)
            old.zoom_reset.disconnect(self._on_reset)
            old.box.sigResized.disconnect(self._on_resized)
        self.views = list(views)
        self._last_moved = None
        for view in self.views:
            view.view_moved.connect(self._on_moved)
            view.zoom_reset.connect(self._on_reset)
            view.box.sigResized.connect(self._on_resized)
        self.fit()

    def fit(self) -> None:
        """Frame the brain in every view at one scale, each view centred on the brain's box."""
        volume = self._volume()
        if not self.state.link_views or volume is None:
            return
        box = brain_box_mm(volume)
        extents = []
        for view in self.views:
            h, v = view.in_plane_axes
            extents.append((box[h][1] - box[h][0], box[v][1] - box[v][0],
                            int(view.box.width()), int(view.box.height())))
        self.centre = [(low + high) / 2 for low, high in box]
        self.scale = fit_scale(extents)
        self.fitted = True
        self._apply()

    def _volume(self) -> DisplayVolume | None:
        return self.views[0].volume if self.views else None

    def _on_moved(self, view: SliceView) -> None:
        """The user zoomed or panned `view`: the camera takes its scale and centre."""
        if self._applying or view not in self.views:
            return
        self._last_moved = view
        if not self.state.link_views or view.volume is None:
            return
        scale = mm_per_pixel(view)
        if scale <= 0:
            return
        zoomed = self.scale is None or abs(scale - self.scale) > 1e-6 * scale
        spacing = view.volume.spacing
        if self.centre is None:
            self.centre = [(c + 0.5) * s for c, s in zip(self.state.crosshair, spacing)]
        h, v = view.in_plane_axes
        self.centre[h], self.centre[v] = view_centre_mm(view)
        if zoomed:
            self.centre[view.axis] = (self.state.crosshair[view.axis] + 0.5) * spacing[view.axis]
        self.scale = scale
        self.fitted = False
        self._apply(skip=view)

    def _on_reset(self, _view: SliceView) -> None:
        if not self._applying:
            self.fit()

    def _on_resized(self, _box: object) -> None:
        if not self.state.link_views or self._applying:
            return
        if self.fitted or self.scale is None:
            self.fit()
        else:
            self._apply()

    def _on_link_changed(self, on: bool) -> None:
        """Linking on: every view takes the framing of the one the user moved last, else the fit."""
        if not on:
            return
        if self._last_moved is not None and self._last_moved in self.views:
            self.scale = None  # counts as a zoom: the other planes centre on the crosshair
            self._on_moved(self._last_moved)
        else:
            self.fit()

    def _apply(self, skip: SliceView | None = None) -> None:
        if self.centre is None or self.scale is None:
            return
        self._applying = True
        try:
            for view in self.views:
                if view is not skip:
                    h, v = view.in_plane_axes
                    show_area(view, (self.centre[h], self.centre[v]), self.scale)
        finally:
            self._applying = False


def link_views_action(state: ViewerState, parent: QObject) -> QAction:
    """A checkable 'Link zoom and pan' action that follows `state.link_views` both ways (for a menu)."""
    action = QAction("&Link zoom and pan", parent)
    action.setCheckable(True)
    action.setChecked(state.link_views)
    action.setStatusTip("Zoom and pan all slice views together, at the same millimetres per pixel")
    action.toggled.connect(state.set_link_views)
    state.link_views_changed.connect(action.setChecked)
    return action
