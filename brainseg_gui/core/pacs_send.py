"""Sending DICOM files to a PACS node, and the record of every send (one JSON line each).

    CONFIG/pacs_sent.jsonl   {"time", "node", "files", "sop_instance_uids", "study_uids"} per send

Shared by `brainseg pacs send` and the viewer's File > Send to PACS…, so both send and log alike
(CONFIG as in core/pacs_nodes.py). A send that fails logs nothing: the line says what the node took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.pacs_client import read_datasets, text_of
from brainseg_gui.core.pacs_connect import connect
from brainseg_gui.core.pacs_nodes import NodeStore, config_dir

SENT_LOG = "pacs_sent.jsonl"


def sent_log_path() -> Path:
    """Where every send is recorded (not created here)."""
    return config_dir() / SENT_LOG


def send_files(node_name: str, paths: Sequence[Path], store: NodeStore | None = None, *,
               datasets: Sequence[Any] | None = None) -> list[str]:
    """Send the DICOM files `paths` to the node called `node_name` and record it; the SOP Instance UIDs
    the node accepted, in order.

    `datasets`: the files as already read (pydicom, in the order of `paths`), e.g. to list them before
    asking; else they are read here. PacsError (one line: 'refused: ...', 'auth: ...', 'connection lost:
    ...') when a file is not DICOM or the node fails; nothing is recorded then.
    """
    store = store if store is not None else NodeStore()
    node = store.get(node_name)
    if datasets is None:
        datasets = read_datasets(paths)
    if len(datasets) != len(paths):
        raise ValueError(f"{len(datasets)} datasets given for {len(paths)} files")
    sent = connect(node, store.secret(node)).store(datasets)
    log_sent(node_name, paths, sent, sorted({text_of(d, "StudyInstanceUID") for d in datasets}))
    return sent


def log_sent(node_name: str, paths: Sequence[Path], sent: Sequence[str], study_uids: Sequence[str]) -> Path:
    """Append one send to the record; BrainSegError (saying the files did go) when it cannot be written."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "node": node_name, "files": [str(p) for p in paths],
              "sop_instance_uids": list(sent), "study_uids": list(study_uids)}
    path = sent_log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
    except OSError as error:
        raise BrainSegError(f"sent {len(sent)} instance(s) to {node_name}, but could not record it in {path}: "
                            f"{error.strerror or error}") from None
    return path
