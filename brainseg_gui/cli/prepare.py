"""`brainseg prepare`: bring a study straight from the scanner to what the model was trained on.

Also the readiness glue of `info` and `predict`: `info` reports whether a study is BraTS-ready,
`predict` refuses one that is not unless `--prepare` is given; then the study is prepared in a
temporary folder, segmented there, and the label map is mapped back onto an original grid.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from brainseg_gui.cli import common
from brainseg_gui.cli.common import EXIT_OK, ProgressBar, UsageError, path_arg, require_exists
from brainseg_gui.cli.dicom import add_dicom_options, find_study_case, is_dicom_study, refuse_gaps

SEQUENCE_NAMES = ("t1", "t1ce", "t2", "flair")


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the prepare command."""
    prepare = commands.add_parser(
        "prepare", parents=parents, help="co-register, resample and skull-strip a raw study (BraTS-ready)",
        description="Prepare a study straight from the scanner: rigid co-registration of every sequence to "
                    "the reference (Mattes mutual information, multi-resolution), resampling to isotropic "
                    "voxels in the training data's orientation (LPS), brain extraction, and the case written "
                    "to OUT_DIR in BraTS naming with <id>_prepare.json, the record of every transform.")
    prepare.add_argument("study", nargs="?", type=path_arg, metavar="STUDY",
                         help="a case folder, any file of a case, an image file or a DICOM folder")
    prepare.add_argument("-o", "--output", type=path_arg, required=True, metavar="OUT_DIR",
                         help="folder for the prepared case (created if missing): a new or empty folder, or "
                              "one that earlier prepares wrote into")
    prepare.add_argument("--force", action="store_true",
                         help="write into an OUT_DIR that holds other files, beside them (none of them is "
                              "deleted or overwritten)")
    for name in SEQUENCE_NAMES:
        prepare.add_argument(f"--{name}", type=path_arg, metavar="PATH",
                             help=f"the {name} image file or DICOM folder (adds to or replaces STUDY's)")
    prepare.add_argument("--as", dest="as_sequence", choices=SEQUENCE_NAMES, default="flair",
                         help="which sequence STUDY is when it is a single image file (default flair); the series of a "
                              "DICOM study are classed from their headers (override with --series)")
    add_prepare_options(prepare)
    prepare.add_argument("--case-id", type=common.case_id, metavar="ID", help="case id of the output files (default: the study's)")
    prepare.add_argument("--json", action="store_true", help="print the prepare record (JSON) instead of text")
    add_dicom_options(prepare)
    prepare.set_defaults(run=_run_prepare)


def add_prepare_options(parser: argparse.ArgumentParser) -> None:
    """Options `prepare` and `predict --prepare` share."""
    parser.add_argument("--reference", choices=SEQUENCE_NAMES, default="t1ce",
                        help="the sequence the others are registered to (default t1ce; another if missing)")
    parser.add_argument("--resolution", type=common.resolution_mm, default=1.0, metavar="MM",
                        help="voxel size of the prepared study in mm (default 1, as the training data)")
    parser.add_argument("--no-skull-strip", dest="skull_strip", action="store_false",
                        help="keep the head: the brain mask is then the non-zero region")
    parser.add_argument("--fractional-threshold", type=common.fraction_open, metavar="F",
                        help="brain extraction: where the brain surface stops, 0..1 (default 0.5; "
                             "smaller gives a larger brain)")
    parser.add_argument("--brain-adjust", type=common.brain_adjust_mm, metavar="MM",
                        help="grow (> 0) or shrink (< 0) the extracted brain by MM")


def _run_prepare(args: argparse.Namespace) -> int:
    files = _sequence_files(args)
    if args.study is None and not files:
        raise UsageError("give STUDY or at least one of --t1/--t1ce/--t2/--flair (see 'brainseg prepare --help')")
    if args.study is not None:
        require_exists(args.study)
    for path in files.values():
        require_exists(path)
    if args.output.exists() and not args.output.is_dir():
        raise UsageError(f"the output {args.output} is a file; give a folder for the prepared case")
    from brainseg_gui.core.cases import find_case
    from brainseg_gui.core.output_folder import claim
    from brainseg_gui.core.prepare import prepare_study

    output = claim(args.output, "prepare", force=args.force)  # created only when the case is written

    source = None
    if args.study is not None and is_dicom_study(args.study):
        found = find_study_case(args, args.study)  # series classed from their headers, not --as
        refuse_gaps(found)
        source = found.case
    elif args.study is not None:
        source = find_case(args.study, as_sequence=args.as_sequence)
    with ProgressBar("preparing") as bar:
        prepared = prepare_study(source, args.output, files=files or None, case_id=args.case_id, progress=bar,
                                 output=output, **prepare_settings(args))
    if args.json:
        print(json.dumps(dict(prepared.record.data), indent=2, default=str))
    else:
        print(describe_prepared(prepared.record.data, prepared.record_path))
    return EXIT_OK


def _sequence_files(args: argparse.Namespace) -> dict[str, Path]:
    return {name: getattr(args, name) for name in SEQUENCE_NAMES if getattr(args, name, None) is not None}


