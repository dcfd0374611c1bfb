"""`brainseg refine`: correct a mask by clicks, from the command line (the viewer's Click tool, reproducibly).

CLICKS.json is a list of `{"voxel": [i, j, k], "label": "WT"|"TC"|"ET"|"NCR"|"ED", "positive": true|false}`
(voxel indices of the study's files; `"corner": [i, j, k]` makes a box), applied in order by
`core/click_refine.py` with the model's probabilities as the prior (`--no-prior`: the images alone).
The output keeps the study's grid exactly and gets a provenance sidecar listing the clicks.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from brainseg_gui.cli.common import CONVENTIONS, DEVICES, EXIT_OK, UsageError, path_arg, require_exists


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the refine command."""
    p = commands.add_parser(
        "refine", parents=parents, help="correct a mask by clicks (AI-assisted, on the CPU)",
        description="Apply CLICKS (a JSON list of {voxel: [i, j, k], label: WT|TC|ET|NCR|ED, positive: "
                    "true|false}) to MASK of STUDY in order and write the corrected mask to OUT.nii.gz on "
                    "the study's grid. Each click re-segments a 40 mm box around it in 3D: a random walker "
                    "on the sequences with the model's probabilities as the prior.",
        epilog="Example: brainseg refine CASE --mask pred.nii.gz --clicks clicks.json -o corrected.nii.gz")
    p.add_argument("study", type=path_arg, metavar="STUDY", help="the case the mask belongs to (folder or any file)")
    p.add_argument("--mask", type=path_arg, required=True, metavar="MASK", help="the label map to correct")
    p.add_argument("--clicks", type=path_arg, required=True, metavar="CLICKS.json", help="the clicks, in order")
    p.add_argument("-o", "--output", type=path_arg, required=True, metavar="OUT.nii.gz", help="the corrected mask")
    p.add_argument("--labels", choices=CONVENTIONS, default="brats", help="convention of OUT (default brats)")
    p.add_argument("--mask-labels", choices=CONVENTIONS, help="convention of MASK (default: guessed)")
    p.add_argument("--no-prior", action="store_true",
                   help="do not run the model for a prior: the clicks follow the images alone")
    p.add_argument("--model", type=path_arg, metavar="DIR", help="model folder for the prior (default: the active one)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where the prior is computed (default cpu)")
    p.set_defaults(run=_run_refine)


def _run_refine(args: argparse.Namespace) -> int:
    for path in (args.study, args.mask, args.clicks):
        require_exists(path)
    if args.model is not None:
        require_exists(args.model)
    if not args.output.name.lower().endswith((".nii.gz", ".nii")):
        raise UsageError(f"the output {args.output} must be a .nii.gz or .nii file name")
    if not args.output.parent.is_dir():
        raise UsageError(f"the folder of {args.output} does not exist")
    import numpy as np

    from brainseg_gui.core.click_refine import RefineContext, apply_click, check_inside, read_clicks
    from brainseg_gui.core.io import load_label_map, load_study, save_label_map
    from brainseg_gui.core.labels import LabelConvention, convert, parse_convention

    clicks = read_clicks(args.clicks)  # a bad file fails before anything heavy
    study = load_study(args.study)
    mask, mask_convention, _ = load_label_map(args.mask, convention=args.mask_labels, reference=study.grid)
    check_inside(clicks, study.grid.shape)
    inputs = [*study.sources.values(), args.mask, args.clicks]
    if any(Path(p).resolve() == args.output.resolve() for p in inputs):
        raise UsageError(f"refusing to write {args.output}: it is one of the inputs")
    brats = LabelConvention.BRATS
    labels = convert(mask, mask_convention, brats)
    probabilities, model_version = None, None
    if not args.no_prior:
        from brainseg_gui.ml.predictor import Predictor

        predictor = Predictor.from_model_dir(args.model, device=args.device, allow_missing=True)
        prediction = predictor(study, keep_probabilities=True)
        probabilities, model_version = prediction.probabilities, prediction.model_version
    context = RefineContext.build(study.images, study.grid.spacing, probabilities)
    record = []
    for number, click in enumerate(clicks, start=1):
        start = time.perf_counter()
        updated, _ = apply_click(labels, click, context, brats)
        changed = int((updated != labels).sum())
        record.append({**click.as_dict(), "voxels_changed": changed,
                       "seconds": round(time.perf_counter() - start, 3)})
        print(f"click {number}: {click.label} {'+' if click.positive else '-'} at {list(click.voxel)}: "
              f"{changed} voxels changed")
        labels = updated
    target = parse_convention(args.labels)
    sidecar = {"software": "BrainSeg refine", "study": str(args.study), "mask": str(args.mask),
               "mask_convention": mask_convention.value, "label_convention": target.value,
               "prior": None if args.no_prior else f"model {model_version}", "clicks": record,
               "voxels_changed_in_all": int((labels != convert(mask, mask_convention, brats)).sum())}
    save_label_map(args.output, convert(labels, brats, target).astype(np.uint8), study.grid,
                   description=f"BrainSeg refined ({len(clicks)} clicks)", sidecar=sidecar, protect=inputs)
    print(f"written: {args.output} ({len(clicks)} clicks, {sidecar['voxels_changed_in_all']} voxels changed)")
    return EXIT_OK
