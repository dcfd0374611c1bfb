"""Every export of a corrected mask in one plain function, shared by the GUI (in a worker) and the
CLI (`brainseg export`): NIfTI with provenance, DICOM-SEG, region meshes, HTML report.

No Qt here (VTK only for meshes, imported when meshes are asked for), so the CLI stays headless.
`add_export_arguments` / `run_export` are the argparse side of `brainseg export`.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.export import Provenance, check_target, export_nifti, provenance
from brainseg_gui.core.labels import LabelConvention, convert, parse_convention
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.core.study import Study

log = logging.getLogger(__name__)

CONVENTIONS = tuple(c.value for c in LabelConvention)


@dataclass(frozen=True)
class ExportRequest:
    """What to write. Paths left None are not written. `convention` applies to the NIfTI."""

    nifti: Path | None = None
    convention: LabelConvention = LabelConvention.BRATS
    dicom_seg: Path | None = None
    meshes: Path | None = None
    mesh_format: str = "stl"
    mesh_space: str = "ras"
    report: Path | None = None
    report_png: bytes | None = field(default=None, repr=False)
    overwrite: bool = False


def export_all(study: Study, labels: np.ndarray, prov: Provenance, request: ExportRequest, *,
               progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> list[Path]:
    """Write what `request` asks for; returns the files written. `labels`: BraTS, the study's grid.

    Every target is checked before anything is written, so a refused overwrite writes nothing.
    """
    cancel = cancel or CancelToken()
    for target in targets(study, request):
        check_target(target, study, overwrite=request.overwrite)
    written: list[Path] = []
    steps = [name for name in ("nifti", "dicom_seg", "meshes", "report") if getattr(request, name) is not None]
    for number, step in enumerate(steps):
        cancel.raise_if_cancelled()
        progress(number / max(len(steps), 1), f"Writing the {step.replace('_', '-')}")
        if step == "nifti":
            assert request.nifti is not None
            written.append(export_nifti(request.nifti, labels, study, prov, convention=request.convention,
                                        overwrite=request.overwrite))
        elif step == "dicom_seg":
            from brainseg_gui.core.dicom_seg import write_dicom_seg

            assert request.dicom_seg is not None
            written.append(write_dicom_seg(request.dicom_seg, labels, study, prov, overwrite=request.overwrite))
        elif step == "meshes":
            from brainseg_gui.ui.mesh_export import export_meshes

            assert request.meshes is not None
            written += export_meshes(request.meshes, labels, study.grid, prefix=study.case_id,
                                     fmt=request.mesh_format, space=request.mesh_space,
                                     overwrite=request.overwrite, cancel=cancel)
        else:
            from brainseg_gui.core.report import overview_png, report_html, write_text_atomic

            assert request.report is not None
            picture = request.report_png if request.report_png is not None else overview_png(study, labels)
            written.append(write_text_atomic(request.report, report_html(study, prov, request.convention, picture)))
    progress(1.0, f"Exported {len(written)} file{'s' if len(written) != 1 else ''}")
    return written


def targets(study: Study, request: ExportRequest) -> list[Path]:
    """Every file the request would write (meshes: one per region; empty regions are skipped later)."""
    from brainseg_gui.core.image_io import sidecar_path
    from brainseg_gui.core.labels import REGIONS

    out = [p for p in (request.nifti, request.dicom_seg, request.report) if p is not None]
    if request.nifti is not None:
        out.append(sidecar_path(request.nifti))
    if request.meshes is not None:
        out += [Path(request.meshes) / f"{study.case_id}_{region}.{request.mesh_format}" for region in REGIONS]
    return out


# ---- the CLI ------------------------------------------------------------------------------------


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `brainseg export` (the CLI module adds the subparser and calls this)."""
    parser.add_argument("study", type=Path, metavar="STUDY", help="the case the mask belongs to (folder or any file)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--mask", type=Path, metavar="MASK",
                        help="label map to export (default: the case's own seg file)")
    source.add_argument("--from-journal", action="store_true",
                        help="export the edits an interrupted GUI session left for STUDY")
    parser.add_argument("--mask-labels", choices=CONVENTIONS, help="convention of MASK (default: guess)")
    parser.add_argument("--ai-mask", type=Path, metavar="AI",
                        help="the model's unedited mask, to record what was changed (default: MASK itself)")
    parser.add_argument("--model-version", metavar="V", help="model version for the provenance "
                        "(default: from the sidecar of AI or MASK)")
    parser.add_argument("-o", "--output", type=Path, metavar="OUT.nii.gz", help="write the mask as NIfTI")
    parser.add_argument("--labels", choices=CONVENTIONS, default="brats",
                        help="convention of the written NIfTI (default brats)")
    parser.add_argument("--dicom-seg", type=Path, metavar="SEG.dcm",
                        help="write a DICOM-SEG (only for a study read from a DICOM series)")
    parser.add_argument("--meshes", type=Path, metavar="DIR", help="write one mesh per region into DIR")
    parser.add_argument("--mesh-format", choices=("stl", "obj"), default="stl")
    parser.add_argument("--mesh-space", choices=("ras", "lps"), default="ras",
                        help="world coordinates of the meshes (3D Slicer reads STL/OBJ as LPS)")
    parser.add_argument("--report", type=Path, metavar="REPORT.html", help="write a one-page HTML report")
    parser.add_argument("--force", action="store_true", help="overwrite earlier exports (never an input)")


