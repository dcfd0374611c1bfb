"""Cohort throughput: cases per minute in this process and on local Dask clusters, in the same run.

    python bench/cohort.py [DATA_DIR ...] [--cases N] [--model DIR] [--layouts 0,1x1,2x1,1x2]

Default data: the BraTS folders of ../shared/data (every labelled case; the labels are not read).
Each layout segments the same cases into a fresh folder with `run_cohort`:
- `0`: one case after another in this process (torch on every core): the sequential reference;
- `WxT`: a LocalCluster of W worker processes with T task threads each (torch gets cores / (W*T)).
Each layout is started and warmed first (the workers import and load the model once; shown
apart as "start s"), then timed: wall seconds, cases per minute, the ratio to the sequential
reference, and the idle time per case: wall time not spent inside the case tasks (their own
seconds summed over W*T slots), over the cases; it includes the tail where one slot finishes
the last case while others wait. Dask's own cost per task is measured alone on the warm cluster
with 200 empty tasks. The outputs of every layout are compared voxel for voxel with the sequential
ones.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def _layout(text: str) -> tuple[int, int]:
    if text == "0":
        return 0, 1
    workers, threads = text.lower().split("x")
    return int(workers), int(threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", type=Path)
    parser.add_argument("--cases", type=int, default=0, help="at most N cases (default: all)")
    parser.add_argument("--model", type=Path, help="model folder (default: the shipped model)")
    parser.add_argument("--layouts", default="0,1x1,2x1,1x2")
    parser.add_argument("--runtime", default="auto", choices=("auto", "torch", "openvino"),
                        help="what runs the network on the CPU (default auto, as brainseg predict)")
    args = parser.parse_args()

    from brainseg_gui.core.cases import find_cases
    from brainseg_gui.ml.cohort import CohortSettings, run_cohort
    from brainseg_gui.ml.cohort_cluster import local_shape, open_client
    from brainseg_gui.ml.shipped import shipped_model_dir

    folders = args.data or sorted(p for p in DATA.glob("brats*") if p.is_dir())
    if not folders:
        print(f"cohort bench: no data (give DATA_DIR, or put the BraTS folders in {DATA})", file=sys.stderr)
        return 2
    cases = [case for folder in folders for case in find_cases(folder)]
    if args.cases:
        cases = cases[: args.cases]
    model = (args.model or shipped_model_dir()).resolve()
    cores = os.cpu_count() or 1
    print(f"{len(cases)} cases from {', '.join(str(f) for f in folders)}; model {model}; runtime {args.runtime}; "
          f"{cores} cores; "
          f"load before start {os.getloadavg()[0]:.2f}")
    scratch = Path(tempfile.mkdtemp(prefix="brainseg-cohort-bench-"))
    results: dict[str, float] = {}
    reference_out: Path | None = None
    try:
        print(f"{'layout':62s} {'start s':>7s} {'wall s':>7s} {'cases/min':>9s} {'x seq':>6s} "
              f"{'idle/case s':>11s} {'dask/task s':>11s}  same labels")
        for text in args.layouts.split(","):
            workers, threads = _layout(text)
            shape = local_shape(cores=cores, workers=workers, threads_per_worker=threads)
            settings = CohortSettings(model_dir=model, device="cpu", runtime=args.runtime,
                                      torch_threads=shape.torch_threads)
            out = scratch / text
            opening = time.perf_counter()
            with open_client(shape=shape) as client:
                _warm(client, settings)
                started = time.perf_counter()
                rows = run_cohort(cases, out, settings, client=client)
                wall = time.perf_counter() - started
                per_task = _empty_task_seconds(client) if client is not None else 0.0
            failed = [row for row in rows if not row.ok]
            if failed:
                print(f"{text}: {len(failed)} case(s) failed, e.g. {failed[0].line()}", file=sys.stderr)
            slots = max(1, workers * threads)
            idle = (wall - sum(row.seconds for row in rows) / slots) / len(rows)
            per_minute = 60.0 * len(rows) / wall
            name = "in this process" if workers == 0 else shape.describe()
            if reference_out is None:
                reference_out, same = out, "(reference)"
            else:
                same = "yes" if _same_labels(reference_out, out, rows) else "NO"
            results[text] = wall
            ratio = wall / results[next(iter(results))]
            print(f"{name:62s} {started - opening:7.1f} {wall:7.1f} {per_minute:9.1f} {ratio:6.2f} {idle:11.3f} "
                  f"{per_task:11.4f}  {same}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load after {os.getloadavg()[0]:.2f}")
    return 0


def _warm(client, settings) -> None:  # type: ignore[no-untyped-def]
    """Import and load the model where the cases will run (each worker, or this process)."""
    from brainseg_gui.ml.cohort import _predictor

    if client is None:
        _predictor(settings)
    else:
        client.run(_predictor, settings)


def _empty_task_seconds(client, count: int = 200) -> float:  # type: ignore[no-untyped-def]
    """Dask's own cost of one task on a warm cluster: `count` empty tasks submitted together, per task."""
    from distributed import as_completed

    started = time.perf_counter()
    for future in as_completed([client.submit(int, index, pure=False) for index in range(count)]):
        future.result()
    return (time.perf_counter() - started) / count


def _same_labels(reference: Path, other: Path, rows: list) -> bool:
    for row in rows:
        if not row.output:
            continue
        name = Path(row.output).name
        if not np.array_equal(np.asarray(nib.load(reference / name).dataobj), np.asarray(nib.load(other / name).dataobj)):
            return False
    return True


if __name__ == "__main__":
    sys.exit(main())
