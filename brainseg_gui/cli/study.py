"""`brainseg gui`, `info` and `evaluate`: open, describe and score studies."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from brainseg_gui.cli.common import (
    CONVENTIONS,
    EXIT_OK,
    GuiUnavailableError,
    UsageError,
    path_arg,
    plain,
    require_exists,
)
from brainseg_gui.cli.dicom import add_dicom_options, dicom_report, dicom_text, find_study_case


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the gui, info and evaluate commands."""
    gui = commands.add_parser("gui", parents=parents, help="open the viewer (the default command)",
                              description="Open the viewer on STUDY, or on the built-in demo study.")
    gui.add_argument("study", nargs="?", type=path_arg, metavar="STUDY",
                     help="a case folder, any file of a case, a 4D NIfTI, or a DICOM study (folder tree, .zip, "
                          "DICOMDIR)")
    gui.add_argument("--no-welcome", action="store_true", help="do not show the first-start welcome")
    gui.set_defaults(run=_run_gui, live_logs=True)

    info = commands.add_parser("info", parents=parents, help="describe a study: files, grid, intensities, labels",
                               description="Describe what BrainSeg finds in PATH (or the demo study).")
    info.add_argument("path", nargs="?", type=path_arg, metavar="PATH",
                      help="a case folder, any file of a case, or a DICOM study (folder tree, .zip, DICOMDIR)")
    info.add_argument("--demo", action="store_true", help="describe the built-in synthetic demo study")
    info.add_argument("--labels", choices=CONVENTIONS, help="label convention of the case's seg (default: guess)")
    info.add_argument("--allow-resample", action="store_true",
                      help="resample sequences on other grids onto the FLAIR grid when they overlap")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_dicom_options(info)
    info.set_defaults(run=_run_info, warnings_in_output=True)

    evaluate = commands.add_parser("evaluate", parents=parents, help="score a predicted label map against truth",
                                   description="Metrics per region (WT, TC, ET) of PRED against GT, voxel-wise "
                                               "and lesion-wise (BraTS 2023 rules, glioma parameters).")
    evaluate.add_argument("pred", type=path_arg, metavar="PRED", help="predicted label map")
    evaluate.add_argument("gt", type=path_arg, metavar="GT", help="ground-truth label map on the same grid")
    evaluate.add_argument("--pred-labels", choices=CONVENTIONS, help="convention of PRED (default: guess)")
    evaluate.add_argument("--gt-labels", choices=CONVENTIONS, help="convention of GT (default: guess)")
    evaluate.add_argument("--brain", type=path_arg, metavar="CASE_OR_IMAGE",
                          help="the case's images, to also report accuracy inside the brain (non-zero voxels)")
    evaluate.add_argument("--json", action="store_true", help="print JSON (full-precision numbers)")
    evaluate.set_defaults(run=_run_evaluate)



def _run_gui(args: argparse.Namespace) -> int:
    study: Path | None = args.study
    if study is not None and not study.exists():
        raise FileNotFoundError(2, "No such file or folder", str(study))
    problem = _display_problem()
    if problem:
        raise GuiUnavailableError(f"the viewer cannot start: {problem}")
    preload = None
    if study is not None:  # read it beside Qt's imports and the window's build (app/preload.py says why)
        from brainseg_gui.app.preload import StudyPreload

        preload = StudyPreload(study)
    try:
        import PySide6  # noqa: F401

        from brainseg_gui.ui.app import run_app
    except ImportError as error:
        raise GuiUnavailableError(
            f"the viewer cannot start: {error}; install the GUI dependencies (PySide6-Essentials>=6.8,<6.12, "
            "pyqtgraph, vtk) or use the info/evaluate/predict/train commands"
        ) from error
    return int(run_app(study, welcome=not getattr(args, "no_welcome", False), preload=preload) or 0)


