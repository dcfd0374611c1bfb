"""Segmenting a cohort: every case once, resumably, in this process or on a Dask cluster.

One task per case, `segment_case`, runs where the work is (a Dask worker, or this process): it
reads the case's files itself (only paths travel through the scheduler), loads the model once per
process (`_predictor`), and skips the case when its output's provenance (input hashes, model
version, settings) matches what it would write now. A case that fails becomes a row with its
one-line error; it never stops the cohort. `run_cohort` gathers the rows as they finish, appends a
line per case to `cohort.log`, and writes `cohort.csv` and `cohort.html` at the end, or when the
run is interrupted (Ctrl+C, the scheduler lost), so a rerun redoes only what is missing.

Dask (`distributed`) is the engine because the same code then runs on a laptop (LocalCluster), on
servers (`dask scheduler` / `dask worker`) and under a batch system (dask-jobqueue); a worker killed
mid-case is replaced by its nanny and the case is retried elsewhere, at most MAX_ATTEMPTS times.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.case_files import CaseFiles
from brainseg_gui.core.errors import BrainSegError, Cancelled
from brainseg_gui.core.export import file_sha256
from brainseg_gui.core.image_io import read_sidecar
from brainseg_gui.core.labels import REGIONS

if TYPE_CHECKING:
    from distributed import Client

    from brainseg_gui.ml.predictor import Predictor

log = logging.getLogger(__name__)

COHORT_CSV = "cohort.csv"
COHORT_HTML = "cohort.html"
COHORT_LOG = "cohort.log"
REPORT_SUFFIX = "_report.html"
#: How many workers may die while segmenting one case before it is recorded as failed (a case
#: that kills its worker every time, e.g. by exhausting memory, must not go round for ever).
MAX_ATTEMPTS = 3
#: CSV columns, in order.
COLUMNS = ("case", "status", *(f"{region}_mL" for region in REGIONS), "flags", "seconds", "worker",
           "model_version", "output", "report", "source", "error")

SEGMENTED, SKIPPED, FAILED, NOT_RUN = "segmented", "skipped", "failed", "not run"
#: An enhancing tumour smaller than this is flagged for review: a few voxels of ET are as often
#: noise as a real enhancing rim (the BraTS lesion-wise rules ignore truth lesions under 50 mm^3).
SMALL_ET_ML = 0.5


@dataclass(frozen=True)
class CohortSettings:
    """What every case of a cohort is segmented with; the fields that shape the output are its recipe."""

    model_dir: Path
    device: str = "auto"
    #: What runs the network on a CPU worker (ml/openvino_network.py): 'auto', 'torch' or 'openvino'.
    runtime: str = "torch"
    labels: str = "brats"
    tta: bool = False
    allow_missing: bool = False
    allow_resample: bool = False
    save_probabilities: bool = False
    #: prepare_study's keywords for members that are not BraTS-ready (None: such members fail,
    #: except DICOM studies, which are always prepared, with the defaults when this is None).
    prepare: Mapping[str, Any] | None = None
    #: Whose original grid a prepared member's labels go on (None: the reference's).
    map_to: str | None = None
    #: torch's intra-op threads in each task (None: leave the worker's default).
    torch_threads: int | None = None

    def recipe(self, model_version: str) -> dict[str, Any]:
        """The settings a finished output must have been made with to be kept by a rerun."""
        return {"model_version": model_version, "labels": self.labels, "tta": self.tta,
                "allow_missing": self.allow_missing, "allow_resample": self.allow_resample,
                "save_probabilities": self.save_probabilities,
                "prepare": dict(self.prepare) if self.prepare is not None else None, "map_to": self.map_to}


@dataclass(frozen=True)
class CaseRow:
    """One case of the cohort as `cohort.csv` lists it."""

    case_id: str
    status: str
    source: str = ""
    volumes_ml: Mapping[str, float] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    seconds: float = 0.0
    worker: str = ""
    model_version: str = ""
    output: str = ""
    report: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (SEGMENTED, SKIPPED)

    def line(self) -> str:
        """One line for a terminal or the log."""
        if not self.ok:
            return f"{self.case_id}: {self.status.upper()}: {self.error}"
        volumes = "  ".join(f"{name} {self.volumes_ml.get(name, 0.0):7.2f} mL" for name in REGIONS)
        flags = f"  FLAGGED: {'; '.join(self.flags)}" if self.flags else ""
        return f"{self.case_id}: {self.status}  {volumes}  {self.seconds:6.1f} s  {self.worker}{flags}"

    def csv_row(self) -> list[str]:
        volumes = [f"{self.volumes_ml[r]:.3f}" if r in self.volumes_ml else "" for r in REGIONS]
        return [self.case_id, self.status, *volumes, "; ".join(self.flags), f"{self.seconds:.2f}", self.worker,
                self.model_version, self.output, self.report, self.source, self.error]


# -- one case, where the work runs --------------------------------------------------------------


def segment_case(member: Mapping[str, Any], out_dir: Path, settings: CohortSettings) -> CaseRow:
    """Segment one cohort member into `out_dir` unless an output with the same provenance is there already.

    `member` is `member_fields(...)`: a CaseFiles' fields, or {"dicom_study": folder, "case_id": name}
    for a DICOM study this worker indexes and stages itself; plain values that pickle, so that the
    task carries paths and the worker reads the files. A study that is not BraTS-ready (every DICOM
    study) is prepared, segmented and mapped back when `settings.prepare` allows it. Never raises
    for a bad case: the error becomes the row's.
    """
    started = time.perf_counter()
    worker = _worker_name()
    case_id = str(member.get("case_id", "?"))
    source = str(member.get("dicom_study") or next(iter(dict(member.get("files") or {}).values()), ""))
    try:
        case = _case_of(member)
        case_id = case.case_id
        row = _segment(case, Path(out_dir), settings, dicom="dicom_study" in member)
    except Cancelled:
        raise
    except BrainSegError as error:
        return CaseRow(case_id, FAILED, source, seconds=time.perf_counter() - started, worker=worker,
                       error=str(error))
    except Exception as error:  # a broken case must not stop the cohort; say what it was
        log.debug("case %s failed", case_id, exc_info=True)
        return CaseRow(case_id, FAILED, source, seconds=time.perf_counter() - started, worker=worker,
                       error=f"{type(error).__name__}: {error}")
    return dataclasses.replace(row, source=source, worker=worker, seconds=time.perf_counter() - started)


def _segment(case: CaseFiles, out_dir: Path, settings: CohortSettings, *, dicom: bool) -> CaseRow:
    """Skip `case` when its output is there with the same provenance (hashing its files, nothing more);
    else read it once, and segment it as it is or, when it is not BraTS-ready (a DICOM study never
    is), prepared first when the settings allow it."""
    from brainseg_gui.core.readiness import load_if_ready
    from brainseg_gui.ml.predict import PREDICTION_SUFFIX, PROBABILITIES_SUFFIX, predict_case

    predictor = _predictor(settings)
    expected = provenance(case, settings, predictor.model_version)
    output = out_dir / f"{case.case_id}{PREDICTION_SUFFIX}"
    report = out_dir / f"{case.case_id}{REPORT_SUFFIX}"
    earlier = finished_output(output, expected, [report])
    if earlier is not None:
        return _row_from_sidecar(case.case_id, SKIPPED, earlier, output=output, report=report)
    study, problems = (None, []) if dicom else load_if_ready(case, allow_resample=settings.allow_resample)
    if study is not None:
        probabilities = out_dir / f"{case.case_id}{PROBABILITIES_SUFFIX}" if settings.save_probabilities else None
        predict_case(case, output, predictor=predictor, labels=settings.labels, save_probabilities=probabilities,
                     allow_resample=settings.allow_resample, provenance=expected, report=report, study=study)
    elif dicom or settings.prepare is not None:
        from brainseg_gui.ml.prepared_predict import predict_prepared_case

        predict_prepared_case(case, output, predictor=predictor, labels=settings.labels,
                              prepare_settings=settings.prepare or {}, map_to=settings.map_to,
                              provenance=expected, report=report)
    else:
        raise BrainSegError(f"{case.case_id} is not BraTS-ready ({'; '.join(problems)}): add --prepare to "
                            "prepare it, segment it and map the labels back")
    # the row says what the sidecar says, as for a skipped case
    return _row_from_sidecar(case.case_id, SEGMENTED, read_sidecar(output), output=output, report=report)


def _case_of(member: Mapping[str, Any]) -> CaseFiles:
    if "dicom_study" in member:
        from brainseg_gui.core.dicom_study import open_dicom_study, stage_case

        index, assignment = open_dicom_study(Path(member["dicom_study"]))
        return stage_case(index, assignment)
    return CaseFiles(**member)


def member_fields(member: CaseFiles | Path) -> dict[str, Any]:
    """A cohort member (a found case, or a DICOM study folder) as plain values for `segment_case`."""
    if isinstance(member, CaseFiles):
        return case_fields(member)
    return {"dicom_study": str(member), "case_id": Path(member).name}


def case_fields(case: CaseFiles) -> dict[str, Any]:
    """A CaseFiles as plain picklable values (its mappings are read-only proxies, which do not pickle)."""
    fields = {f.name: getattr(case, f.name) for f in dataclasses.fields(case)}
    fields["files"] = dict(case.files)
    return fields


def provenance(case: CaseFiles, settings: CohortSettings, model_version: str) -> dict[str, Any]:
    """What made an output: the SHA-256 of every input file, the model version and the recipe."""
    inputs = {name: {"path": str(path), "sha256": file_sha256(Path(path))} for name, path in case.files.items()}
    # as JSON reads it back from the sidecar (tuples become lists), so that equal means unchanged
    return dict(json.loads(json.dumps({"inputs": inputs, **settings.recipe(model_version)})))


def finished_output(output: Path, expected: Mapping[str, Any], companions: Iterable[Path] = ()) -> dict[str, Any] | None:
    """The sidecar of `output` when it exists with exactly the `expected` provenance, else None.

    `companions` must exist too, and so must the probabilities the sidecar names (if any).
    """
    if not output.is_file() or not all(Path(p).is_file() for p in companions):
        return None
    try:
        sidecar = read_sidecar(output)
    except BrainSegError:
        return None
    if sidecar.get("probabilities") and not Path(sidecar["probabilities"]).is_file():
        return None
    return sidecar if sidecar.get("provenance") == dict(expected) else None


def _row_from_sidecar(case_id: str, status: str, sidecar: Mapping[str, Any], *, output: Path,
                      report: Path) -> CaseRow:
    volumes = {name: float(value) for name, value in dict(sidecar.get("volumes_ml") or {}).items()}
    missing = list(sidecar.get("missing_sequences") or [])
    flags = [*([f"missing {', '.join(missing)}"] if missing else []),
             *([str(sidecar.get("flag_reason"))] if sidecar.get("flagged") and sidecar.get("flag_reason") else []),
             *volume_flags(volumes),
             *([f"prepared, labels on the {sidecar['prepared'].get('mapped_to')} grid"]
               if isinstance(sidecar.get("prepared"), dict) else [])]
    return CaseRow(case_id, status, volumes_ml=volumes, flags=tuple(flags),
                   model_version=str(sidecar.get("model_version", "")), output=str(output), report=str(report))


def volume_flags(volumes_ml: Mapping[str, float]) -> list[str]:
    """What a reviewer should look at first: no tumour found, or an enhancing part too small to trust."""
    whole, enhancing = volumes_ml.get("WT", 0.0), volumes_ml.get("ET", 0.0)
    if whole <= 0.0:
        return ["no tumour found"]
    if 0.0 < enhancing < SMALL_ET_ML:
        return [f"small ET ({enhancing:.2f} mL < {SMALL_ET_ML:g} mL)"]
    return []


_PREDICTORS: dict[tuple[Any, ...], Predictor] = {}
_PREDICTORS_LOCK = threading.Lock()


def _predictor(settings: CohortSettings) -> Predictor:
    """The model of `settings`, loaded once per process (per worker) and kept for its next cases."""
    from brainseg_gui.ml.predictor import Predictor

    device = _device_for_this_worker(settings.device)
    key = (str(settings.model_dir), device, settings.tta, settings.allow_missing, settings.runtime)
    with _PREDICTORS_LOCK:
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        if key not in _PREDICTORS:
            _PREDICTORS[key] = Predictor.from_model_dir(settings.model_dir, device=device, tta=settings.tta,
                                                        allow_missing=settings.allow_missing,
                                                        runtime=settings.runtime)
        return _PREDICTORS[key]


def _device_for_this_worker(device: str) -> str:
    """One GPU per worker: worker k of a LocalCluster uses cuda:k (mod the GPUs); else as asked."""
    if device not in ("auto", "cuda"):
        return device
    import torch

    count = torch.cuda.device_count()
    if count <= 1:
        return device
    name = _worker_name()
    index = int(name) if name.isdigit() else abs(hash(name))
    return f"cuda:{index % count}"


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):  # not inside a Dask worker: this process
        return f"pid {os.getpid()}"


# -- the cohort ---------------------------------------------------------------------------------


class CohortInterrupted(BrainSegError):
    """The run stopped before every case was done (the scheduler was lost); the rows so far are written."""


Task = Callable[[Mapping[str, Any], Path, "CohortSettings"], "CaseRow"]


def run_cohort(
    members: Sequence[CaseFiles | Path],
    out_dir: Path,
    settings: CohortSettings,
    *,
    client: Client | None = None,
    on_row: Callable[[CaseRow, int, int], None] | None = None,
    task: Task = segment_case,
) -> list[CaseRow]:
    """Segment `members` (found cases, or DICOM study folders: `core.cases.find_cohort`) into `out_dir`.

    On `client`'s Dask cluster, or in this process when it is None. `on_row(row, done, total)`
    sees each case as it finishes; `task` is what runs a member (tests wrap `segment_case` to kill
    a worker part-way). Returns the rows in the members' order and writes cohort.csv / cohort.html;
    an interruption writes them too (unfinished members 'not run') before it propagates.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = [member_fields(member) for member in members]
    rows: dict[int, CaseRow] = {}
    log_lines = _CohortLog(out_dir / COHORT_LOG)
    log_lines.write(f"# {datetime.now(UTC).isoformat(timespec='seconds')}: {len(members)} case(s), model "
                    f"{settings.model_dir}, "
                    + ("in this process" if client is None else f"Dask scheduler {client.scheduler.address}"))

    def finished(index: int, row: CaseRow) -> None:
        rows[index] = row
        log_lines.write(row.line())
        if on_row is not None:
            on_row(row, len(rows), len(members))

    def ordered() -> list[CaseRow]:
        return [rows.get(index) or CaseRow(str(member["case_id"]), NOT_RUN, error="the run stopped before this case")
                for index, member in enumerate(fields)]

    try:
        if client is None:
            for index, member in enumerate(fields):
                finished(index, task(member, out_dir, settings))
        else:
            _run_on_dask(client, fields, out_dir, settings, finished, task)
    except BaseException as error:
        write_results(out_dir, ordered(), settings)
        log_lines.write(f"# stopped: {type(error).__name__}: {error}")
        if isinstance(error, (OSError, TimeoutError)) and not isinstance(error, BrainSegError):
            done = sum(1 for row in rows.values() if row.ok)
            raise CohortInterrupted(f"lost the Dask scheduler after {done} of {len(members)} case(s) ({error}); "
                                    "rerun the same command to finish: finished cases are skipped") from error
        raise
    result = ordered()
    write_results(out_dir, result, settings)
    return result


