"""What the PACS dialogs run in workers: find studies, list one study's series, retrieve into the cache,
test a node (PACS nodes dialog).

Plain functions called as ``fn(..., progress=..., cancel=...)`` (ui/workers.py), no Qt. Each opens
its own connection in the worker, so no connection is shared between threads, and the secret is
read there too (a system keyring may take a while to answer). Every fault is a PacsError from core
whose message starts with what failed (refused:, DNS:, timeout:, auth:, ...).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from brainseg_gui.core.pacs_cache import RetrievedStudy, retrieve_study
from brainseg_gui.core.pacs_client import PacsConnection, SeriesMatch, StudyMatch, StudyQuery
from brainseg_gui.core.pacs_connect import connect
from brainseg_gui.core.pacs_nodes import NodeStore, PacsNode
from brainseg_gui.core.progress import CancelToken, ProgressFn


def _connection(store: NodeStore, node: PacsNode) -> PacsConnection:
    return connect(node, store.secret(node))


def search(store: NodeStore, node: PacsNode, query: StudyQuery, *, progress: ProgressFn,
           cancel: CancelToken) -> list[StudyMatch]:
    """The studies on `node` that match `query`, newest first (as a radiologist scans a worklist)."""
    progress(0.0, f"Searching {node.name}…")
    studies = _connection(store, node).find_studies(query)
    cancel.raise_if_cancelled()
    return sorted(studies, key=lambda study: study.study_date, reverse=True)


def list_series(store: NodeStore, node: PacsNode, study_uid: str, *, progress: ProgressFn,
                cancel: CancelToken) -> list[SeriesMatch]:
    """The series of one study, in series-number order (unnumbered ones last)."""
    progress(0.0, f"Listing the series on {node.name}…")
    series = _connection(store, node).find_series(study_uid)
    cancel.raise_if_cancelled()
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.description))


def retrieve(store: NodeStore, node: PacsNode, study_uid: str, series_uids: Sequence[str], *,
             progress: ProgressFn, cancel: CancelToken) -> RetrievedStudy:
    """The chosen series of the study in the cache (resumable; Cancelled keeps what arrived)."""
    progress(0.0, f"Asking {node.name} for the study…")
    return retrieve_study(_connection(store, node), study_uid, series_uids=list(series_uids),
                          limit_gb=store.cache_limit_gb, progress=progress, cancel=cancel)


def echo(store: NodeStore, node: PacsNode, secret: str | None, *, progress: ProgressFn, cancel: CancelToken) -> str:
    """'ok: ...' when `node` (as the form has it, maybe unsaved) answers an echo; `secret` as typed, or
    None for the one kept for it. Timed, as `brainseg pacs nodes test` is."""
    progress(0.0, f"Testing {node.name}…")
    started = time.perf_counter()
    answer = connect(node, secret if secret is not None else store.secret(node)).echo()
    cancel.raise_if_cancelled()
    return f"ok: {answer} ({time.perf_counter() - started:.2f} s)"
