"""The `brainseg` command: the viewer, and info / evaluate / predict / train for the shell.

Thin by design (DESIGN.md): argument handling and printing only; the work is done by `core` and `ml`.
It starts fast: numpy, torch, Qt and SimpleITK are imported inside the subcommand that needs them.
A user's mistake (bad path, corrupt file, unknown labels, mismatched grids, ...) becomes ONE line
on stderr, `brainseg: error: ...`, and exit status 2 (130 for Ctrl-C), never a traceback; `-v`
shows debug logs and tracebacks. Nothing is written when a command fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, Self

from brainseg_gui import RESEARCH_USE_NOTE, __version__
from brainseg_gui.core.errors import BrainSegError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
COMMANDS = ("gui", "info", "evaluate", "predict", "train")
CONVENTIONS = ("brats", "brats23", "msd")
DEVICES = ("auto", "cpu", "cuda")
#: Where the shipped model is installed, and its card's file name (read without importing torch).
SHIPPED_PACKAGE, CARD_FILE, WEIGHTS_FILE = "brainseg_gui.shipped_model", "card.json", "weights.safetensors"


class UsageError(BrainSegError):
    """Bad command-line arguments (argparse's complaints, made one line)."""


class GuiUnavailableError(BrainSegError):
    """The viewer cannot start here (no display, Qt missing)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run `brainseg` with `argv` (default: sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(_with_default_command(list(sys.argv[1:] if argv is None else argv)))
    except UsageError as error:
        return _fail(str(error), EXIT_USAGE)
    except SystemExit as done:  # --help, --version
        return int(done.code or 0) if not isinstance(done.code, str) else EXIT_USAGE
    handler = _start_logging(args.verbose, live=getattr(args, "live_logs", False))
    completed = False
    try:
        status = int(args.run(args) or EXIT_OK)
        completed = True
        return status
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # `brainseg info ... | head`: the reader left; say nothing more
        _silence_stdout()
        completed = True
        return EXIT_BROKEN_PIPE
    except (BrainSegError, OSError) as error:
        log.debug("details of the error below", exc_info=True)
        return _fail(_describe_error(error), EXIT_USAGE)
    except Exception as error:  # a bug: say so in one line; -v shows where
        log.debug("unexpected error", exc_info=True)
        hint = "" if args.verbose else " (run with -v for details)"
        return _fail(f"unexpected {type(error).__name__}: {_describe_error(error)}{hint}", EXIT_UNEXPECTED)
    finally:
        # info prints the study's warnings itself; other commands show the held ones on success.
        _stop_logging(handler, succeeded=completed and not getattr(args, "warnings_in_output", False))


# ----------------------------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (imports nothing heavy)."""
    verbose = _Parser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                         help="show debug logs and tracebacks")
    parser = _Parser(
        prog="brainseg",
        description="Brain-tumour MRI segmentation: viewer, editor and command line. " + RESEARCH_USE_NOTE,
        epilog="Without a command, `brainseg [STUDY]` opens the viewer (on the demo study when none is given).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="show debug logs and tracebacks")
    parser.add_argument("--version", action=_VersionAction, help="print the app and model versions")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    gui = commands.add_parser("gui", parents=[verbose], help="open the viewer (the default command)",
                              description="Open the viewer on STUDY, or on the built-in demo study.")
    gui.add_argument("study", nargs="?", type=Path, metavar="STUDY",
                     help="a case folder, any file of a case, a 4D NIfTI or a DICOM folder")
    gui.set_defaults(run=_run_gui, live_logs=True)

    info = commands.add_parser("info", parents=[verbose], help="describe a study: files, grid, intensities, labels",
                               description="Describe what BrainSeg finds in PATH (or the demo study).")
    info.add_argument("path", nargs="?", type=Path, metavar="PATH", help="a case folder or any file of a case")
    info.add_argument("--demo", action="store_true", help="describe the built-in synthetic demo study")
    info.add_argument("--labels", choices=CONVENTIONS, help="label convention of the case's seg (default: guess)")
    info.add_argument("--allow-resample", action="store_true",
                      help="resample sequences on other grids onto the FLAIR grid when they overlap")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(run=_run_info, warnings_in_output=True)

    evaluate = commands.add_parser("evaluate", parents=[verbose], help="score a predicted label map against truth",
                                   description="Metrics per region (WT, TC, ET) of PRED against GT.")
    evaluate.add_argument("pred", type=Path, metavar="PRED", help="predicted label map")
    evaluate.add_argument("gt", type=Path, metavar="GT", help="ground-truth label map on the same grid")
    evaluate.add_argument("--pred-labels", choices=CONVENTIONS, help="convention of PRED (default: guess)")
    evaluate.add_argument("--gt-labels", choices=CONVENTIONS, help="convention of GT (default: guess)")
    evaluate.add_argument("--brain", type=Path, metavar="CASE_OR_IMAGE",
                          help="the case's images, to also report accuracy inside the brain (non-zero voxels)")
    evaluate.add_argument("--json", action="store_true", help="print JSON (full-precision numbers)")
    evaluate.set_defaults(run=_run_evaluate)

    predict = commands.add_parser("predict", parents=[verbose], help="segment a case or a folder of cases",
                                  description="Segment CASE into OUT.nii.gz, or every case of a folder into OUT_DIR.")
    predict.add_argument("source", type=Path, metavar="CASE_OR_DIR")
    predict.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                         help="output label map (.nii.gz) or, for a folder of cases, output folder")
    predict.add_argument("--labels", choices=CONVENTIONS, default="brats", help="output convention (default brats)")
    predict.add_argument("--device", choices=DEVICES, default="auto", help="default auto: CUDA when present")
    predict.add_argument("--model", type=Path, metavar="DIR", help="model folder (default: the shipped model)")
    predict.add_argument("--tta", action="store_true", help="test-time augmentation (mirroring; slower)")
    predict.add_argument("--save-probabilities", type=Path, nargs="?", const=True, metavar="FILE",
                         help="also write the region probabilities (WT, TC, ET, float16 4D NIfTI) to FILE "
                              "(default: beside the output, *_prob.nii.gz)")
    predict.add_argument("--allow-missing", action="store_true",
                         help="segment cases that lack sequences (the result is flagged)")
    predict.add_argument("--allow-resample", action="store_true",
                         help="resample sequences on other grids onto the FLAIR grid when they overlap")
    predict.set_defaults(run=_run_predict)

    train = commands.add_parser("train", parents=[verbose], help="train a generator (adversarially)",
                                description="Train the GAN segmenter on labelled cases.")
    train.add_argument("data", nargs="+", type=Path, metavar="DATA_DIR", help="folders of labelled cases")
    train.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR", help="where the model is written")
    train.add_argument("--val", nargs="+", metavar="CASE", help="validation case ids or folders")
    train.add_argument("--epochs", type=_positive_int, metavar="N")
    train.add_argument("--steps-per-epoch", type=_positive_int, metavar="N")
    train.add_argument("--batch-size", type=_positive_int, metavar="N")
    train.add_argument("--lambda", dest="lambda_rec", type=_positive_float, metavar="L",
                       help="weight of the reconstruction loss against the adversarial one")
    train.add_argument("--no-adversarial", action="store_true", help="ablation: train G alone (no D)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    train.add_argument("--device", choices=DEVICES, default="auto")
    train.add_argument("--folds", type=_positive_int, metavar="K", help="case-level K-fold cross-validation")
    train.add_argument("--fold", type=int, metavar="I", help="which fold (0..K-1) is held out")
    train.add_argument("--seed", type=int, metavar="N")
    train.set_defaults(run=_run_train, live_logs=True)
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    """`brainseg [STUDY]` means `brainseg gui [STUDY]`; help and --version stay top-level."""
    for index, token in enumerate(argv):
        if token in ("-h", "--help", "--version"):
            return argv
        if token == "--" or not token.startswith("-"):
            return argv if token in COMMANDS else [*argv[:index], "gui", *argv[index:]]
    return [*argv, "gui"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


# ---------------------------------------------------------------------------------------------- version


def version_text() -> str:
    """App version and the shipped model's version, read from its card without importing torch."""
    return f"brainseg {__version__}\nmodel: {shipped_model_summary()}"


def shipped_model_summary() -> str:
    from importlib import resources

    try:
        folder = resources.files(SHIPPED_PACKAGE)
        card = json.loads(folder.joinpath(CARD_FILE).read_text(encoding="utf-8"))
        has_weights = folder.joinpath(WEIGHTS_FILE).is_file()
    except (ImportError, OSError, ValueError):
        return "no model installed"
    if not isinstance(card, dict):
        return "no model installed (unreadable card)"
    details = ", ".join(str(card[k]) for k in ("architecture", "created") if card.get(k))
    text = str(card.get("version") or "unknown version") + (f" ({details})" if details else "")
    return text if has_weights else f"{text}, but its weights are missing"


# -------------------------------------------------------------------------------------------------- gui


def _run_gui(args: argparse.Namespace) -> int:
    study: Path | None = args.study
    if study is not None and not study.exists():
        raise FileNotFoundError(2, "No such file or folder", str(study))
    problem = _display_problem()
    if problem:
        raise GuiUnavailableError(f"the viewer cannot start: {problem}")
    try:
        import PySide6  # noqa: F401

        from brainseg_gui.ui.app import run_app
    except ImportError as error:
        raise GuiUnavailableError(
            f"the viewer cannot start: {error}; install the GUI dependencies (PySide6-Essentials>=6.8,<6.12, "
            "pyqtgraph, vtk) or use the info/evaluate/predict/train commands"
        ) from error
    return int(run_app(study) or 0)


def _display_problem() -> str | None:
    """Why Qt would abort for want of a screen, or None (Qt itself aborts the process, uncatchably)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    if not sys.platform.startswith("linux") or platform not in ("", "xcb", "wayland"):
        return None
    if os.environ.get("DISPLAY") or (platform != "xcb" and os.environ.get("WAYLAND_DISPLAY")):
        return None
    return ("no display found (DISPLAY is not set); run it on a desktop, under xvfb-run, or with "
            "QT_QPA_PLATFORM=offscreen; info, evaluate, predict and train need no display")


# ------------------------------------------------------------------------------------------------- info


def _run_info(args: argparse.Namespace) -> int:
    if args.demo == (args.path is not None):
        raise UsageError("give either PATH or --demo (see 'brainseg info --help')")
    if args.path is not None:
        _require_exists(args.path)
    from brainseg_gui.core import io

    if args.demo:
        from brainseg_gui.core.phantom import demo_study

        study, layout = demo_study(), "demo (synthetic phantom, not a patient)"
    else:
        case = io.find_case(args.path)
        layout = case.layout
        study = io.load_study(case, label_convention=args.labels, allow_resample=args.allow_resample)
    report = describe_study(study, layout=layout, path=None if args.demo else args.path)
    print(json.dumps(report, indent=2) if args.json else format_study_report(report))
    return EXIT_OK


def describe_study(study: Any, *, layout: str, path: Path | None) -> dict[str, Any]:
    """Everything `brainseg info` reports about a loaded Study, as plain JSON-able values."""
    import numpy as np

    from brainseg_gui.core.labels import REGIONS, to_regions
    from brainseg_gui.core.study import SEQUENCES

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
    if study.labels is not None:
        values, counts = np.unique(study.labels, return_counts=True)
        regions = to_regions(study.labels, study.label_convention)
        source = study.sources.get("seg")
        labels = {
            "file": None if source is None else str(source),
            "dtype_on_disk": _dtype_on_disk(source),
            "convention": study.label_convention.value,
            "convention_description": study.label_convention.description,
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
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

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


# --------------------------------------------------------------------------------------------- evaluate


def _run_evaluate(args: argparse.Namespace) -> int:
    for path in (args.pred, args.gt, args.brain):
        if path is not None:
            _require_exists(path)
    for name, path in (("PRED", args.pred), ("GT", args.gt)):
        if path.is_dir():
            raise UsageError(f"{name} {path} is a folder; give the label map file (e.g. *_seg.nii.gz)")
    from brainseg_gui.core.errors import GridMismatchError
    from brainseg_gui.core.io import load_label_map
    from brainseg_gui.core.labels import to_regions
    from brainseg_gui.core.metrics import evaluate_regions, format_table
    pred, pred_convention, pred_grid = load_label_map(args.pred, convention=args.pred_labels)
    truth, truth_convention, truth_grid = load_label_map(args.gt, convention=args.gt_labels)
    if not pred_grid.same_as(truth_grid):
        raise GridMismatchError(
            f"{args.pred} and {args.gt} are not on the same grid: {_grid_text(pred_grid)} vs "
            f"{_grid_text(truth_grid)}"
        )
    brain = None if args.brain is None else _brain_mask(args.brain, pred_grid)
    results = evaluate_regions(to_regions(pred, pred_convention), to_regions(truth, truth_convention),
                               pred_grid.spacing, brain=brain)
    if args.json:
        report = {
            "prediction": {"file": str(args.pred), "convention": pred_convention.value},
            "truth": {"file": str(args.gt), "convention": truth_convention.value},
            "brain": None if args.brain is None else str(args.brain),
            "shape": list(pred_grid.shape),
            "spacing_mm": list(pred_grid.spacing),
            "regions": {region: {k: _plain(v) for k, v in m.as_dict().items()} for region, m in results.items()},
        }
        print(json.dumps(report, indent=2))
    else:
        print(f"prediction: {args.pred} ({pred_convention.description})")
        print(f"truth:      {args.gt} ({truth_convention.description})")
        print(f"grid:       {pred_grid.describe()}")
        print(format_table(results))
    return EXIT_OK


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


# ---------------------------------------------------------------------------------------------- predict


def _run_predict(args: argparse.Namespace) -> int:
    _require_exists(args.source)
    if args.model is not None:
        _require_exists(args.model)
    from brainseg_gui.core import io

    # Check the input before loading the model: a wrong path fails in a blink, not after torch.
    batch = _is_batch(args.source, io)
    if batch:
        cases = io.find_cases(args.source)
        if args.output.exists() and not args.output.is_dir():
            raise UsageError(f"for a folder of cases the output must be a folder; {args.output} is a file")
        if isinstance(args.save_probabilities, Path):
            raise UsageError("for a folder of cases, give --save-probabilities without FILE: each case's "
                             "probabilities go next to its prediction as <case>_prob.nii.gz")
    else:
        case_id = io.find_case(args.source).case_id
        if not (args.output.is_dir() or args.output.name.lower().endswith((".nii.gz", ".nii"))):
            raise UsageError(f"the output {args.output} must be a .nii.gz or .nii file name, or an existing folder")

    from brainseg_gui.ml.predict import predict_batch, predict_case
    from brainseg_gui.ml.predictor import Predictor

    resample = _optional(predict_batch if batch else predict_case, allow_resample=args.allow_resample)
    if args.allow_resample and not resample:
        raise UsageError("--allow-resample is not supported by predict in this version: resample the case first")

    predictor = Predictor.from_model_dir(args.model, device=args.device, tta=args.tta,
                                         allow_missing=args.allow_missing)
    print(f"device: {predictor.device_description}", flush=True)
    print(f"model: {predictor.model_version}", flush=True)
    if batch:
        print(f"{len(cases)} case(s) in {args.source}", flush=True)
        with _ProgressBar("cases") as bar:
            summaries = predict_batch(args.source, args.output, predictor=predictor, labels=args.labels,
                                      save_probabilities=args.save_probabilities is not None,
                                      progress=bar, on_case=lambda summary: bar.write(summary.line()), **resample)
        failed = sum(1 for summary in summaries if not summary.ok)
        print(f"{len(summaries) - failed} of {len(summaries)} case(s) segmented into {args.output}"
              + (f"; {failed} failed" if failed else ""))
        return EXIT_USAGE if failed else EXIT_OK
    probabilities = args.save_probabilities
    if probabilities is True:
        probabilities = _probabilities_beside(args.output, case_id)
    with _ProgressBar(args.source.name) as bar:
        summary = predict_case(args.source, args.output, predictor=predictor, labels=args.labels,
                               save_probabilities=probabilities, progress=bar, **resample)
    print(summary.line())
    print(f"written: {summary.output}" + (f" and {probabilities}" if probabilities else ""))
    return EXIT_OK


def _is_batch(source: Path, io: Any) -> bool:
    """A folder that is not itself one case is a batch (find_cases then says if it holds none)."""
    if not source.is_dir():
        return False
    try:
        io.find_case(source)
    except BrainSegError:
        return True
    return False


def _probabilities_beside(output: Path, case_id: str) -> Path:
    if output.is_dir():
        return output / f"{case_id}_prob.nii.gz"
    name = output.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return output.with_name(name[: -len(suffix)] + "_prob" + suffix)
    return output.with_name(name + "_prob.nii.gz")


# ------------------------------------------------------------------------------------------------ train


def _run_train(args: argparse.Namespace) -> int:
    for path in args.data:
        _require_exists(path)
    if (args.folds is None) != (args.fold is None):
        raise UsageError("--folds and --fold go together (e.g. --folds 5 --fold 0)")
    if args.folds is not None and not 0 <= args.fold < args.folds:
        raise UsageError(f"--fold must be between 0 and {args.folds - 1}, got {args.fold}")
    if args.val is not None and args.folds is not None:
        raise UsageError("give either --val or --folds/--fold, not both")

    from brainseg_gui.ml.training import TrainConfig, train

    wanted = {
        "data_dirs": list(args.data), "out_dir": args.out, "val_cases": _case_ids(args.val),
        "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch, "batch_size": args.batch_size,
        "lambda_rec": args.lambda_rec, "adversarial": not args.no_adversarial, "resume": args.resume,
        "device": args.device, "folds": args.folds, "fold": args.fold, "seed": args.seed,
    }
    config = TrainConfig(**{key: value for key, value in wanted.items() if value is not None})
    with _ProgressBar("training") as bar:
        result = train(config, progress=bar, on_epoch=lambda entry: bar.write(entry.message()))
    card = result.card
    print(f"model {card.version} written to {result.model_dir} (best epoch {result.best_epoch} "
          f"of {len(result.history)})")
    dice = (card.validation or {}).get("dice")
    if dice:
        print("validation Dice: " + ", ".join(f"{region} {value:.3f}" for region, value in dice.items()))
    return EXIT_OK


def _case_ids(values: list[str] | None) -> list[str] | None:
    """--val takes case ids or case paths; a path stands for the case found there."""
    if values is None:
        return None
    from brainseg_gui.core.io import find_case

    return [find_case(Path(value)).case_id if Path(value).exists() else value for value in values]


# -------------------------------------------------------------------------------------------- plumbing


class _ProgressBar:
    """A `progress(fraction, message)` callback drawing a tqdm bar on stderr, the message as postfix.

    Lines passed to `write` (a case's summary, an epoch's losses and validation Dice) go to stdout
    and the latest also stays in the postfix. The bar is hidden when stderr is not a terminal.
    """

    def __init__(self, description: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=description, disable=None, leave=False,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
        self._message, self._latest = "", ""

    def __call__(self, fraction: float, message: str) -> None:
        self._bar.update(max(0, min(1000, round(fraction * 1000))) - self._bar.n)
        self._message = message or self._message
        self._show()

    def write(self, text: str) -> None:
        self._bar.write(text, file=sys.stdout)
        self._latest = text
        self._show()

    def _show(self) -> None:
        parts = [part for part in (self._message, self._latest) if part]
        self._bar.set_postfix_str(" | ".join(dict.fromkeys(parts)), refresh=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._bar.close()


def _accepts(function: Callable[..., Any], name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _optional(function: Callable[..., Any], **candidates: Any) -> dict[str, Any]:
    """The keyword arguments among `candidates` that `function` takes."""
    return {name: value for name, value in candidates.items() if _accepts(function, name)}


def _require_exists(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(2, "No such file or folder", str(path))


def _plain(value: Any) -> Any:
    """JSON-safe scalar: Python float at full precision; NaN/inf become null."""
    if value is None or isinstance(value, (bool, str)):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


def _describe_error(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.strerror}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests capture it)
        pass


def _fail(message: str, status: int) -> int:
    print(f"brainseg: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return status


class _CliFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"brainseg: {record.levelname.lower()}: {record.getMessage()}"


class _DeferredHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Holds warnings back until the command succeeds, so a failure prints exactly one line."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.held: list[logging.LogRecord] = []
        self.previous_level = logging.WARNING

    def emit(self, record: logging.LogRecord) -> None:
        self.held.append(record)

    def emit_held(self) -> None:
        shown: set[str] = set()
        for record in self.held:
            text = self.format(record)
            if text not in shown:  # the same warning from two layers is said once
                shown.add(text)
                super().emit(record)
        self.held.clear()


def _start_logging(verbose: int, *, live: bool = False) -> logging.Handler:
    """Library logs go to stderr: warnings by default (held until success unless `live`: the viewer
    and training report as they go); everything, live, with -v."""
    handler: logging.Handler
    if live and not verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_CliFormatter())
        handler.setLevel(logging.WARNING)
    elif verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        handler.setLevel(logging.DEBUG)
    else:
        handler = _DeferredHandler()
        handler.setFormatter(_CliFormatter())
        handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    handler.previous_level = root.level  # type: ignore[union-attr]
    root.addHandler(handler)
    if verbose:
        root.setLevel(logging.DEBUG)
    elif root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    # Third-party deprecation chatter is for developers: shown with -v only.
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose else logging.ERROR)
    return handler


def _stop_logging(handler: logging.Handler, *, succeeded: bool) -> None:
    if isinstance(handler, _DeferredHandler) and succeeded:
        handler.emit_held()
    root = logging.getLogger()
    root.removeHandler(handler)
    root.setLevel(getattr(handler, "previous_level", logging.WARNING))
    logging.captureWarnings(False)