def _run_on_dask(client: Client, fields: Sequence[Mapping[str, Any]], out_dir: Path, settings: CohortSettings,
                 finished: Callable[[int, CaseRow], None], task: Task) -> None:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    futures = {client.submit(task, member, out_dir, settings, pure=False,
                             key=f"brainseg-case-{index}-{member['case_id']}"): index
               for index, member in enumerate(fields)}
    try:
        for future in as_completed(futures):
            index = futures[future]
            case_id = str(fields[index]["case_id"])
            try:
                row = future.result()
            except KilledWorker:
                row = CaseRow(case_id, FAILED, error=f"the worker segmenting it died {MAX_ATTEMPTS} times "
                              "(out of memory, or killed); not retried again")
            except (OSError, TimeoutError):
                raise
            except Exception as error:  # noqa: BLE001 - one case's failure, whatever it is, is its row's
                row = CaseRow(case_id, FAILED, error=f"{type(error).__name__}: {error}")
            finished(index, row)
    finally:
        client.cancel([f for f in futures if not f.done()])


class _CohortLog:
    """`cohort.log`: one appended, flushed line per case, so a killed run still says what it did."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, line: str) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line.rstrip("\n") + "\n")


# -- results ------------------------------------------------------------------------------------


def write_results(out_dir: Path, rows: Sequence[CaseRow], settings: CohortSettings) -> None:
    """cohort.csv and cohort.html of `rows` (each written atomically)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(row.csv_row() for row in rows)
    write_atomic(Path(out_dir) / COHORT_CSV, buffer.getvalue().encode("utf-8"))
    from brainseg_gui.ml.cohort_report import cohort_html

    page = cohort_html(rows, out_dir, model_dir=settings.model_dir, labels=settings.labels, tta=settings.tta)
    write_atomic(Path(out_dir) / COHORT_HTML, page.encode("utf-8"))


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a cohort.csv as dictionaries (for tests and tools)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
