"""Where a cohort runs: a LocalCluster sized from this machine, an existing Dask scheduler, or a batch system.

`open_client` yields a `distributed.Client` (or None: in this process, without Dask) and closes what
it started. A LocalCluster gets one worker per GPU; on a CPU, DEFAULT_CPU_SPLIT, measured with
`bench/cohort.py`. Workers are processes under a nanny, so a worker that dies is restarted and its
case retried elsewhere; the scheduler gives up on a case after MAX_ATTEMPTS deaths.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.read_guard import physical_memory, read_small_text
from brainseg_gui.ml.cohort import MAX_ATTEMPTS

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

#: Batch systems dask-jobqueue drives, by the name `--cluster` takes.
JOBQUEUE_CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}
#: On a CPU: one worker process per core, torch on one thread in each. Measured on 2 cores
#: (bench/cohort.py, docs/cohorts.md): two one-core workers beat one worker with two torch
#: threads (which also loses to the plain in-process loop), since a case's reading, preparation
#: and writing are single-threaded and only the network uses a second thread; separate processes
#: keep both cores busy through every stage.
CORES_PER_CPU_WORKER = 1
#: Memory a CPU worker may need for one full case (a 240x240x155 study peaks at ~1.3 GB): the
#: default never starts more workers than the machine's memory holds.
MEMORY_PER_CPU_WORKER = 2 << 30


class ClusterError(BrainSegError):
    """The cluster asked for cannot be used (a missing package, a bad config, no scheduler there)."""


@dataclass(frozen=True)
class ClusterShape:
    """How a LocalCluster is laid out: processes, task threads in each, torch threads per task."""

    workers: int
    threads_per_worker: int
    torch_threads: int

    def describe(self) -> str:
        return (f"{self.workers} worker process(es) x {self.threads_per_worker} thread(s), "
                f"torch {self.torch_threads} thread(s) a task")


def local_shape(*, cores: int | None = None, gpus: int = 0, workers: int | None = None,
                threads_per_worker: int | None = None, cases: int | None = None) -> ClusterShape:
    """The LocalCluster for this machine: one worker per GPU, else CORES_PER_CPU_WORKER cores each.

    `workers` / `threads_per_worker` override (0 workers: in this process, torch on every core);
    never more workers than `cases`, and a single case runs in this process unless asked otherwise
    (starting a cluster for it costs more than it can gain).
    """
    cores = max(1, cores or os.cpu_count() or 1)
    if workers == 0 or (workers is None and threads_per_worker is None and cases == 1 and not gpus):
        return ClusterShape(0, 1, cores)
    if workers is None:
        memory = physical_memory()
        fits = memory // MEMORY_PER_CPU_WORKER if memory else cores
        workers = gpus if gpus else max(1, min(cores // CORES_PER_CPU_WORKER, fits))
    if cases is not None:
        workers = max(1, min(workers, cases))
    threads = threads_per_worker or 1
    torch_threads = max(1, cores // (workers * threads)) if not gpus else 1
    return ClusterShape(workers, threads, torch_threads)


def gpu_count(device: str) -> int:
    """CUDA devices a LocalCluster may spread over (0 when the CPU is asked for)."""
    if device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextmanager
def open_client(*, shape: ClusterShape | None = None, scheduler: str | None = None, cluster: str | None = None,
                cluster_config: Path | None = None) -> Iterator[Client | None]:
    """A Dask client for the chosen place (None: run in this process), closed afterwards."""
    if scheduler is None and cluster is None and (shape is None or shape.workers == 0):
        yield None
        return
    import dask
    from distributed import Client

    # The workers' statistical profiler samples every thread's stack every 10 ms under the GIL:
    # measured, it made a case's reading ~60% slower on 2 cores; it is only for the dashboard.
    # worker-saturation 1.0: a worker is sent no more cases than it has threads, so a case that
    # kills its worker never takes a queued neighbour down with it (each death counts against every
    # case on that worker; measured: an innocent case was given up beside a poisonous one).
    with dask.config.set({"distributed.scheduler.allowed-failures": MAX_ATTEMPTS - 1,
                          "distributed.scheduler.worker-saturation": 1.0,
                          "distributed.worker.profile.enabled": False,
                          "distributed.admin.tick.limit": "60s"}):
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout="5s")
            except (OSError, TimeoutError) as error:
                raise ClusterError(f"no Dask scheduler answers at {scheduler} ({error}); start one with "
                                   "'dask scheduler' and workers with 'dask worker ADDRESS'") from None
            with client:
                yield client
            return
        if cluster is not None:
            with _jobqueue_cluster(cluster, cluster_config) as batch, Client(batch) as client:
                yield client
            return
        assert shape is not None
        from distributed import LocalCluster

        with LocalCluster(n_workers=shape.workers, threads_per_worker=shape.threads_per_worker, processes=True,
                          dashboard_address=None, silence_logs=logging.ERROR) as local, Client(local) as client:
            yield client


@contextmanager
def _jobqueue_cluster(name: str, config_path: Path | None) -> Iterator[Any]:
    """A dask-jobqueue cluster from a small JSON config: the class's keywords, plus "jobs" to start."""
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError(f"--cluster {name} needs dask-jobqueue: pip install dask-jobqueue") from None
    config = read_cluster_config(config_path)
    jobs = int(config.pop("jobs", 1))
    try:
        batch = getattr(dask_jobqueue, JOBQUEUE_CLUSTERS[name])(**config)
    except (TypeError, ValueError) as error:
        raise ClusterError(f"cannot start a {name} cluster from {config_path}: {error}") from None
    with batch:
        batch.scale(jobs=jobs)
        yield batch


def read_cluster_config(path: Path | None) -> dict[str, Any]:
    """The JSON object of `--cluster-config` (e.g. {"cores": 8, "memory": "16GB", "queue": "gpu", "jobs": 4})."""
    if path is None:
        return {}
    try:
        data = json.loads(read_small_text(Path(path), "cluster config"))
    except ValueError as error:
        raise ClusterError(f"{path} is not JSON: {error}") from None
    if not isinstance(data, Mapping):
        raise ClusterError(f"{path}: a cluster config is a JSON object of the cluster's settings")
    return dict(data)
