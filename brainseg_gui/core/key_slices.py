"""Key slices through the tumour: axial, coronal and sagittal pictures with the regions overlaid.

Drawn from the data as the viewer draws it, so a report shows what the radiologist saw: the
radiological convention (the patient's right on the left; sagittal: anterior on the left), superior
or anterior up, square pixels in mm (a thick-slice axis is stretched by repeating rows or columns),
the regions blended in the viewer's colours and opacity with the innermost region on top. One
picture per plane for the HTML report; `overview_rgb` sets the three side by side for the PNG export
and the PDF report. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainseg_gui.core.labels import REGIONS, LabelConvention, to_regions
from brainseg_gui.core.orientation import AXIS_OF_PLANE, PLANES, Reorientation
from brainseg_gui.core.region_colours import COLOURS, OVERLAY_OPACITY
from brainseg_gui.core.study import Grid

#: Display window of the image under the overlay: these percentiles of its non-zero voxels.
WINDOW_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class KeySlice:
    """One plane's picture. `index`: the RAS voxel index of the slice along the plane's axis
    (0-based; the viewer shows index + 1). `rgb`: (h, w, 3) uint8, square pixels in mm."""

    plane: str
    index: int
    rgb: np.ndarray
    spacing_mm: float  # the side of one picture pixel in mm


def key_slices(image: np.ndarray, grid: Grid, labels: np.ndarray, *,
               opacity: float = OVERLAY_OPACITY) -> tuple[KeySlice, ...]:
    """Axial, coronal and sagittal slices through `tumour_centre` of `labels`' whole tumour.

    `image` and `labels` (BraTS values) are arrays on `grid`, in its own axis order.
    """
    reorient = Reorientation(grid)
    picture = reorient.apply(image)
    regions = reorient.apply(to_regions(labels, LabelConvention.BRATS))
    centre = tumour_centre(regions[0])
    values = picture[picture != 0]
    low, high = (np.percentile(values, WINDOW_PERCENTILES) if values.size else (0.0, 1.0))
    grey_scale = 255.0 / max(float(high - low), 1e-6)
    out = []
    for plane in PLANES:
        axis = AXIS_OF_PLANE[plane]
        key: list[slice | int] = [slice(None)] * 3
        key[axis] = centre[axis]
        grey = np.clip((picture[tuple(key)] - low) * grey_scale, 0, 255)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        colours = np.zeros_like(rgb)
        for index, region in enumerate(REGIONS):  # outer to inner, so the innermost region's colour wins
            colours[regions[index][tuple(key)]] = COLOURS[region]
        tumour = regions[0][tuple(key)]
        rgb[tumour] = (1 - opacity) * rgb[tumour] + opacity * colours[tumour]
        # (horizontal, vertical) array -> picture rows top-down: transpose, then flip both ways so
        # superior/anterior is up and the patient's right (sagittal: anterior) is on the left
        flipped = rgb.transpose(1, 0, 2)[::-1, ::-1]
        horizontal, vertical = (s for a, s in enumerate(reorient.spacing) if a != axis)
        out.append(KeySlice(plane, centre[axis], np.rint(square_pixels(flipped, horizontal, vertical)).astype(np.uint8),
                            min(horizontal, vertical)))
    return tuple(out)


def tumour_centre(tumour: np.ndarray) -> tuple[int, int, int]:
    """The voxel the key slices pass through: the centre of mass of `tumour` (bool, 3D), moved, on an
    axis where its slice misses the tumour (two lesions, a ring), to the slice with the most tumour.
    An empty mask gives the middle of the volume."""
    if not tumour.any():
        return (tumour.shape[0] // 2, tumour.shape[1] // 2, tumour.shape[2] // 2)
    centre = []
    for axis in range(3):
        per_slice = tumour.sum(axis=tuple(a for a in range(3) if a != axis))
        mass = round(float((np.arange(len(per_slice)) * per_slice).sum() / per_slice.sum()))
        centre.append(mass if per_slice[mass] else int(np.argmax(per_slice)))
    return (centre[0], centre[1], centre[2])


def overview_rgb(image: np.ndarray, grid: Grid, labels: np.ndarray, *, opacity: float = OVERLAY_OPACITY) -> np.ndarray:
    """The three `key_slices` side by side as one (h, w, 3) uint8 picture (the PNG export, the PDF)."""
    panels = [view.rgb for view in key_slices(image, grid, labels, opacity=opacity)]
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0))) for p in panels]
    return np.concatenate(padded, axis=1).astype(np.uint8)


def square_pixels(picture: np.ndarray, horizontal_mm: float, vertical_mm: float) -> np.ndarray:
    """Repeat rows or columns (nearest) so that pixels are square in mm, at the finer spacing."""
    if np.isclose(horizontal_mm, vertical_mm):
        return picture
    rows = max(1, round(picture.shape[0] * vertical_mm / min(horizontal_mm, vertical_mm)))
    cols = max(1, round(picture.shape[1] * horizontal_mm / min(horizontal_mm, vertical_mm)))
    r = (np.arange(rows) * picture.shape[0] / rows).astype(int)
    c = (np.arange(cols) * picture.shape[1] / cols).astype(int)
    return picture[r][:, c]
