"""The colours tumour regions and tissue classes are drawn in, and their long names.

One table for everything that draws a mask: the viewer's overlays and legend (ui/overlay.py), the
3D view, the report's key slices and the cohort page's charts. It lives in `core` because the
report is drawn without Qt; the ui layer imports it from here.
"""

from __future__ import annotations

#: RGB colours. Regions and tissues differ so the legend says which mode is on.
COLOURS: dict[str, tuple[int, int, int]] = {
    "WT": (0, 200, 83),
    "TC": (41, 121, 255),
    "ET": (255, 61, 61),
    "ED": (120, 220, 60),
    "NCR": (255, 150, 0),
}
#: ET is both a region and a tissue: tissue ET is drawn yellow so the two modes never look alike.
TISSUE_ET_COLOUR = (255, 230, 0)

#: How strongly a filled overlay covers the image (0: invisible, 1: opaque), unless the user moves it.
OVERLAY_OPACITY = 0.45

LONG_NAMES = {
    "WT": "whole tumour", "TC": "tumour core", "ET": "enhancing tumour",
    "ED": "oedema", "NCR": "necrotic / non-enhancing core",
}


def hex_colour(name: str) -> str:
    """'#rrggbb' of a region or tissue colour, for HTML and SVG."""
    red, green, blue = COLOURS[name]
    return f"#{red:02x}{green:02x}{blue:02x}"
