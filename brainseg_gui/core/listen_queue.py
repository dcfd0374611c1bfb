"""The automatic node's work on disk: what arrived, what waits, what runs, what is done, across restarts.

    WORK/incoming/<study UID>/<SOP UID>.dcm   each received instance, written atomically
    WORK/state/<study UID>.json               {"state", "instances", "last_arrival", "attempts", "detail", ...}
    WORK/results/<study UID>/                 the segmentation and the DICOM results of the last attempt

States: receiving (instances still arriving) -> queued (quiet for `stable_seconds`: the study is taken
as complete, as PACS routers do) -> processing -> done | failed. A restart puts a study found
'processing' back in the queue (its attempt counted), so nothing is lost; a done study is never
processed again unless new instances of it arrive. After MAX_ATTEMPTS a study is failed for good.
Written here rather than taken from a queue library: the state must be plain files beside the
images (an administrator reads and clears them), and one process owns them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.read_guard import read_small_text

RECEIVING, QUEUED, PROCESSING, DONE, FAILED = "receiving", "queued", "processing", "done", "failed"
MAX_ATTEMPTS = 3


class StudyQueue:
    """The persistent queue of one automatic node (thread-safe within its process)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.incoming, self.states, self.results = self.root / "incoming", self.root / "state", self.root / "results"
        for folder in (self.incoming, self.states, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def received(self, study_uid: str, sop_uid: str, write: Callable[[Path], object]) -> None:
        """Keep one arrived instance (`write(path)` writes it) and note the study is receiving."""
        target = self.incoming / study_uid / f"{sop_uid}.dcm"
        new = not target.exists()  # an instance sent again replaces its file and is not counted twice
        write_atomic(target, write)
        with self._lock:  # counted as they come: listing the folder at every instance made a study O(n^2)
            state = self.state(study_uid)
            if state is None:  # the study's first instance (or its state lost): count what is there once
                state = {"study": study_uid, "attempts": 0}
                count = len(list((self.incoming / study_uid).glob("*.dcm")))
            else:
                count = int(state.get("instances", 0)) + int(new)
            self._save({**state, "state": RECEIVING, "instances": count, "last_arrival": time.time()})

    def settle(self, stable_seconds: float, now: float | None = None) -> list[str]:
        """Studies quiet for `stable_seconds` move from receiving to queued; returns them."""
        now = time.time() if now is None else now
        moved = []
        with self._lock:
            for state in self._all():
                if state["state"] == RECEIVING and now - float(state.get("last_arrival", 0)) >= stable_seconds:
                    self._save({**state, "state": QUEUED})
                    moved.append(state["study"])
        return moved

    def claim(self) -> str | None:
        """The oldest queued study, now processing (its attempt counted); None when none waits."""
        with self._lock:
            queued = sorted((s for s in self._all() if s["state"] == QUEUED), key=lambda s: s.get("last_arrival", 0))
            if not queued:
                return None
            state = queued[0]
            self._save({**state, "state": PROCESSING, "attempts": int(state.get("attempts", 0)) + 1,
                        "started": time.time()})
            return str(state["study"])

    def finish(self, study_uid: str, *, ok: bool, detail: str, retry: bool = False, **extra: Any) -> str:
        """Record the end of an attempt: done, failed, or (retry, attempts left) queued again."""
        with self._lock:
            state = self.state(study_uid) or {"study": study_uid, "attempts": 1}
            if state.get("state") == RECEIVING:  # new instances came meanwhile: it will be processed again
                return RECEIVING
            again = not ok and retry and int(state.get("attempts", 0)) < MAX_ATTEMPTS
            new = DONE if ok else QUEUED if again else FAILED
            self._save({**state, **extra, "state": new, "detail": detail, "finished": time.time()})
            return new

    def recover(self) -> list[str]:
        """After a restart: studies left processing go back to the queue (or fail after MAX_ATTEMPTS)."""
        back = []
        with self._lock:
            for state in self._all():
                if state["state"] == PROCESSING:
                    again = int(state.get("attempts", 0)) < MAX_ATTEMPTS
                    detail = "interrupted (the node stopped while it ran)"
                    self._save({**state, "state": QUEUED if again else FAILED, "detail": detail})
                    back.append(state["study"])
        return back

    def state(self, study_uid: str) -> dict[str, Any] | None:
        path = self.states / f"{study_uid}.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(read_small_text(path, "queue state", 1 << 20))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def all_states(self) -> list[dict[str, Any]]:
        with self._lock:
            return self._all()

    def _all(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.states.glob("*.json")):
            state = self.state(path.stem)
            if state is not None and "state" in state:
                found.append(state)
        return found

    def _save(self, state: dict[str, Any]) -> None:
        write_atomic(self.states / f"{state['study']}.json", json.dumps(state, indent=2) + "\n")