def prepare_settings(args: argparse.Namespace) -> dict[str, Any]:
    """prepare_study's keyword arguments from the shared options."""
    brain: dict[str, float] = {}
    if args.fractional_threshold is not None:
        brain["fractional_threshold"] = args.fractional_threshold
    if args.brain_adjust is not None:
        brain["adjust_mm"] = args.brain_adjust
    if args.resolution <= 0:
        raise UsageError(f"--resolution must be more than 0 mm, got {args.resolution:g}")
    return {"reference": args.reference, "resolution_mm": args.resolution, "skull_strip": args.skull_strip,
            "brain_params": brain or None}


def describe_prepared(record: Any, record_path: Path) -> str:
    """What a prepare did, for a terminal: transforms, brain, files, warnings, time."""
    grid = record["prepared_grid"]
    spacing = " x ".join(f"{s:g}" for s in grid["spacing_mm"])
    lines = [f"case:        {record['case_id']}",
             f"grid:        {' x '.join(map(str, grid['shape']))} voxels, {spacing} mm, {grid['orientation']}"]
    before = record.get("readiness_before") or []
    lines.append("before:      " + ("BraTS-ready grids" if not before else before[0]))
    lines += [f"             {problem}" for problem in before[1:]]
    lines.append(f"registered to {record['reference']}:")
    for name, entry in record["sequences"].items():
        transform = entry["transform"]
        if not entry["registered"]:
            lines.append(f"  {name:<6} reference")
            continue
        shift = ", ".join(f"{v:.1f}" for v in transform["translation_mm"])
        lines.append(f"  {name:<6} rotation {transform['rotation_total_deg']:.1f} deg, translation ({shift}) mm "
                     f"[{transform['initialisation']}]")
    brain = record["brain_extraction"]
    source = f" from {brain['sequence']}" if brain.get("sequence") else ""
    lines.append(f"brain:       {brain['volume_ml']:.0f} mL{source} ({brain['method']})")
    lines.append(f"missing:     {', '.join(record['missing']) or 'none'}")
    folder = record_path.parent
    lines.append(f"written:     {', '.join(record['files'].values())} in {folder}")
    lines.append(f"record:      {record_path}")  # the record's warnings were logged (stderr)
    lines.append(f"time:        {record['timings_s']['total']:.1f} s")
    return "\n".join(lines)


# -- info and predict ------------------------------------------------------------------------------


def load_for_info(case: Any, *, label_convention: str | None, allow_resample: bool) -> tuple[Any, Any]:
    """(Study, Readiness) for `brainseg info`: a study on several grids is described resampled
    (its readiness says so) rather than refused, since info is where a user learns what to do."""
    from brainseg_gui.core import io
    from brainseg_gui.core.errors import GridMismatchError
    from brainseg_gui.core.readiness import assess_readiness

    try:
        study = io.load_study(case, label_convention=label_convention, allow_resample=allow_resample)
    except GridMismatchError:
        readiness = assess_readiness(case)
        if allow_resample or readiness.ready:
            raise
        return io.load_study(case, label_convention=label_convention, allow_resample=True), readiness
    return study, assess_readiness(study)


def add_predict_options(parser: argparse.ArgumentParser) -> None:
    """`predict --prepare` and its options."""
    parser.add_argument("--prepare", action="store_true",
                        help="prepare a study that is not BraTS-ready (see 'brainseg prepare'), segment it, and "
                             "map the labels back onto an original grid")
    parser.add_argument("--map-to", choices=SEQUENCE_NAMES, metavar="SEQ",
                        help="with --prepare: whose original grid the labels go on (default: the reference's)")
    add_prepare_options(parser)


def check_case_readiness(args: argparse.Namespace, case: Any) -> Any:
    """Before the model loads: refuse a not-ready case (unless --prepare) and options that clash.

    Returns the case loaded as a Study (None with --prepare): its images were read to check the
    skull, and predict segments them as they are instead of reading every file a second time.
    """
    if args.prepare:
        if args.save_probabilities is not None:
            raise UsageError("--save-probabilities is not available with --prepare: prepare the study with "
                             "'brainseg prepare' and predict on the prepared case")
        if case.missing and not args.allow_missing:  # say so before minutes of preparing, not after
            raise UsageError(f"{case.case_id} has no {', '.join(case.missing)}: add --allow-missing to segment "
                             "it anyway (the result is flagged), or prepare it with 'brainseg prepare' "
                             "giving each sequence (--t1/--t1ce/--t2/--flair)")
        return None
    if args.map_to is not None:
        raise UsageError("--map-to needs --prepare")
    from brainseg_gui.core.readiness import load_if_ready

    study, problems = load_if_ready(case, allow_resample=args.allow_resample)
    _refuse(case.case_id, problems)
    return study


