"""The HTML report of an exported mask, the prediction summary of a cohort case, and the PNG overview.

The export report says what the viewer showed: the source files (absolute paths), per-region
volumes of the exported mask (and of the AI mask it started from and of the ground truth, with
Dice and HD95 against it, when the study has one), key slices through the tumour in three planes
drawn from the data (core/key_slices.py), the measurements (rulers, ellipse ROIs with their
statistics, RANO), the model, what the mask started from and what was changed by hand, the
BrainSeg version and date, and the research-use note. It is one self-contained file (pictures are
data: URIs, one PNG per plane) and is written atomically with the rest of the export.
"""

from __future__ import annotations

import base64
import html
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainseg_gui import RESEARCH_USE_NOTE
from brainseg_gui.core.key_slices import key_slices, overview_rgb
from brainseg_gui.core.labels import REGIONS, TISSUES, LabelConvention, to_regions
from brainseg_gui.core.measurements import MeasurementSet, Ruler, ellipse_statistics
from brainseg_gui.core.metrics import EMPTY_HD95, evaluate_regions
from brainseg_gui.core.orientation import AXIS_OF_PLANE, PLANE_OF_AXIS, Reorientation
from brainseg_gui.core.region_colours import LONG_NAMES, OVERLAY_OPACITY, hex_colour
from brainseg_gui.core.study import SEQUENCE_TITLES, SEQUENCES, Study

if TYPE_CHECKING:
    from brainseg_gui.core.export import Provenance

#: The image under the key slices when none is asked for: the first of these the study has.
PICTURE_SEQUENCES = ("t1ce", "flair", "t2", "t1")
#: Screen height (CSS pixels) of the tallest key slice; the others share its pixels per mm.
SLICE_HEIGHT_PX = 300


def report_html(study: Study, labels: np.ndarray, prov: Provenance, convention: LabelConvention, *,
                measurements: MeasurementSet | None = None, device: str | None = None,
                sequence: str | None = None) -> str:
    """The report of `labels` (BraTS values on the study's grid: the exported mask) as one HTML page.

    `prov` compares it with the AI mask it started from; `measurements` (on the study's RAS grid,
    checked) are listed when there are some; `device` is what the model ran on, when known;
    `sequence` is the image under the key slices (default: `PICTURE_SEQUENCES`' first).
    """
    e = html.escape
    comparison = prov.comparison
    ml = prov.voxel_ml
    rows = []
    for region in REGIONS:
        ai_ml = comparison.voxels_ai[region] * ml
        corrected_ml = comparison.voxels_corrected[region] * ml
        rows.append(f"<tr><td>{region} ({e(LONG_NAMES[region])})</td><td>{ai_ml:.2f}</td><td>{corrected_ml:.2f}</td>"
                    f"<td>{corrected_ml - ai_ml:+.2f}</td><td>{comparison.dice[region]:.3f}</td></tr>")
    tissue_rows = []
    for tissue in TISSUES:
        change = comparison.tissues[tissue]
        value = convention.tissue_values[tissue]
        tissue_rows.append(f"<tr><td>{tissue} ({e(LONG_NAMES[tissue])}), "
                           f"label {value}</td><td>{change.added:,}</td><td>{change.removed:,}</td></tr>")
    edited = (f"yes: {comparison.changed:,} voxels changed ({comparison.changed * ml:.2f} mL)"
              if prov.edited else "no (the AI mask as it came)")
    model = prov.model_version or "none recorded"
    if device:
        model += f", run on {device}"
    return _page(f"BrainSeg report: {study.case_id}", study.case_id) + f"""
<dl>
<dt>Model</dt><dd>{e(model)}</dd>
<dt>Mask started from</dt><dd>{e(prov.base)}</dd>
<dt>Corrected by hand</dt><dd>{e(edited)}</dd>
<dt>Label convention</dt><dd>{e(convention.description)}</dd>
<dt>Grid</dt><dd>{e(study.grid.describe())}</dd>
<dt>Software</dt><dd>{e(prov.software)}</dd>
<dt>Date</dt><dd>{e(prov.created)}</dd>
<dt>Made by</dt><dd>{e(prov.user)}</dd>
</dl>
<h2>Regions of the exported mask</h2>
<table><tr><th>Region</th><th>AI mL</th><th>Corrected mL</th><th>Change mL</th><th>Dice AI vs corrected</th></tr>
{"".join(rows)}</table>
{_truth_section(study, labels)}
<h2>Voxels changed by hand, per class</h2>
<table><tr><th>Class</th><th>Added</th><th>Removed</th></tr>{"".join(tissue_rows)}</table>
{_key_slice_section(study, labels, sequence)}
{_measurement_section(study, measurements)}
<h2>Source files</h2><ul>{_source_list(prov.sources)}</ul>
</body></html>
"""


