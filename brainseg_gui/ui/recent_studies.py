"""Recent studies and first-start flag, kept in QSettings (tests pass their own settings file)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

MAX_RECENT = 8
RECENT_KEY = "recent_studies"
DEMO_SHOWN_KEY = "demo_shown"


class RecentStudies:
    def __init__(self, settings: QSettings) -> None:
        self.settings = settings

    def paths(self) -> list[Path]:
        """Most recent first; paths that no longer exist are left out."""
        value = self.settings.value(RECENT_KEY, [])
        if isinstance(value, str):  # QSettings returns a lone string for a one-item list
            value = [value]
        return [Path(p) for p in (value or []) if Path(p).exists()]

    def add(self, path: Path) -> None:
        path = Path(path).resolve()
        paths = [path] + [p for p in self.paths() if p.resolve() != path]
        self.settings.setValue(RECENT_KEY, [str(p) for p in paths[:MAX_RECENT]])
        self.settings.sync()

    @property
    def first_start(self) -> bool:
        return not self.settings.value(DEMO_SHOWN_KEY, False, type=bool)

    def mark_started(self) -> None:
        self.settings.setValue(DEMO_SHOWN_KEY, True)
        self.settings.sync()
