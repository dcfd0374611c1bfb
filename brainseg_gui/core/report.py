"""A one-page HTML report of a corrected mask, and a PNG overview that needs no window.

The report holds per-region volumes (AI and corrected), the Dice of the AI mask against the
corrected one, voxels changed per class, the model version, who and when, the source files, the
research-use note and one embedded picture (the GUI's views, or `overview_png` from the CLI).
It is one self-contained file (the picture is a data: URI), written atomically.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from pathlib import Path

import numpy as np

from brainseg_gui import RESEARCH_USE_NOTE
from brainseg_gui.core.labels import REGIONS, TISSUES, LabelConvention, to_regions
from brainseg_gui.core.orientation import Reorientation
from brainseg_gui.core.study import Grid, Study

#: Overlay colours in the PNG overview (as the viewer's region colours).
REGION_RGB = {"WT": (0, 200, 83), "TC": (41, 121, 255), "ET": (255, 61, 61)}
TISSUE_NAMES = {"NCR": "necrotic / non-enhancing core", "ED": "oedema", "ET": "enhancing tumour"}


def report_html(study: Study, prov, convention: LabelConvention, picture_png: bytes | None = None) -> str:
    """The report as one HTML document. `prov` is a `core.export.Provenance`."""
    comparison = prov.comparison
    ml = prov.voxel_ml
    e = html.escape
    rows = []
    for region in REGIONS:
        ai_ml = comparison.voxels_ai[region] * ml
        corrected_ml = comparison.voxels_corrected[region] * ml
        rows.append(f"<tr><td>{region}</td><td>{ai_ml:.2f}</td><td>{corrected_ml:.2f}</td>"
                    f"<td>{corrected_ml - ai_ml:+.2f}</td><td>{comparison.dice[region]:.3f}</td></tr>")
    tissue_rows = []
    for tissue in TISSUES:
        change = comparison.tissues[tissue]
        value = convention.tissue_values[tissue]
        tissue_rows.append(f"<tr><td>{tissue} ({e(TISSUE_NAMES[tissue])}), label {value}</td>"
                           f"<td>{change.added:,}</td><td>{change.removed:,}</td></tr>")
    sources = "".join(f"<li>{e(name)}: <code>{e(str(path))}</code></li>" for name, path in prov.sources.items())
    picture = ""
    if picture_png:
        data = base64.b64encode(picture_png).decode("ascii")
        picture = f'<img alt="views of the corrected mask" src="data:image/png;base64,{data}">'
    edited = (f"yes: {comparison.changed:,} voxels changed ({comparison.changed * ml:.2f} mL)"
              if prov.edited else "no (the AI mask as it came)")
    return _page(f"BrainSeg report: {study.case_id}", study.case_id) + f"""
