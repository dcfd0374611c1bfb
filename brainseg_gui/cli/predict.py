"""`brainseg predict`: segment one case, or every case of a folder, with a model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from brainseg_gui.cli.cohort import add_cohort_options, check_cohort_options, run_cohort_command
from brainseg_gui.cli.common import (
    CONVENTIONS,
    DEVICES,
    EXIT_OK,
    ProgressBar,
    UsageError,
    optional,
    path_arg,
    require_exists,
)
from brainseg_gui.cli.dicom import add_dicom_options, find_study_case, is_dicom_study, refuse_gaps
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
    predict.add_argument("source", type=path_arg, metavar="CASE_OR_DIR",
                         help="a case (folder or any of its files), a DICOM study (folder tree, .zip, DICOMDIR) "
                              "or a folder of cases")
    predict.add_argument("-o", "--output", type=path_arg, required=True, metavar="OUT",
                         help="output label map (.nii.gz) or, for a folder of cases, output folder")
    predict.add_argument("--labels", choices=CONVENTIONS, default="brats", help="output convention (default brats)")
    predict.add_argument("--device", choices=DEVICES, default="auto", help="default auto: CUDA when present")
    predict.add_argument("--model", type=path_arg, metavar="DIR", help="model folder (default: the shipped model)")
    predict.add_argument("--tta", action="store_true", help="test-time augmentation (mirroring; slower)")
    predict.add_argument("--runtime", choices=("auto", "torch", "openvino"), default="auto",
                         help="what runs the network on the CPU: OpenVINO takes about half torch's time with the "
                              "same labels (default auto: OpenVINO when installed; a GPU always runs torch)")
    predict.add_argument("--save-probabilities", type=path_arg, nargs="?", const=True, metavar="FILE",
                         help="also write the region probabilities (WT, TC, ET, float16 4D NIfTI) to FILE "
                              "(default: beside the output, *_prob.nii.gz)")
    predict.add_argument("--allow-missing", action="store_true",
                         help="segment cases that lack sequences (the result is flagged)")
    predict.add_argument("--allow-resample", action="store_true",
                         help="resample sequences on other grids onto the FLAIR grid when they overlap")
    add_predict_options(predict)
    add_dicom_options(predict)
    add_cohort_options(predict)
    predict.add_argument("--dicom-out", type=path_arg, metavar="DIR",
                         help="for a DICOM study: also write a DICOM-SEG on the reference series and an SR with the "
                              "region volumes into DIR (a new series of the same study; never into the study folder)")
    predict.add_argument("--report-pdf", action="store_true",
                         help="with --dicom-out: also the one-page report as a DICOM Encapsulated PDF")
    predict.set_defaults(run=_run_predict)



def _run_predict(args: argparse.Namespace) -> int:
    require_exists(args.source)
    if args.model is not None:
        require_exists(args.model)
    from brainseg_gui.core import io

    # Check the input before loading the model: a wrong path fails in a blink, not after torch.
    if _is_batch(args.source, io):
        cases = io.find_cohort(args.source)
        if args.output.exists() and not args.output.is_dir():
            raise UsageError(f"for a folder of cases the output must be a folder; {args.output} is a file")
        if isinstance(args.save_probabilities, Path):
            raise UsageError("for a folder of cases, give --save-probabilities without FILE: each case's "
                             "probabilities go next to its prediction as <case>_prob.nii.gz")
        check_batch_readiness(args, cases)
        check_cohort_options(args)
        return run_cohort_command(args, cases)
    found = find_study_case(args, args.source)
    case = found.case
    case_id = case.case_id
    if not (args.output.is_dir() or args.output.name.lower().endswith((".nii.gz", ".nii"))):
        raise UsageError(f"the output {args.output} must be a .nii.gz or .nii file name, or an existing folder")
    if not args.output.is_dir() and not args.output.parent.is_dir():
        raise UsageError(f"cannot write {args.output}: the folder {args.output.parent} does not exist")
    if found.is_dicom:
        refuse_gaps(found)
        args.prepare = True  # a scanner study is never BraTS-ready: prepare, segment, map back
    check_dicom_out(args, found)
    study = check_case_readiness(args, case)

    from brainseg_gui.ml.predict import predict_case

    resample = optional(predict_case, allow_resample=args.allow_resample)
    if args.allow_resample and not resample:
        raise UsageError("--allow-resample is not supported by predict in this version: resample the case first")

    predictor = load_predictor(args)
    print(f"device: {predictor.device_description}", flush=True)
    print(f"model: {predictor.model_version}", flush=True)
    if args.prepare:
        return predict_prepared(args, case, predictor, dicom=found if found.is_dicom else None)
    probabilities = args.save_probabilities
    if probabilities is True:
        probabilities = _probabilities_beside(args.output, case_id)
    with ProgressBar(args.source.name) as bar:
        summary = predict_case(args.source, args.output, predictor=predictor, labels=args.labels,
                               save_probabilities=probabilities, progress=bar, study=study, **resample)
    print(summary.line())
    print(f"written: {summary.output}" + (f" and {probabilities}" if probabilities else ""))
    return EXIT_OK


def load_predictor(args: argparse.Namespace) -> Any:
    """The model's cached OpenVINO network when it can run this command (no torch imported: ~2 s
    sooner), else the torch predictor (ml/openvino_predictor.py says when)."""
    from brainseg_gui.ml.openvino_predictor import cached_predictor

    def on_torch() -> Any:
        from brainseg_gui.ml.predictor import Predictor

        return Predictor.from_model_dir(args.model, device=args.device, tta=args.tta,
                                        allow_missing=args.allow_missing, runtime=args.runtime)

    return cached_predictor(args.model, larger=on_torch, device=args.device, runtime=args.runtime, tta=args.tta,
                            allow_missing=args.allow_missing) or on_torch()


def check_dicom_out(args: argparse.Namespace, found: Any) -> None:
    """--dicom-out only for a DICOM study, outside the study's folder, not over earlier results."""
    if args.dicom_out is None:
        if args.report_pdf:
            raise UsageError("--report-pdf needs --dicom-out (the report goes beside the SEG and SR)")
        return
    if not found.is_dicom:
        raise UsageError(f"--dicom-out needs a DICOM study; {args.source} is a {found.case.layout} case (use "
                         "'brainseg export --dicom-seg' for a study read from one DICOM series)")
    out = args.dicom_out.expanduser().resolve()
    study_root = Path(found.index.root).expanduser().resolve()
    study_root = study_root.parent if study_root.is_file() else study_root
    if out == study_root or out.is_relative_to(study_root):
        raise UsageError(f"--dicom-out {args.dicom_out} lies inside the study folder {study_root}; BrainSeg never "
                         "writes into a study: choose another folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--dicom-out {args.dicom_out} is a file; give a folder")
    for name in ("seg", "sr", *(["report"] if args.report_pdf else [])):
        target = out / f"{found.case.case_id}_{name}.dcm"
        if target.exists():
            raise UsageError(f"{target} exists already; move it away or choose another --dicom-out folder")


def _is_batch(source: Path, io: Any) -> bool:
    """A folder that is not itself one case is a batch (find_cases then says if it holds none)."""
    if not source.is_dir() or is_dicom_study(source):
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