def run_export(args: argparse.Namespace) -> int:
    """`brainseg export`: load STUDY and the mask, write what was asked, print one line per file."""
    from brainseg_gui.core.io import load_label_map, load_study

    if not any((args.output, args.dicom_seg, args.meshes, args.report)):
        raise BrainSegError("nothing to export: give -o OUT.nii.gz, --dicom-seg, --meshes or --report")
    study = load_study(args.study)
    labels, ai, version, base = _mask_for(args, study, load_label_map)
    prov = provenance(study, labels, ai, model_version=version, base=base)
    request = ExportRequest(nifti=args.output, convention=parse_convention(args.labels), dicom_seg=args.dicom_seg,
                            meshes=args.meshes, mesh_format=args.mesh_format, mesh_space=args.mesh_space,
                            report=args.report, overwrite=args.force)
    for path in export_all(study, labels, prov, request):
        print(path)
    changed = prov.comparison.changed
    print(f"{study.case_id}: {'edited, ' + format(changed, ',') + ' voxels changed' if changed else 'unedited'}; "
          f"model {version or 'unknown'}")
    return 0


def _mask_for(args: argparse.Namespace, study: Study, load_label_map) -> tuple[np.ndarray, np.ndarray, str | None, str]:
    """(labels, AI labels, model version, origin) in BraTS values on the study's grid."""
    if args.from_journal:
        from brainseg_gui.core.journal import journal_path, recover

        path = journal_path(study)
        if not path.exists():
            raise BrainSegError(f"no unsaved edits were found for {study.case_id} (looked for {path})")
        session, contents = recover(path, study.grid)
        return session.labels, session.ai, contents.meta.get("model_version"), contents.meta.get("base", "journal")
    if args.mask is not None:
        labels, convention, _ = load_label_map(args.mask, convention=args.mask_labels, reference=study.grid)
        labels = convert(labels, convention, LabelConvention.BRATS)
        origin = f"label map {args.mask}"
    elif study.labels is not None and study.label_convention is not None:
        labels = convert(study.labels, study.label_convention, LabelConvention.BRATS)
        origin = f"label file {study.sources.get('seg')}"
    else:
        raise BrainSegError(f"{args.study} has no label map: give --mask or --from-journal")
    ai = labels
    version = args.model_version
    if args.ai_mask is not None:
        ai_labels, ai_convention, _ = load_label_map(args.ai_mask, reference=study.grid)
        ai = convert(ai_labels, ai_convention, LabelConvention.BRATS)
    for source in (args.ai_mask, args.mask):
        if version is None and source is not None:
            version = _sidecar_version(Path(source))
    return labels, ai, version, origin


def _sidecar_version(path: Path) -> str | None:
    """The model version a prediction's JSON sidecar records (`brainseg predict` writes one)."""
    from brainseg_gui.core.image_io import sidecar_path

    try:
        data = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("model_version") if isinstance(data, dict) else None
    return str(version) if version else None