def _truth_section(study: Study, labels: np.ndarray) -> str:
    """Volumes, Dice and HD95 of the exported mask against the study's own labels ("" without any)."""
    if study.labels is None or study.label_convention is None:
        return ""
    e = html.escape
    exported = to_regions(labels, LabelConvention.BRATS)
    metrics = evaluate_regions(exported, to_regions(study.labels, study.label_convention), study.grid.spacing)
    rows = []
    for region, m in metrics.items():
        one_empty = (m.volume_pred_ml == 0) != (m.volume_truth_ml == 0)
        hd95 = f"{m.hd95:.2f}" + (" (one mask empty)" if one_empty and m.hd95 == EMPTY_HD95 else "")
        rows.append(f"<tr><td>{region}</td><td>{m.volume_pred_ml:.2f}</td><td>{m.volume_truth_ml:.2f}</td>"
                    f"<td>{m.dice:.3f}</td><td>{hd95}</td></tr>")
    source = study.sources.get("seg")
    where = f" <code>{e(str(_absolute(source)))}</code>" if source is not None else ""
    return f"""<h2>Against the ground truth</h2>
<p>The study's own label file{where} ({e(study.label_convention.description)}).</p>
<table><tr><th>Region</th><th>Exported mL</th><th>Ground truth mL</th><th>Dice</th><th>HD95 mm</th></tr>
{"".join(rows)}</table>"""


def _key_slice_section(study: Study, labels: np.ndarray, sequence: str | None) -> str:
    """Axial, coronal and sagittal slices through the tumour, one embedded PNG each, with a legend."""
    name = picture_sequence(study, sequence)
    views = key_slices(study.images[name], study.grid, labels)
    shape = Reorientation(study.grid).shape
    # one scale in screen pixels per mm for the three, so a lesion looks the same size in each
    scale = SLICE_HEIGHT_PX / max(view.rgb.shape[0] * view.spacing_mm for view in views)
    figures = []
    for view in views:
        data = base64.b64encode(encode_png(view.rgb)).decode("ascii")
        height, width = (round(n * view.spacing_mm * scale) for n in view.rgb.shape[:2])
        figures.append(f'<figure><img class="slice" width="{width}" height="{height}" alt="{view.plane} slice '
                       f'{view.index + 1} through the tumour" src="data:image/png;base64,{data}"><figcaption>'
                       f"{view.plane.capitalize()}, slice {view.index + 1} of {shape[AXIS_OF_PLANE[view.plane]]}"
                       "</figcaption></figure>")
    legend = " ".join(f'<span class="swatch" style="background:{hex_colour(r)}"></span>{r} ({LONG_NAMES[r]})'
                      for r in REGIONS)
    return f"""<h2>Key slices through the tumour</h2>
<p>{SEQUENCE_TITLES.get(name, name)} with the exported mask ({legend}). Radiological convention as in the
viewer: the patient's right on the left, anterior (axial) or superior up, sagittal with anterior on the left;
pixels square in mm.</p>
<div class="views">{"".join(figures)}</div>"""


def _measurement_section(study: Study, measurements: MeasurementSet | None) -> str:
    """Rulers, ellipse ROIs with their statistics, and the RANO measurement ("" when there are none).

    Numbered as the Measure panel numbers them when the study is opened again: rulers, then ROIs.
    Slices are counted from 1, as the viewer shows them.
    """
    if measurements is None or not (measurements.rulers or measurements.ellipses or measurements.rano):
        return ""
    reorient = Reorientation(study.grid)
    measurements.check_grid(reorient.shape, reorient.affine)
    parts = ["<h2>Measurements</h2>"]
    if measurements.rulers:
        parts.append(_ruler_table(measurements))
    if measurements.ellipses:
        images = {name: reorient.apply(study.images[name]) for name in SEQUENCES if name in study.images}
        parts.append(_roi_table(measurements, images))
    if measurements.rano is not None:
        r = measurements.rano
        how = "adjusted by hand" if r.adjusted else "automatic"
        parts.append(f"""<h3>RANO bidimensional measurement of the enhancing tumour</h3>
<table><tr><th>Axial slice</th><th>Longest diameter mm</th><th>Perpendicular mm</th><th>Product mm&sup2;</th>
<th>Angle &deg;</th><th>How</th></tr>
<tr><td>{r.slice_z + 1}</td><td>{r.long_mm:.1f}</td><td>{r.short_mm:.1f}</td><td>{r.product_mm2:.0f}</td>
<td>{r.angle_deg:.0f}</td><td>{how}</td></tr></table>""")
    return "\n".join(parts)


