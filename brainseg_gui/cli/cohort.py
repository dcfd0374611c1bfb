"""`brainseg predict COHORT -o OUT`: every case of a folder, on this machine's cores or a Dask cluster."""

from __future__ import annotations

import argparse
from typing import Any

from brainseg_gui.cli.common import EXIT_OK, EXIT_USAGE, ProgressBar, UsageError, path_arg


def add_cohort_options(parser: argparse.ArgumentParser) -> None:
    """Where a folder of cases runs (ignored for one case)."""
    group = parser.add_argument_group(
        "cohorts (a folder of cases)",
        "Each case is segmented once into OUT_DIR/<case>_pred.nii.gz with a sidecar and a report; a rerun skips "
        "cases whose output has the same inputs, model and settings. OUT_DIR/cohort.csv and cohort.html list "
        "every case; cohort.log has a line per case as it finishes.")
    group.add_argument("--workers", type=_count, metavar="N",
                       help="worker processes of the local Dask cluster (default: one per GPU, else one per core "
                            "within 2 GB of memory each); 0 runs the cases one after another in this process")
    group.add_argument("--threads-per-worker", type=_count, metavar="M",
                       help="cases each worker process runs at once (default 1)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="send the cases to an existing Dask cluster (e.g. tcp://host:8786); the workers must "
                            "see the same paths")
    group.add_argument("--cluster", choices=("slurm", "pbs", "sge", "lsf"),
                       help="start workers through a batch system (needs dask-jobqueue)")
    group.add_argument("--cluster-config", type=path_arg, metavar="FILE",
                       help='JSON settings of --cluster, e.g. {"cores": 8, "memory": "16GB", "queue": "normal", '
                            '"walltime": "02:00:00", "jobs": 4}')


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"expected 0 to 1024, got {value}")
    return value


def check_cohort_options(args: argparse.Namespace) -> None:
    """The places to run are exclusive; the cluster config goes with --cluster."""
    chosen = [name for name, value in (("--workers/--threads-per-worker", args.workers is not None
                                        or args.threads_per_worker is not None),
                                       ("--scheduler", args.scheduler is not None),
                                       ("--cluster", args.cluster is not None)) if value]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} choose different places to run; give one of them")
    if args.cluster_config is not None and args.cluster is None:
        raise UsageError("--cluster-config goes with --cluster")
    if args.workers == 0 and args.threads_per_worker:
        raise UsageError("--workers 0 runs in this process: --threads-per-worker does not apply")


def run_cohort_command(args: argparse.Namespace, cases: list[Any]) -> int:
    """Segment `cases` into args.output; exit 2 when any case failed (each is in cohort.csv)."""
    from brainseg_gui.ml.cohort import CohortSettings, run_cohort
    from brainseg_gui.ml.cohort_cluster import gpu_count, local_shape, open_client

    model_dir = args.model
    if model_dir is None:
        from brainseg_gui.ml.model_registry import active_model_dir

        model_dir = active_model_dir()
    shape = None
    if args.scheduler is None and args.cluster is None:
        gpus = gpu_count(args.device) if args.workers is None else 0
        shape = local_shape(gpus=gpus, workers=args.workers, threads_per_worker=args.threads_per_worker,
                            cases=len(cases))
    from brainseg_gui.cli.prepare import prepare_settings

    settings = CohortSettings(model_dir=model_dir.resolve(), device=args.device, runtime=args.runtime,
                              labels=args.labels, tta=args.tta,
                              allow_missing=args.allow_missing, allow_resample=args.allow_resample,
                              save_probabilities=args.save_probabilities is not None,
                              prepare=prepare_settings(args) if args.prepare else None, map_to=args.map_to,
                              torch_threads=shape.torch_threads if shape is not None else None)
    place = (f"Dask scheduler {args.scheduler}" if args.scheduler else f"{args.cluster} cluster" if args.cluster
             else "this process" if shape is None or shape.workers == 0 else f"local Dask cluster: {shape.describe()}")
    print(f"{len(cases)} case(s) in {args.source}; running on {place}", flush=True)
    with open_client(shape=shape, scheduler=args.scheduler, cluster=args.cluster,
                     cluster_config=args.cluster_config) as client, ProgressBar("cases") as bar:
        def on_row(row: Any, done: int, total: int) -> None:
            bar.write(row.line())
            bar(done / total, f"{done}/{total} {row.case_id} {row.status}")

        rows = run_cohort(cases, args.output, settings, client=client, on_row=on_row)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    failed = sum(1 for row in rows if not row.ok)
    print(f"{', '.join(f'{n} {status}' for status, n in counts.items())} into {args.output} "
          f"(cohort.csv, cohort.html)")
    return EXIT_USAGE if failed else EXIT_OK
