"""The per-user models folder: kept fine-tuned versions, which one is active, rollback to the shipped one.

    ROOT/                         $BRAINSEG_MODELS_DIR, else $XDG_DATA_HOME/brainseg/models,
                                  else ~/.local/share/brainseg/models
      active.json                 {"active": "<name>"} ("shipped" or a kept version); written atomically
      versions/<name>/            a kept model: card.json + weights.safetensors + entry.json (when, note)
      staging/<stamp>/            fine-tune runs in progress or waiting for keep/discard

A kept version is copied into a hidden temporary folder, checked (it must load), then renamed into
place, so a crash never leaves half a version. The shipped model is read where it is installed and
never written: it cannot be kept over, removed, or chosen as a fine-tune's output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from brainseg_gui.core.errors import ModelError
from brainseg_gui.ml.checkpoint import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    atomic_write_bytes,
    load_model,
    read_card,
)
from brainseg_gui.ml.shipped import shipped_model_dir

log = logging.getLogger(__name__)

MODELS_DIR_ENV = "BRAINSEG_MODELS_DIR"
SHIPPED = "shipped"
ACTIVE_FILE = "active.json"
ENTRY_FILE = "entry.json"
VERSIONS = "versions"
STAGING = "staging"
_NAME = re.compile(r"^v(?P<number>\d+)-[0-9a-f]{12}$")


def models_root() -> Path:
    """The user's models folder (not created here)."""
    override = os.environ.get(MODELS_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(data_home).expanduser() if data_home else Path.home() / ".local" / "share"
    return base / "brainseg" / "models"


@dataclass(frozen=True)
class ModelEntry:
    """One model the user can choose: the shipped one or a kept version."""

    name: str
    directory: Path
    card: ModelCard
    shipped: bool
    active: bool
    kept_at: str = ""
    note: str = ""

    @property
    def version(self) -> str:
        return self.card.version

    def describe(self) -> str:
        """One line for a list: name, base, cases, validation Dice, note."""
        if self.shipped:
            text = f"shipped model {self.version}"
        else:
            tuned = self.card.training.get("finetune", {})
            base = tuned.get("base_version") or self.card.training.get("base_model") or "?"
            cases = len(self.card.training.get("cases", []))
            text = f"{self.name} (from {base}, {cases} training cases, kept {self.kept_at[:16]})"
            after = tuned.get("after", {}).get("mean") if isinstance(tuned.get("after"), dict) else None
            if after:
                text += " Dice " + " ".join(f"{r} {after[r]['dice']:.3f}" for r in after)
        if self.note:
            text += f" — {self.note}"
        return text + (" [active]" if self.active else "")


class ModelRegistry:
    """Kept models in `root` (default `models_root()`), plus the shipped model."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else models_root()

    # -- reading ------------------------------------------------------------------------------

    def _active_name(self) -> str:
        path = self.root / ACTIVE_FILE
        if not path.is_file():
            return SHIPPED
        try:
            name = json.loads(path.read_text(encoding="utf-8"))["active"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("%s is unreadable (%s): using the shipped model", path, error)
            return SHIPPED
        return str(name)

    def _kept(self) -> list[tuple[int, str]]:
        folder = self.root / VERSIONS
        if not folder.is_dir():
            return []
        found = []
        for child in folder.iterdir():
            match = _NAME.match(child.name)
            if match and child.is_dir():
                found.append((int(match.group("number")), child.name))
        return sorted(found)

    def _entry(self, name: str, active: str) -> ModelEntry:
        if name == SHIPPED:
            directory = shipped_model_dir()
            return ModelEntry(SHIPPED, directory, read_card(directory), True, active == SHIPPED)
        directory = self.root / VERSIONS / name
        if not _NAME.match(name) or not directory.is_dir():
            known = [SHIPPED] + [n for _, n in self._kept()]
            raise ModelError(f"no model {name!r} in {self.root / VERSIONS}; known: {known}")
        info: dict[str, str] = {}
        try:
            info = json.loads((directory / ENTRY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        return ModelEntry(name, directory, read_card(directory), False, active == name,
                          str(info.get("kept_at", "")), str(info.get("note", "")))

    def entries(self) -> list[ModelEntry]:
        """The shipped model first, then the kept versions oldest to newest (unreadable ones skipped)."""
        active = self.active().name
        out = [self._entry(SHIPPED, active)]
        for _, name in self._kept():
            try:
                out.append(self._entry(name, active))
            except ModelError as error:
                log.warning("skipping kept model %s: %s", name, error)
        return out

    def get(self, name: str) -> ModelEntry:
        return self._entry(name, self.active().name)

    def active(self) -> ModelEntry:
        """The active model; the shipped one when none was chosen or the chosen one is broken."""
        name = self._active_name()
        if name != SHIPPED:
            try:
                return self._entry(name, name)
            except ModelError as error:
                log.warning("active model %s cannot be used (%s): using the shipped model", name, error)
        return self._entry(SHIPPED, SHIPPED)

    def is_protected(self, path: Path) -> bool:
        """True for the shipped model's folder and anything inside the kept versions."""
        resolved = Path(path).resolve()
        for guarded in (shipped_model_dir().resolve(), (self.root / VERSIONS).resolve()):
            if resolved == guarded or guarded in resolved.parents:
                return True
        return False

    # -- changing -----------------------------------------------------------------------------

    def keep(self, model_dir: Path, *, note: str = "", activate: bool = True) -> ModelEntry:
        """Copy a model (e.g. a staged fine-tune) in as a new version; optionally make it active."""
        model_dir = Path(model_dir)
        card = load_model(model_dir).card  # refuse anything that would not load later
        versions = self.root / VERSIONS
        versions.mkdir(parents=True, exist_ok=True)
        number = max((n for n, _ in self._kept()), default=0) + 1
        name = f"v{number}-{card.version}"
        temporary = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=versions))
        try:
            for file_name in (WEIGHTS_FILE, CARD_FILE):
                atomic_write_bytes(temporary / file_name, (model_dir / file_name).read_bytes())
            kept_at = datetime.now(UTC).isoformat(timespec="seconds")
            info = {"kept_at": kept_at, "note": note, "source": str(model_dir.resolve())}
            atomic_write_bytes(temporary / ENTRY_FILE, (json.dumps(info, indent=2) + "\n").encode())
            load_model(temporary)  # the copy is whole
            os.rename(temporary, versions / name)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        log.info("kept %s as %s", model_dir, name)
        if activate:
            self.activate(name)
        return self.get(name)

    def activate(self, name: str) -> ModelEntry:
        """Make `name` ("shipped" or a kept version) the active model."""
        entry = self._entry(name, name)
        if not entry.shipped:
            load_model(entry.directory)  # never activate weights that do not match their card
        atomic_write_bytes(self.root / ACTIVE_FILE, (json.dumps({"active": name}) + "\n").encode())
        log.info("active model: %s (%s)", name, entry.version)
        return entry

    def rollback_to_shipped(self) -> ModelEntry:
        """Make the shipped model active again; kept versions stay available."""
        return self.activate(SHIPPED)

    def remove(self, name: str) -> None:
        """Delete a kept version (never the shipped model, never the active one)."""
        if name == SHIPPED:
            raise ModelError("the shipped model cannot be removed")
        entry = self._entry(name, self.active().name)
        if entry.active:
            raise ModelError(f"{name} is the active model: activate another one before removing it")
        trash = entry.directory.with_name(f".removing-{name}")
        os.rename(entry.directory, trash)  # atomic: the version is gone from the list at once
        shutil.rmtree(trash, ignore_errors=True)

    def new_staging_dir(self) -> Path:
        """A new empty folder for one fine-tune run."""
        folder = self.root / STAGING
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        return Path(tempfile.mkdtemp(prefix=f"run-{stamp}-", dir=folder))

    def discard(self, staging_dir: Path) -> None:
        """Delete a staged run (refuses anything outside ROOT/staging)."""
        staging_dir = Path(staging_dir).resolve()
        if (self.root / STAGING).resolve() not in staging_dir.parents:
            raise ModelError(f"{staging_dir} is not a staged run inside {self.root / STAGING}: not deleted")
        shutil.rmtree(staging_dir, ignore_errors=True)


def active_model_dir() -> Path:
    """The folder of the model a prediction or fine-tune uses when none is named."""
    try:
        return ModelRegistry().active().directory
    except ModelError as error:  # e.g. the shipped model's card is unreadable in a dev checkout
        log.warning("model registry: %s", error)
        return shipped_model_dir()
