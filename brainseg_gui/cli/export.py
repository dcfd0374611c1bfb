"""`brainseg export`: a mask of a study written as NIfTI (any convention), DICOM-SEG, meshes, an
overview PNG and a one-page report, each mask with its provenance sidecar; the shell's side of the
GUI's File > Export menu (both go through `app.exports.export_all`). `--measurements` lists a file the
Measure panel saved in the report, as the GUI lists the open study's.

The mask is the study's own label file, a label map (`--mask`, e.g. from `brainseg predict`, or
corrected elsewhere), or the edits an interrupted GUI session left in its journal
(`--from-journal`). `--ai-mask` names the model's unedited mask, so the provenance says what was
changed by hand. Inputs (the study's files, MASK, AI and their sidecars) are never written; an
earlier export is replaced only with `--force`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from brainseg_gui.cli.common import CONVENTIONS, EXIT_OK, ProgressBar, UsageError, path_arg, require_exists
from brainseg_gui.core.errors import BrainSegError


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the export command."""
    p = commands.add_parser(
        "export", parents=parents, help="write a (corrected) mask as NIfTI, DICOM-SEG, meshes, PNG or report",
        description="Export the mask of STUDY: its own label file, --mask MASK, or the unsaved edits a GUI "
                    "session left (--from-journal). Every exported mask gets a JSON provenance sidecar "
                    "(model version, voxels changed per region against --ai-mask, source files, who, when).",
        epilog="Example: brainseg predict CASE -o ai.nii.gz; (correct it); "
               "brainseg export CASE --mask corrected.nii.gz --ai-mask ai.nii.gz -o out.nii.gz --labels msd "
               "--report out.html")
    p.add_argument("study", type=path_arg, metavar="STUDY", help="the case the mask belongs to (folder or any file)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--mask", type=path_arg, metavar="MASK", help="label map to export (default: STUDY's own seg)")
    source.add_argument("--from-journal", action="store_true",
                        help="export the unsaved edits an interrupted GUI session left for STUDY")
    p.add_argument("--mask-labels", choices=CONVENTIONS,
                   help="convention of MASK and AI (default: their sidecar's, else guessed from the values)")
    p.add_argument("--ai-mask", type=path_arg, metavar="AI",
                   help="the model's unedited mask, to record what was changed by hand (default: MASK itself)")
    p.add_argument("--model-version", metavar="V",
                   help="model version for the provenance (default: from the sidecar of AI or MASK)")
    p.add_argument("-o", "--output", type=path_arg, metavar="OUT",
                   help="write the mask as NIfTI: a .nii.gz/.nii file, or a folder (<case>_seg_corrected_<labels>.nii.gz)")
    p.add_argument("--labels", choices=CONVENTIONS, default="brats",
                   help="convention of the written NIfTI and of the report (default brats)")
    p.add_argument("--dicom-seg", type=path_arg, metavar="SEG.dcm",
                   help="write a DICOM-SEG referencing the series (only for a study read from DICOM)")
    p.add_argument("--meshes", type=path_arg, metavar="DIR", help="write one surface per region (WT, TC, ET) into DIR")
    p.add_argument("--mesh-format", choices=("stl", "obj"), default="stl")
    p.add_argument("--mesh-space", choices=("ras", "lps"), default="ras",
                   help="world coordinates of the meshes (default ras; 3D Slicer reads STL/OBJ as lps)")
    p.add_argument("--png", type=path_arg, metavar="OUT.png",
                   help="write axial, coronal and sagittal slices through the tumour with the regions")
    p.add_argument("--report", type=path_arg, metavar="OUT.html",
                   help="write a one-page HTML report (volumes, Dice AI vs corrected and against the study's "
                        "labels, key slices, measurements, provenance)")
    p.add_argument("--measurements", type=path_arg, metavar="FILE.json",
                   help="list these measurements in the report (a file the Measure panel's Save… wrote)")
    p.add_argument("--force", action="store_true", help="replace earlier exports (never an input)")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    if not any((args.output, args.dicom_seg, args.meshes, args.png, args.report)):
        raise UsageError("nothing to export: give -o OUT.nii.gz, --dicom-seg, --meshes, --png or --report")
    for path in (args.study, args.mask, args.ai_mask, args.measurements):
        if path is not None:
            require_exists(path)
    if args.meshes is not None and args.meshes.exists() and not args.meshes.is_dir():
        raise UsageError(f"--meshes takes a folder; {args.meshes} is a file")
    if args.measurements is not None and args.report is None:
        raise UsageError("--measurements are listed in the report: give --report OUT.html too")

    from brainseg_gui.app.exports import ExportRequest, export_all
    from brainseg_gui.core.export import default_export_name, provenance
    from brainseg_gui.core.io import load_study
    from brainseg_gui.core.labels import parse_convention

    study = load_study(args.study)
    mask = _mask_for(args, study)
    convention = parse_convention(args.labels)
    output = args.output
    if output is not None and output.is_dir():
        output = output / default_export_name(study, convention)
    measurements = None if args.measurements is None else _read_measurements(args.measurements, study)
    prov = provenance(study, mask.labels, mask.ai, model_version=mask.version, base=mask.origin)
    request = ExportRequest(nifti=output, convention=convention, dicom_seg=args.dicom_seg, meshes=args.meshes,
                            mesh_format=args.mesh_format, mesh_space=args.mesh_space, png=args.png,
                            report=args.report, measurements=measurements, overwrite=args.force,
                            protect=(*mask.inputs, *([args.measurements] if args.measurements else [])))
    if args.meshes is not None:
        args.meshes.mkdir(parents=True, exist_ok=True)
    with ProgressBar(study.case_id) as bar:
        written = export_all(study, mask.labels, prov, request, progress=bar)
    for path in written:
        print(path)
    if mask.journal is not None and (output is not None or args.dicom_seg is not None):
        _note_saved(mask.journal, output or args.dicom_seg)
    comparison = prov.comparison
    if comparison.edited:
        dice = ", ".join(f"{region} {value:.3f}" for region, value in comparison.dice.items())
        edits = f"edited, {comparison.changed:,} voxels changed (Dice AI vs corrected: {dice})"
    else:
        edits = ("unedited" if args.ai_mask is not None or args.from_journal
                 else "no --ai-mask given, so no edits recorded")
    print(f"{study.case_id}: {edits}; model {mask.version or 'unknown'}")
    return EXIT_OK