def check_batch_readiness(args: argparse.Namespace, members: list[Any]) -> None:
    """A cohort: without --prepare a readable case that is not ready refuses it before it starts.

    Nothing is written then. A case that cannot be read fails alone, in its row, when the cohort
    runs; DICOM studies (folders not read yet) are always prepared by the worker that segments them.
    """
    if args.prepare:
        if args.save_probabilities is not None:
            raise UsageError("--save-probabilities is not available with --prepare: prepare the cases with "
                             "'brainseg prepare' and predict on the prepared folder")
        return
    if args.map_to is not None:
        raise UsageError("--map-to needs --prepare")
    from brainseg_gui.core.errors import BrainSegError
    from brainseg_gui.core.readiness import NotReadyError

    for member in members:
        if isinstance(member, Path):
            continue
        try:
            refuse_unless_ready(member, allow_resample=args.allow_resample)
        except NotReadyError:
            raise
        except BrainSegError:  # an unreadable case is that case's failure, recorded in its row
            continue


def refuse_unless_ready(case: Any, *, allow_resample: bool) -> None:
    """Raise NotReadyError saying how to prepare `case` when it is not BraTS-ready.

    With `allow_resample` the user has agreed to sequences on other grids being resampled, so those
    problems alone do not refuse the study.
    """
    from brainseg_gui.core.readiness import assess_readiness, blocking

    _refuse(case.case_id, blocking(assess_readiness(case).problems, allow_resample=allow_resample))


def _refuse(case_id: str, problems: list[str]) -> None:
    from brainseg_gui.core.readiness import NotReadyError

    if problems:
        raise NotReadyError(
            f"{case_id} is not BraTS-ready ({'; '.join(problems)}): prepare it first with "
            f"'brainseg prepare STUDY -o OUT_DIR' and predict on OUT_DIR, or add --prepare to prepare it, "
            "segment it and map the labels back onto the original grid")


def predict_prepared(args: argparse.Namespace, case: Any, predictor: Any, *, dicom: Any = None) -> int:
    """`predict --prepare`: prepare in a temporary folder, segment there, map back onto `--map-to`'s grid.

    For a DICOM study (`dicom`, a cli.dicom.FoundCase) with --dicom-out, the SEG and SR are written
    first (on the mapped-to series), then the NIfTI; a failure of the NIfTI takes the DICOM files back.
    """
    from brainseg_gui.ml.prepared_predict import predict_prepared_case

    if args.map_to is not None and args.map_to not in case.files:
        raise UsageError(f"--map-to {args.map_to}: the study has no {args.map_to} (it has "
                         f"{', '.join(case.files)})")
    output = args.output / f"{case.case_id}_pred.nii.gz" if args.output.is_dir() else args.output

    def dicom_results(mapped: Any, grid: Any, target: str, summary: Any) -> tuple[dict[str, Any], list[Path]]:
        extra: dict[str, Any] = {}
        written: list[Path] = []
        if getattr(args, "dicom_out", None) is not None:
            results = _write_dicom_results(args, case, dicom, mapped, grid, target, summary)
            extra["dicom_results"] = results
            written = [Path(p) for p in results["files"]]
        extra["dicom_study"] = {"series": {name: {"series_uid": s.uid, "description": s.header.description}
                                           for name in case.files
                                           if (s := dicom.assignment.series_for(name)) is not None},
                                "study_uid": dicom.assignment.study.uid}
        return extra, written

    with ProgressBar(case.case_id) as bar:
        done = predict_prepared_case(case, output, predictor=predictor, labels=args.labels,
                                     prepare_settings=prepare_settings(args), map_to=args.map_to,
                                     before_write=dicom_results if dicom is not None else None, progress=bar)
    record = done.record
    print(done.summary.line())
    print(f"prepared: registered to {record.reference}, brain {record.data['brain_extraction']['volume_ml']:.0f} mL")
    print(f"written: {output} (on the original {done.target} grid: {done.grid.describe()})")
    written = done.sidecar.get("dicom_results")
    if written is not None:
        volumes = ", ".join(f"{k} {v:.2f} mL" for k, v in written["volumes_ml"].items())
        print(f"written: {written['seg']} (DICOM-SEG, series {written['series_uid']}) and {written['sr']} "
              f"(SR: {volumes})" + (f"; report: {written['report']}" if written.get("report") else ""))
    return EXIT_OK


def _write_dicom_results(args: argparse.Namespace, case: Any, dicom: Any, mapped: Any, grid: Any, target: str,
                         summary: Any) -> dict[str, Any]:
    """SEG + SR of the mapped labels on `target`'s series, into --dicom-out (flags: missing, gaps)."""
    from brainseg_gui.core.dicom_results import results_summary, write_study_results
    from brainseg_gui.core.dicom_study import result_flags
    from brainseg_gui.core.labels import parse_convention

    flags = result_flags(case.files[target])
    results = write_study_results(args.dicom_out, mapped, parse_convention(args.labels), grid, case.files[target],
                                  model_version=summary.model_version, flags=flags, name=case.case_id,
                                  with_report=bool(getattr(args, "report_pdf", False)))
    out = dict(results_summary(results))
    out["files"] = [str(p) for p in (results.seg, results.sr, results.report) if p is not None]
    out["flags"] = flags
    return out

