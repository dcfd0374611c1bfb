"""Studies retrieved from PACS, in the user's cache: resumable, complete or not at all, bounded in size.

    CACHE/pacs/<study UID>/            CACHE = core.dicom_sources.cache_root()
        <series UID>/<SOP UID>.dcm     each instance written atomically as it arrives
        retrieve.json                  what was asked (node, series)
        complete.json                  written last, once every asked series holds every instance

A study folder without complete.json is a retrieve in progress or interrupted: it is never opened,
and the next retrieve of the study fetches only what is missing. A study deleted on the node during
the retrieve is removed from the cache (nothing partial stays). After each retrieve the oldest
complete studies are evicted until the cache is within its limit (NodeStore.cache_limit_gb).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.dicom_sources import cache_root
from brainseg_gui.core.errors import BrainSegError, Cancelled
from brainseg_gui.core.pacs_client import PacsConnection, SeriesMatch, text_of
from brainseg_gui.core.pacs_nodes import PacsError
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.core.read_guard import read_small_text

log = logging.getLogger(__name__)

COMPLETE = "complete.json"
REQUEST = "retrieve.json"
#: A DICOM UID: digits and dots, at most 64 characters (also what makes it safe as a file name).
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class RetrievedStudy:
    folder: Path
    series: tuple[SeriesMatch, ...]
    instances: int
    fetched: int  # how many of them this retrieve brought (the rest were in the cache already)
    evicted: tuple[str, ...] = ()


def pacs_cache_dir() -> Path:
    return cache_root() / "pacs"


def study_folder(study_uid: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or pacs_cache_dir()) / checked_uid(study_uid, "study")


def checked_uid(uid: str, what: str) -> str:
    if not isinstance(uid, str) or len(uid) > 64 or not _UID.match(uid):
        raise PacsError(f"{uid!r} is not a DICOM {what} UID (digits and dots, at most 64 characters)")
    return uid


def is_complete(folder: Path) -> bool:
    return (Path(folder) / COMPLETE).is_file()


def retrieve_study(connection: PacsConnection, study_uid: str, *, series_uids: Sequence[str] | None = None,
                   cache_dir: Path | None = None, limit_gb: float | None = None, progress: ProgressFn = no_progress,
                   cancel: CancelToken | None = None) -> RetrievedStudy:
    """Bring the study (or the chosen series) into the cache; resumes an interrupted retrieve."""
    cancel = cancel or CancelToken()
    folder = study_folder(study_uid, cache_dir)
    available = connection.find_series(study_uid)
    if not available:
        raise PacsError(f"{connection.node.name} has no study {study_uid}")
    chosen = _chosen(available, series_uids, study_uid)
    if not any(series.modality == "MR" for series in chosen):
        found = sorted({series.modality or "?" for series in chosen})
        raise PacsError(f"study {study_uid} holds no MR series (modalities {', '.join(found)}): BrainSeg segments "
                        "brain MRI")
    folder.mkdir(parents=True, exist_ok=True)
    wanted = sorted(series.series_uid for series in chosen)
    previous = _read_json(folder / REQUEST).get("series", [])
    if is_complete(folder) and set(wanted) <= set(previous):
        _touch(folder)
        total = sum(len(list((folder / uid).glob("*.dcm"))) for uid in wanted)
        return RetrievedStudy(folder, tuple(chosen), total, 0)
    (folder / COMPLETE).unlink(missing_ok=True)
    write_atomic(folder / REQUEST, json.dumps({"node": connection.node.name, "study": study_uid,
                                               "series": sorted(set(wanted) | set(previous))}, indent=2) + "\n")
    listed = {series.series_uid: connection.instance_uids(study_uid, series.series_uid) for series in chosen}
    total = sum(len(uids) for uids in listed.values())
    done = sum(len(_present(folder, uid) & set(uids)) for uid, uids in listed.items())
    fetched = 0
    progress(done / max(total, 1), f"{done} of {total} images in the cache")
    for series in chosen:
        uid = series.series_uid
        present = _present(folder, uid)  # one listing of the folder, not one per instance
        missing = [sop for sop in listed[uid] if sop not in present]
        if not missing:
            continue

        def keep(dataset: Any, sop: str, series_uid: str = uid) -> None:
            nonlocal done, fetched
            _keep_instance(folder, study_uid, series_uid, dataset, sop)
            done, fetched = done + 1, fetched + 1
            progress(done / max(total, 1), f"{done} of {total} images")

        whole = len(missing) == len(listed[uid])
        try:
            connection.retrieve(study_uid, uid, None if whole else missing, keep, cancel)
        except Cancelled:
            raise
        except PacsError:
            _forget_if_deleted(connection, study_uid, uid, folder)
            raise
        arrived = _present(folder, uid)
        still = [sop for sop in listed[uid] if sop not in arrived]
        if still:
            _forget_if_deleted(connection, study_uid, uid, folder)
            raise PacsError(f"{len(still)} of {len(listed[uid])} images of series {series.description or uid} did not "
                            f"arrive from {connection.node.name}; retrieve again to fetch only those")
    write_atomic(folder / COMPLETE, json.dumps({"completed": time.time(), "instances": total}) + "\n")
    evicted = evict(cache_dir or pacs_cache_dir(), limit_gb, keep=folder) if limit_gb else ()
    return RetrievedStudy(folder, tuple(chosen), total, fetched, tuple(evicted))


def _chosen(available: list[SeriesMatch], series_uids: Sequence[str] | None, study_uid: str) -> list[SeriesMatch]:
    if not series_uids:
        return available
    by_uid = {series.series_uid: series for series in available}
    unknown = [uid for uid in series_uids if uid not in by_uid]
    if unknown:
        raise PacsError(f"study {study_uid} has no series {', '.join(unknown)}")
    return [by_uid[uid] for uid in series_uids]


def _present(folder: Path, series_uid: str) -> set[str]:
    return {path.stem for path in (folder / series_uid).glob("*.dcm")}


def _keep_instance(folder: Path, study_uid: str, series_uid: str, dataset: Any, sop: str) -> None:
    """One instance as it arrives: checked to belong where it is filed, then written atomically."""
    checked_uid(sop, "SOP instance")
    if text_of(dataset, "StudyInstanceUID") != study_uid or text_of(dataset, "SeriesInstanceUID") != series_uid:
        raise PacsError(f"the node sent instance {sop} of another study or series; it is not kept")
    target = folder / series_uid / f"{sop}.dcm"
    write_atomic(target, lambda temporary: dataset.save_as(str(temporary), enforce_file_format=True))


def _forget_if_deleted(connection: PacsConnection, study_uid: str, series_uid: str, folder: Path) -> None:
    """A study or series the node no longer has: remove what was fetched of it, and say so."""
    try:
        still_there = any(s.series_uid == series_uid for s in connection.find_series(study_uid))
    except PacsError:
        return  # the node cannot be asked now: keep what arrived, for the next retrieve to resume
    if not still_there:
        shutil.rmtree(folder, ignore_errors=True)
        raise PacsError(f"{connection.node.name} no longer has series {series_uid} of study {study_uid} (deleted "
                        "during the retrieve?); nothing of it is kept in the cache")


def evict(cache_dir: Path, limit_gb: float, *, keep: Path | None = None) -> list[str]:
    """Remove the least recently used complete studies until the cache holds at most `limit_gb`."""
    studies = [path for path in Path(cache_dir).iterdir() if path.is_dir() and is_complete(path)] \
        if Path(cache_dir).is_dir() else []
    sizes = {path: sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) for path in studies}
    total = sum(sizes.values())
    limit = limit_gb * 1e9
    evicted = []
    for path in sorted(studies, key=lambda p: (p / COMPLETE).stat().st_mtime):
        if total <= limit:
            break
        if keep is not None and path.resolve() == Path(keep).resolve():
            continue
        shutil.rmtree(path, ignore_errors=True)
        total -= sizes[path]
        evicted.append(path.name)
        log.info("evicted %s from the PACS cache (limit %.1f GB)", path.name, limit_gb)
    return evicted


def _touch(folder: Path) -> None:
    (folder / COMPLETE).touch()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_small_text(path, "retrieve record", 1 << 20))
    except (BrainSegError, OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