def _ruler_table(measurements: MeasurementSet) -> str:
    rows = "".join(f"<tr><td>Ruler {number}</td><td>{_plane(ruler.axis())}</td><td>{_ruler_slice(ruler)}</td>"
                   f"<td>{ruler.length_mm(measurements.affine):.1f}</td></tr>"
                   for number, ruler in enumerate(measurements.rulers, start=1))
    return ("<h3>Rulers</h3><table><tr><th>Ruler</th><th>Plane</th><th>Slice</th><th>Length mm</th></tr>"
            f"{rows}</table>")


def _roi_table(measurements: MeasurementSet, images: Mapping[str, np.ndarray]) -> str:
    """Each ellipse ROI's size and, one row per sequence, its statistics (`images`: RAS arrays)."""
    rows = []
    for number, roi in enumerate(measurements.ellipses, start=len(measurements.rulers) + 1):
        stats = ellipse_statistics(roi, images, measurements.shape, measurements.affine)
        head = (f"<td>ROI {number}</td><td>{_plane(roi.axis)}</td><td>{roi.index + 1}</td>"
                f"<td>{stats.voxels:,}</td><td>{stats.volume_ml:.2f}</td>")
        cells = [f"<td>{SEQUENCE_TITLES.get(n, n)}</td><td>{s.mean:.1f}</td><td>{s.sd:.1f}</td>"
                 f"<td>{s.minimum:.1f}</td><td>{s.maximum:.1f}</td>" for n, s in stats.sequences.items()]
        rows.append(f"<tr>{head}{cells[0] if cells else '<td colspan=5>no voxels</td>'}</tr>")
        rows += [f"<tr><td colspan=5></td>{cell}</tr>" for cell in cells[1:]]
    return ("<h3>Ellipse ROIs</h3><table><tr><th>ROI</th><th>Plane</th><th>Slice</th><th>Voxels</th>"
            "<th>mL</th><th>Sequence</th><th>Mean</th><th>SD</th><th>Min</th><th>Max</th></tr>"
            f"{''.join(rows)}</table>")


def _plane(axis: int | None) -> str:
    return "oblique" if axis is None else PLANE_OF_AXIS[axis]


def _ruler_slice(ruler: Ruler) -> str:
    """The slice a ruler was drawn on, counted from 1 ("" for an oblique one)."""
    axis = ruler.axis()
    return "" if axis is None else str(round(ruler.a[axis]) + 1)


def _source_list(sources: Mapping[str, Path]) -> str:
    """Each sequence's file, then the label file, as absolute paths (the study may be opened from a
    relative path; the report is read elsewhere)."""
    e = html.escape
    order = [*(n for n in SEQUENCES if n in sources), *(n for n in sources if n not in SEQUENCES)]
    if not order:
        return "<li>none: the study was not read from files</li>"
    return "".join(f"<li>{e(SEQUENCE_TITLES.get(name, 'label file' if name == 'seg' else name))}: "
                   f"<code>{e(str(_absolute(sources[name])))}</code></li>" for name in order)


def _absolute(path: Path) -> Path:
    """`path` made absolute without following symbolic links (the path the user chose)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def picture_sequence(study: Study, sequence: str | None = None) -> str:
    """The sequence drawn under the overlay: `sequence` when the study has it, else the first of
    `PICTURE_SEQUENCES` it has."""
    if sequence is not None and sequence in study.images:
        return sequence
    return next(n for n in (*PICTURE_SEQUENCES, *study.images) if n in study.images)


def overview_png(study: Study, labels: np.ndarray, sequence: str | None = None, *,
                 opacity: float = OVERLAY_OPACITY) -> bytes:
    """Axial, coronal and sagittal slices through the tumour side by side, regions overlaid (PNG).

    `labels` are BraTS values on the study's grid; `sequence` (default: `picture_sequence`) is the
    image under them.
    """
    image = study.images[picture_sequence(study, sequence)]
    return encode_png(overview_rgb(image, study.grid, labels, opacity=opacity))


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
.views {{ display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }}
figure {{ margin: 0; }} figcaption {{ text-align: center; font-size: 0.9em; }}
img.slice {{ max-width: none; image-rendering: pixelated; }}
.swatch {{ display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.25em 0 0.6em; vertical-align: -0.1em; }}
dt {{ font-weight: bold; float: left; width: 11em; }} dd {{ margin-left: 12em; }}
</style></head><body>
<h1>Tumour segmentation: {e(case_id)}</h1>
<p class="note">{e(RESEARCH_USE_NOTE)}</p>
"""
