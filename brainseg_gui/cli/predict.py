"""`brainseg predict`: segment one case, or every case of a folder, with a model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from brainseg_gui.cli.common import (
    CONVENTIONS,
    DEVICES,
    EXIT_OK,
    EXIT_USAGE,
    ProgressBar,
    UsageError,
    optional,
    require_exists,
)
from brainseg_gui.cli.prepare import (
    add_predict_options,
    check_batch_readiness,
    check_case_readiness,
    predict_prepared,
)
from brainseg_gui.core.errors import BrainSegError


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the predict command."""
    predict = commands.add_parser("predict", parents=parents, help="segment a case or a folder of cases",
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
    add_predict_options(predict)
    predict.set_defaults(run=_run_predict)



def _run_predict(args: argparse.Namespace) -> int:
    require_exists(args.source)
    if args.model is not None:
        require_exists(args.model)
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
        check_batch_readiness(args, cases)
    else:
        case = io.find_case(args.source)
        case_id = case.case_id
        if not (args.output.is_dir() or args.output.name.lower().endswith((".nii.gz", ".nii"))):
            raise UsageError(f"the output {args.output} must be a .nii.gz or .nii file name, or an existing folder")
        check_case_readiness(args, case)

    from brainseg_gui.ml.predict import predict_batch, predict_case
    from brainseg_gui.ml.predictor import Predictor

    resample = optional(predict_batch if batch else predict_case, allow_resample=args.allow_resample)
    if args.allow_resample and not resample:
        raise UsageError("--allow-resample is not supported by predict in this version: resample the case first")

    predictor = Predictor.from_model_dir(args.model, device=args.device, tta=args.tta,
                                         allow_missing=args.allow_missing)
    print(f"device: {predictor.device_description}", flush=True)
    print(f"model: {predictor.model_version}", flush=True)
    if not batch and args.prepare:
        return predict_prepared(args, case, predictor)
    if batch:
        print(f"{len(cases)} case(s) in {args.source}", flush=True)
        with ProgressBar("cases") as bar:
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
    with ProgressBar(args.source.name) as bar:
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