<dl>
<dt>Model version</dt><dd>{e(prov.model_version or "none")}</dd>
<dt>Mask started from</dt><dd>{e(prov.base)}</dd>
<dt>Corrected by hand</dt><dd>{e(edited)}</dd>
<dt>Label convention</dt><dd>{e(convention.description)}</dd>
<dt>Grid</dt><dd>{e(study.grid.describe())}</dd>
<dt>Made by</dt><dd>{e(prov.user)}, {e(prov.created)} ({e(prov.software)})</dd>
</dl>
<h2>Regions</h2>
<table><tr><th>Region</th><th>AI mL</th><th>Corrected mL</th><th>Change mL</th><th>Dice AI vs corrected</th></tr>
{"".join(rows)}</table>
<h2>Voxels changed by hand, per class</h2>
<table><tr><th>Class</th><th>Added</th><th>Removed</th></tr>{"".join(tissue_rows)}</table>
{picture}
<h2>Source files</h2><ul>{sources}</ul>
</body></html>
"""


def overview_png(study: Study, labels: np.ndarray, sequence: str | None = None, *, opacity: float = 0.45) -> bytes:
    """Axial, coronal and sagittal slices through the tumour's centre with the regions overlaid (PNG).

    `labels` are BraTS values on the study's grid; `sequence` (default: t1ce, else flair, t2, t1) is
    the image under them.
    """
    name = sequence if sequence is not None and sequence in study.images else next(
        n for n in ("t1ce", "flair", "t2", "t1") if n in study.images)
    return encode_png(overview_rgb(study.images[name], study.grid, labels, opacity=opacity))


def overview_rgb(image: np.ndarray, grid: Grid, labels: np.ndarray, *, opacity: float = 0.45) -> np.ndarray:
    """The three views of `overview_png` as one (h, w, 3) uint8 picture (also for the PDF report).

    Radiological display (patient's right on the left), as the viewer. Pure numpy.
    """
    reorient = Reorientation(grid)
    image = reorient.apply(image)
    regions = reorient.apply(to_regions(labels, LabelConvention.BRATS))
    wt = regions[0]
    if wt.any():
        centre = [int(np.flatnonzero(wt.any(axis=tuple(a for a in range(3) if a != axis))).mean()) for axis in range(3)]
    else:
        centre = [n // 2 for n in image.shape]
    values = image[image != 0]
    low, high = (np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0))
    panels = []
    for axis in (2, 1, 0):
        key: list[slice | int] = [slice(None)] * 3
        key[axis] = centre[axis]
        grey = np.clip((image[tuple(key)] - low) / max(high - low, 1e-6), 0, 1)
        rgb = np.repeat((grey * 255)[..., None], 3, axis=-1)
        colours = np.zeros_like(rgb)
        for index in range(3):  # outer to inner, so the innermost region's colour wins
            colours[regions[index][tuple(key)]] = REGION_RGB[REGIONS[index]]
        tumour = regions[0][tuple(key)]
        rgb[tumour] = (1 - opacity) * rgb[tumour] + opacity * colours[tumour]
        # (horizontal, vertical) array -> picture rows top-down: transpose, then flip both ways so
        # superior/anterior is up and the patient's right (sagittal: anterior) is on the left
        picture = rgb.transpose(1, 0, 2)[::-1, ::-1]
        spacing = [s for a, s in enumerate(reorient.spacing) if a != axis]
        panels.append(_aspect(picture, spacing[0], spacing[1]))
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0))) for p in panels]
    return np.concatenate(padded, axis=1).astype(np.uint8)


def _aspect(picture: np.ndarray, horizontal_mm: float, vertical_mm: float) -> np.ndarray:
    """Repeat rows or columns (nearest) so that pixels are square in mm."""
    if np.isclose(horizontal_mm, vertical_mm):
        return picture
    rows = max(1, round(picture.shape[0] * vertical_mm / min(horizontal_mm, vertical_mm)))
    cols = max(1, round(picture.shape[1] * horizontal_mm / min(horizontal_mm, vertical_mm)))
    r = (np.arange(rows) * picture.shape[0] / rows).astype(int)
    c = (np.arange(cols) * picture.shape[1] / cols).astype(int)
    return picture[r][:, c]


def encode_png(rgb: np.ndarray) -> bytes:
    """An (h, w, 3) uint8 array as PNG bytes (no dependency beyond zlib)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width, channels = rgb.shape
    if channels != 3:
        raise ValueError(f"expected an RGB picture, got {channels} channels")
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, -1)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def prediction_report_html(study: Study, labels: np.ndarray, sidecar: dict, mask_path: Path) -> str:
    """A one-page HTML summary of an (uncorrected) prediction: volumes, flags, model, inputs, views.

    `labels` are BraTS values on the study's grid; `sidecar` is the prediction's JSON sidecar.
    Written beside each case of a cohort, and linked from the cohort's overview.
    """
    e = html.escape
    volumes = sidecar.get("volumes_ml") or {}
    rows = "".join(f"<tr><td>{e(region)}</td><td>{float(volumes.get(region, 0.0)):.2f}</td></tr>"
                   for region in REGIONS)
    flags = [*(["missing " + ", ".join(sidecar["missing_sequences"])] if sidecar.get("missing_sequences") else []),
             *([str(sidecar["flag_reason"])] if sidecar.get("flagged") and sidecar.get("flag_reason") else [])]
    flag_text = "".join(f"<li>{e(flag)}</li>" for flag in flags) or "<li>none</li>"
    sources = "".join(f"<li>{e(name)}: <code>{e(str(path))}</code></li>"
                      for name, path in (sidecar.get("inputs") or {}).items())
    picture = base64.b64encode(overview_png(study, labels)).decode("ascii")
    return _page(f"BrainSeg prediction: {study.case_id}", study.case_id) + f"""<p>Mask: <a href="{e(mask_path.name)}"><code>{e(mask_path.name)}</code></a>, model {e(str(sidecar.get("model_version", "")))},
{e(str(sidecar.get("device", "")))}, {e(str(sidecar.get("created", "")))}; grid {e(study.grid.describe())}.</p>
<h2>Regions</h2>
<table><tr><th>Region</th><th>mL</th></tr>{rows}</table>
<h2>Flags</h2><ul>{flag_text}</ul>
<img alt="axial, coronal and sagittal views through the tumour" src="data:image/png;base64,{picture}">
<h2>Source files</h2><ul>{sources}</ul>
</body></html>
"""


def _page(title: str, case_id: str) -> str:
    """The opening every BrainSeg page shares: style, title and the research-use note."""
    e = html.escape
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{e(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 1.5em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; }}
td, th {{ border: 1px solid #bbb; padding: 0.25em 0.7em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.note {{ border: 2px solid #c60; background: #fff4e5; padding: 0.5em 1em; font-weight: bold; }}
img {{ max-width: 100%; border: 1px solid #999; }}
dt {{ font-weight: bold; float: left; width: 11em; }} dd {{ margin-left: 12em; }}
</style></head><body>
<h1>Tumour segmentation: {e(case_id)}</h1>
<p class="note">{e(RESEARCH_USE_NOTE)}</p>
"""