class _Mask:
    """The labels to export and what they came from (BraTS values on the study's grid)."""

    def __init__(self, labels: Any, ai: Any, version: str | None, origin: str,
                 inputs: tuple[Path, ...] = (), journal: Any = None) -> None:
        self.labels, self.ai, self.version, self.origin = labels, ai, version, origin
        self.inputs, self.journal = inputs, journal


def _mask_for(args: argparse.Namespace, study: Any) -> _Mask:
    from brainseg_gui.core.image_io import read_sidecar, sidecar_path
    from brainseg_gui.core.labels import LabelConvention, convert

    brats = LabelConvention.BRATS
    if args.from_journal:
        from brainseg_gui.core.journal import journal_path, recover_or_set_aside

        path = journal_path(study)
        if not path.exists():
            raise BrainSegError(f"no unsaved edits were found for {study.case_id} (looked for {path})")
        session, contents = recover_or_set_aside(path, study.grid)  # an unrestorable one is kept aside
        meta = contents.meta
        version = args.model_version or meta.get("model_version")
        return _Mask(session.labels, session.ai, version, meta.get("base") or f"edits journaled in {path}",
                     (path,), contents)
    inputs: list[Path] = []
    if args.mask is not None:
        labels = _read_mask(args.mask, args.mask_labels, study)
        origin = f"label map {args.mask.resolve()}"
        inputs += [args.mask, sidecar_path(args.mask)]
    elif study.labels is not None and study.label_convention is not None:
        labels = convert(study.labels, study.label_convention, brats)
        origin = f"label file {study.sources.get('seg')}"
    else:
        raise BrainSegError(f"{args.study} has no label map of its own: give --mask MASK or --from-journal")
    ai = labels
    if args.ai_mask is not None:
        ai = _read_mask(args.ai_mask, args.mask_labels, study)
        inputs += [args.ai_mask, sidecar_path(args.ai_mask)]
    version = args.model_version
    for source in (args.ai_mask, args.mask):
        if version is None and source is not None:
            version = read_sidecar(source).get("model_version") or None
    version = None if version is None else str(version)
    if args.ai_mask is not None:
        model = f" (model {version})" if version else ""
        origin = f"AI mask {args.ai_mask.resolve()}{model}, corrected as the {origin}"
    return _Mask(labels, ai, version, origin, tuple(inputs))


def _read_mask(path: Path, convention: str | None, study: Any) -> Any:
    """A label map on the study's grid, in BraTS values (its convention: given, its sidecar's, guessed)."""
    from brainseg_gui.core.image_io import read_sidecar
    from brainseg_gui.core.io import load_label_map
    from brainseg_gui.core.labels import LabelConvention, convert

    convention = convention or read_sidecar(path).get("label_convention") or None
    labels, found, _ = load_label_map(path, convention=convention, reference=study.grid)
    return convert(labels, found, LabelConvention.BRATS)


def _read_measurements(path: Path, study: Any) -> Any:
    """The measurements saved for STUDY (its RAS grid); a damaged file or another study's is an error."""
    from brainseg_gui.core.measurements import read_measurements
    from brainseg_gui.core.orientation import Reorientation

    reorient = Reorientation(study.grid)
    return read_measurements(path, reorient.shape, reorient.affine)


def _note_saved(contents: Any, path: Path) -> None:
    """Tell the journal the edits went to `path`, so the GUI's restore question says so."""
    from brainseg_gui.core.journal import Journal

    journal = Journal.resume(contents)
    try:
        journal.record_saved({"path": str(path), "by": "brainseg export"})
    finally:
        journal.close()

