"""The retrieve cache without a PACS (a node in memory): resume, checks on what arrives, eviction."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from brainseg_gui.core.errors import Cancelled
from brainseg_gui.core.pacs_cache import COMPLETE, evict, retrieve_study, study_folder
from brainseg_gui.core.pacs_client import InstanceSink, SeriesMatch
from brainseg_gui.core.pacs_nodes import PacsError, PacsNode
from brainseg_gui.core.progress import CancelToken


def _instance(study: str, series: str, modality: str = "MR", payload: int = 1000) -> Dataset:
    dataset = Dataset()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID = study, series, generate_uid()
    dataset.SOPClassUID, dataset.Modality = MRImageStorage, modality
    dataset.add_new(0x7FE00010, "OB", bytes(payload))  # pixel data: the size is what counts here
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = MRImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    return dataset


class MemoryNode:
    """A PacsConnection over studies held in memory; `fail_after` drops the connection part-way."""

    def __init__(self, studies: dict[str, dict[str, list[Dataset]]], modality: str = "MR") -> None:
        self.node = PacsNode("memory", "dimse", ae_title="MEM", host="localhost", port=104)
        self.studies, self.modality = studies, modality
        self.fail_after: int | None = None
        self.sent = 0

    def find_series(self, study_uid: str) -> list[SeriesMatch]:
        return [SeriesMatch(uid, self.modality, f"series {uid[-4:]}", None, len(items))
                for uid, items in self.studies.get(study_uid, {}).items()]

    def instance_uids(self, study_uid: str, series_uid: str) -> list[str]:
        return [str(d.SOPInstanceUID) for d in self.studies[study_uid][series_uid]]

    def retrieve(self, study_uid: str, series_uid: str, only: Sequence[str] | None, sink: InstanceSink,
                 cancel: CancelToken) -> None:
        for dataset in self.studies[study_uid][series_uid]:
            if only is not None and str(dataset.SOPInstanceUID) not in only:
                continue
            if self.fail_after is not None and self.sent >= self.fail_after:
                raise PacsError("connection lost: the test node dropped")
            sink(dataset, str(dataset.SOPInstanceUID))
            self.sent += 1


def _study(series: int = 2, images: int = 5, payload: int = 1000) -> tuple[str, dict[str, list[Dataset]]]:
    study = generate_uid()
    return study, {uid: [_instance(study, uid, payload=payload) for _ in range(images)]
                   for uid in (generate_uid() for _ in range(series))}


def test_a_dropped_retrieve_resumes_with_only_what_is_missing(tmp_path: Path) -> None:
    study, series = _study()
    node = MemoryNode({study: series})
    node.fail_after = 7
    with pytest.raises(PacsError, match="connection lost"):
        retrieve_study(node, study, cache_dir=tmp_path)  # type: ignore[arg-type]
    folder = study_folder(study, tmp_path)
    assert not (folder / COMPLETE).exists() and len(list(folder.rglob("*.dcm"))) == 7
    node.fail_after, node.sent = None, 0
    result = retrieve_study(node, study, cache_dir=tmp_path)  # type: ignore[arg-type]
    assert (result.instances, result.fetched, node.sent) == (10, 3, 3)
    assert (folder / COMPLETE).is_file()
    again = retrieve_study(node, study, cache_dir=tmp_path)  # type: ignore[arg-type]
    assert again.fetched == 0


def test_a_cancelled_retrieve_keeps_whole_files_only(tmp_path: Path) -> None:
    study, series = _study()
    cancel = CancelToken()

    def cancel_soon(fraction: float, _message: str) -> None:
        if fraction >= 0.3:
            cancel.cancel()

    class Cancelling(MemoryNode):
        def retrieve(self, *args: Any) -> None:
            if cancel.cancelled:
                raise Cancelled("stop")
            super().retrieve(*args)

    with pytest.raises(Cancelled):
        retrieve_study(Cancelling({study: series}), study, cache_dir=tmp_path, progress=cancel_soon,  # type: ignore[arg-type]
                       cancel=cancel)
    leftovers = [p.name for p in study_folder(study, tmp_path).rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_an_instance_of_another_study_is_not_kept(tmp_path: Path) -> None:
    study, series = _study(series=1)
    stray = _instance(generate_uid(), next(iter(series)))
    first = next(iter(series))
    series[first][2] = stray
    with pytest.raises(PacsError, match="another study"):
        retrieve_study(MemoryNode({study: series}), study, cache_dir=tmp_path)  # type: ignore[arg-type]
    assert not (study_folder(study, tmp_path) / COMPLETE).exists()


def test_the_oldest_complete_studies_are_evicted_beyond_the_limit(tmp_path: Path) -> None:
    studies = [_study(series=1, images=4, payload=250_000) for _ in range(3)]  # ~1 MB each
    node = MemoryNode(dict(studies))
    for index, (uid, _) in enumerate(studies):
        retrieve_study(node, uid, cache_dir=tmp_path)  # type: ignore[arg-type]
        stamp = time.time() - 1000 + index
        os.utime(study_folder(uid, tmp_path) / COMPLETE, (stamp, stamp))
    partial = generate_uid()
    study_folder(partial, tmp_path).mkdir()  # a retrieve in progress: never evicted
    evicted = evict(tmp_path, limit_gb=0.0025)
    assert evicted == [studies[0][0]]
    assert study_folder(partial, tmp_path).is_dir()
    assert evict(tmp_path, limit_gb=0.0001, keep=study_folder(studies[2][0], tmp_path)) == [studies[1][0]]
    assert study_folder(studies[2][0], tmp_path).is_dir()


def test_a_study_without_mr_or_unknown_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    study, series = _study()
    with pytest.raises(PacsError, match="holds no MR series"):
        retrieve_study(MemoryNode({study: series}, modality="CT"), study, cache_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(PacsError, match="has no study"):
        retrieve_study(MemoryNode({}), study, cache_dir=tmp_path)  # type: ignore[arg-type]
    assert not study_folder(study, tmp_path).exists()
    with pytest.raises(PacsError, match="not a DICOM study UID"):
        study_folder("../../etc", tmp_path)