def _display_problem() -> str | None:
    """Why Qt would abort for want of a screen, or None (Qt itself aborts the process, uncatchably)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    if not sys.platform.startswith("linux") or platform not in ("", "xcb", "wayland"):
        return None
    if os.environ.get("DISPLAY") or (platform != "xcb" and os.environ.get("WAYLAND_DISPLAY")):
        return None
    return ("no display found (DISPLAY is not set); run it on a desktop, under xvfb-run, or with "
            "QT_QPA_PLATFORM=offscreen; info, evaluate, predict and train need no display")


def _run_info(args: argparse.Namespace) -> int:
    if args.demo == (args.path is not None):
        raise UsageError("give either PATH or --demo (see 'brainseg info --help')")
    if args.path is not None:
        require_exists(args.path)
    from brainseg_gui.cli.prepare import load_for_info
    from brainseg_gui.core.readiness import assess_readiness
    from brainseg_gui.core.study_report import describe_study, format_study_report

    if args.demo:
        from brainseg_gui.core.phantom import demo_study

        study, layout = demo_study(), "demo (synthetic phantom, not a patient)"
        readiness = assess_readiness(study)
    else:
        found = find_study_case(args, args.path)
        layout = found.case.layout
        study, readiness = load_for_info(found.case, label_convention=args.labels,
                                         allow_resample=args.allow_resample or found.is_dicom)
    report = describe_study(study, layout=layout, path=None if args.demo else args.path)
    report["readiness"] = readiness.as_dict()
    if not args.demo and found.is_dicom:
        report["dicom"] = dicom_report(found)
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    text = format_study_report(report) + "\n" + readiness.describe()
    print(dicom_text(found) + "\n" + text if not args.demo and found.is_dicom else text)
    return EXIT_OK



def _run_evaluate(args: argparse.Namespace) -> int:
    for path in (args.pred, args.gt, args.brain):
        if path is not None:
            require_exists(path)
    for name, path in (("PRED", args.pred), ("GT", args.gt)):
        if path.is_dir():
            raise UsageError(f"{name} {path} is a folder; give the label map file (e.g. *_seg.nii.gz)")
    from brainseg_gui.core.errors import GridMismatchError
    from brainseg_gui.core.io import load_label_map
    from brainseg_gui.core.labels import to_regions
    from brainseg_gui.core.lesion_metrics import (
        DEFAULT_CHALLENGE,
        challenge_parameters,
        describe_parameters,
        format_lesion_table,
        lesion_wise,
    )
    from brainseg_gui.core.metrics import evaluate_regions, format_table
    pred, pred_convention, pred_grid = load_label_map(args.pred, convention=args.pred_labels)
    truth, truth_convention, truth_grid = load_label_map(args.gt, convention=args.gt_labels)
    if not pred_grid.same_as(truth_grid):
        raise GridMismatchError(
            f"{args.pred} and {args.gt} are not on the same grid: {_grid_text(pred_grid)} vs "
            f"{_grid_text(truth_grid)}"
        )
    brain = None if args.brain is None else _brain_mask(args.brain, pred_grid)
    notes = [note for note in (_binary_note("PRED", args.pred, pred, args.pred_labels, pred_convention),
                               _binary_note("GT", args.gt, truth, args.gt_labels, truth_convention)) if note]
    for note in notes:
        print(f"brainseg: note: {note}", file=sys.stderr)
    pred_regions, truth_regions = to_regions(pred, pred_convention), to_regions(truth, truth_convention)
    results = evaluate_regions(pred_regions, truth_regions, pred_grid.spacing, brain=brain)
    lesions = lesion_wise(pred_regions, truth_regions, pred_grid.spacing, challenge=DEFAULT_CHALLENGE)
    parameters = challenge_parameters(DEFAULT_CHALLENGE)
    if args.json:
        report = {
            "prediction": {"file": str(args.pred), "convention": pred_convention.value},
            "truth": {"file": str(args.gt), "convention": truth_convention.value},
            "brain": None if args.brain is None else str(args.brain),
            "notes": notes,
            "shape": list(pred_grid.shape),
            "spacing_mm": list(pred_grid.spacing),
            "regions": {region: {k: plain(v) for k, v in m.as_dict().items()} for region, m in results.items()},
            "lesion_wise": {
                "challenge": parameters.challenge,
                "dilation": parameters.dilation,
                "volume_threshold_mm3": parameters.volume_threshold_mm3,
                "regions": {region: m.as_dict() for region, m in lesions.items()},
            },
        }
        print(json.dumps(report, indent=2))
    else:
        print(f"prediction: {args.pred} ({pred_convention.description})")
        print(f"truth:      {args.gt} ({truth_convention.description})")
        print(f"grid:       {pred_grid.describe()}")
        print(format_table(results))
        print()
        print(describe_parameters(parameters))
        print(format_lesion_table(lesions))
    return EXIT_OK


def _binary_note(name: str, path: Path, labels: Any, given: str | None, convention: Any) -> str:
    """A 0/1 mask whose convention was guessed: say how it was read, since WT/TC/ET depend on it."""
    from brainseg_gui.core.labels import present_values

    values = present_values(labels)
    if given is not None or not values <= {0, 1}:
        return ""
    return (f"{name} {path} holds only the values {sorted(values)}: read as {convention.description}, "
            "so 1 is the necrotic core (WT = TC = the mask, ET empty); a binary whole-tumour mask "
            "is scored right in WT only")


def _brain_mask(path: Path, grid: Any) -> Any:
    """Non-zero voxels of any sequence of the case (or image) at `path`, which must share `grid`."""
    import numpy as np

    from brainseg_gui.core.errors import GridMismatchError
    from brainseg_gui.core.io import load_study

    study = load_study(path)
    if not study.grid.same_as(grid):
        raise GridMismatchError(f"the images of {path} are not on the label maps' grid: "
                                f"{_grid_text(study.grid)} vs {_grid_text(grid)}")
    return np.any([image != 0 for image in study.images.values()], axis=0)


def _grid_text(grid: Any) -> str:
    origin = ", ".join(f"{x + 0.0:g}" for x in grid.affine[:3, 3])
    return f"{grid.describe()}, origin ({origin}) mm"


