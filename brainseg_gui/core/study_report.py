"""What `brainseg info` says about a study, as plain JSON-able values and as text."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui.core.labels import REGIONS, to_regions
from brainseg_gui.core.study import SEQUENCES, Study

log = logging.getLogger(__name__)


def describe_study(study: Study, *, layout: str, path: Path | None) -> dict[str, Any]:
    """Everything `brainseg info` reports about a loaded Study, as plain JSON-able values."""
    grid = study.grid
    sequences: dict[str, Any] = {}
    for name in SEQUENCES:
        if name not in study.images:
            continue
        image = study.images[name]
        source = study.sources.get(name)
        sequences[name] = {
            "file": None if source is None else str(source),
            "dtype_on_disk": _dtype_on_disk(source),
            "min": float(image.min()),
            "max": float(image.max()),
        }
    labels: dict[str, Any] | None = None
    convention = study.label_convention  # never None with labels (Study.__post_init__ refuses that)
    if study.labels is not None and convention is not None:
        values, counts = np.unique(study.labels, return_counts=True)
        regions = to_regions(study.labels, convention)
        source = study.sources.get("seg")
        labels = {
            "file": None if source is None else str(source),
            "dtype_on_disk": _dtype_on_disk(source),
            "convention": convention.value,
            "convention_description": convention.description,
            "voxel_counts": {str(int(v)): int(c) for v, c in zip(values, counts)},
            "region_volumes_ml": {name: float(regions[i].sum()) * grid.voxel_volume_ml
                                  for i, name in enumerate(REGIONS)},
        }
    return {
        "path": None if path is None else str(path),
        "case_id": study.case_id,
        "layout": layout,
        "shape": list(grid.shape),
        "spacing_mm": list(grid.spacing),
        "orientation": "".join(grid.axcodes),
        "affine": [[float(x) for x in row] for row in grid.affine],
        "sequences": sequences,
        "missing": list(study.missing),
        "labels": labels,
        "warnings": list(study.warnings),
    }


def format_study_report(report: Mapping[str, Any]) -> str:
    """`describe_study`'s report as the human-readable text of `brainseg info`."""
    spacing = " x ".join(f"{s:g}" for s in report["spacing_mm"])
    lines = [
        f"case:        {report['case_id']}",
        f"layout:      {report['layout']}",
        (f"grid:        {' x '.join(map(str, report['shape']))} voxels, {spacing} mm, "
         f"orientation {report['orientation']}"),
        "sequences:",
    ]
    for name, seq in report["sequences"].items():
        lines.append(f"  {name:<6} {_origin(seq)}, intensities {seq['min']:g} .. {seq['max']:g}")
    lines.append(f"missing:     {', '.join(report['missing']) or 'none'}")
    labels = report["labels"]
    if labels is None:
        lines.append("labels:      none")
    else:
        counts = ", ".join(f"{value}: {count}" for value, count in labels["voxel_counts"].items())
        volumes = ", ".join(f"{name} {ml:.2f} mL" for name, ml in labels["region_volumes_ml"].items())
        lines += [
            f"labels:      {_origin(labels)}",
            f"  convention {labels['convention_description']}",
            f"  voxels     {counts}",
            f"  regions    {volumes}",
        ]
    lines.append("warnings:" + ("    none" if not report["warnings"] else ""))
    lines += [f"  - {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


def _origin(entry: Mapping[str, Any]) -> str:
    if entry["file"] is None:
        return "generated (no file)"
    return f"{entry['file']} ({entry['dtype_on_disk'] or 'unknown type'} on disk)"


def _dtype_on_disk(source: Path | None) -> str | None:
    """The stored voxel type of an image file, read from its header only (None if unknown)."""
    if source is None or not Path(source).is_file():
        return "DICOM series" if source is not None and Path(source).is_dir() else None
    name = Path(source).name.lower()
    if name.endswith(".dcmseries"):
        from brainseg_gui.core.dicom_volume import read_series_file

        data = read_series_file(Path(source))
        return f"DICOM series {data.get('series_number') or ''} {data.get('description') or ''}".strip()
    try:
        if name.endswith((".nii", ".nii.gz")):
            from brainseg_gui.core.nib import nib

            return str(nib.load(str(source)).get_data_dtype())  # type: ignore[attr-defined]
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(source))
        reader.ReadImageInformation()
        pixel = reader.GetPixelID()
        for name in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"):
            if getattr(sitk, "sitk" + name.capitalize().replace("Ui", "UI"), None) == pixel:
                return name
        return str(sitk.GetPixelIDValueAsString(pixel))
    except Exception:  # the file loaded already; an odd header only costs this detail
        log.debug("could not read the voxel type of %s", source, exc_info=True)
        return None
