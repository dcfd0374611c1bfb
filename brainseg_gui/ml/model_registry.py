"""The per-user models folder: kept fine-tuned versions, which one is active, rollback to the shipped one.

    ROOT/                         $BRAINSEG_MODELS_DIR, else $XDG_DATA_HOME/brainseg/models,
                                  else ~/.local/share/brainseg/models
      active.json                 {"active": "<name>"} ("shipped" or a kept version); written atomically
      versions/<name>/            a kept model: card.json + weights.safetensors + entry.json (when, note)
      staging/<stamp>/            fine-tune runs in progress or waiting for keep/discard

A kept version is written into a hidden temporary folder (its files as one core.atomic.FileSet),
checked (it must load), then renamed into place, so a failure never leaves half a version. The
shipped model is read where it is installed and never written: it cannot be kept over, removed, or
chosen as a fine-tune's output.

Corrupt state degrades, it never blocks: the pointer and the entries are read as small regular files
only (core.read_guard); a kept version whose card or weights are broken is listed as broken; an
active pointer naming a missing or broken model (or one that is not a regular file) falls back to
the shipped model with one warning that says why.
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
from typing import TYPE_CHECKING, Any

from brainseg_gui.core.atomic import FileSet, write_atomic
from brainseg_gui.core.errors import BrainSegError, ModelError, StudyLoadError
from brainseg_gui.core.read_guard import plain_name, read_small_bytes, read_small_text
from brainseg_gui.ml.model_card import CARD_FILE, MAX_CARD_BYTES, MAX_WEIGHTS_BYTES, WEIGHTS_FILE, ModelCard
from brainseg_gui.ml.shipped import shipped_model_dir

if TYPE_CHECKING:
    from brainseg_gui.ml.checkpoint import LoadedModel

# ml/checkpoint (torch) is imported where a card's network is checked or a model loaded, not here:
# which model is active is read without torch by the OpenVINO prediction path (ml/openvino_predictor).

log = logging.getLogger(__name__)

MODELS_DIR_ENV = "BRAINSEG_MODELS_DIR"
SHIPPED = "shipped"
ACTIVE_FILE = "active.json"
ENTRY_FILE = "entry.json"
VERSIONS = "versions"
STAGING = "staging"
_NAME = re.compile(r"^v(?P<number>\d+)-[0-9a-f]{12}$")
#: The largest active.json or entry.json read.
MAX_POINTER_BYTES = 64 << 10


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


@dataclass(frozen=True)
class BrokenEntry:
    """A kept version that cannot be used (unreadable card, weights that do not fit it, ...)."""

    name: str
    directory: Path
    problem: str

    def describe(self) -> str:
        return f"{self.name} [broken: {self.problem}]"


class ModelRegistry:
    """Kept models in `root` (default `models_root()`), plus the shipped model."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else models_root()

    # -- reading ------------------------------------------------------------------------------

    def active_name(self) -> tuple[str, str]:
        """(the name the pointer gives, or SHIPPED; why the pointer cannot be used, or "")."""
        path = self.root / ACTIVE_FILE
        if not os.path.lexists(path):
            return SHIPPED, ""
        try:
            data = json.loads(read_small_text(path, "active-model pointer", MAX_POINTER_BYTES))
            name = data["active"]
            if not isinstance(name, str):
                raise TypeError(f"'active' is {name!r}, not a name")
            plain_name(name, "model name")
        except StudyLoadError as error:
            return SHIPPED, str(error)
        except (BrainSegError, ValueError, KeyError, TypeError, RecursionError) as error:
            return SHIPPED, f"{path} is not a BrainSeg active-model pointer ({type(error).__name__}: {error})"
        return name, ""

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

    def directory_of(self, name: str) -> Path:
        """The folder of the kept version `name` (ModelError naming the known ones when there is none)."""
        plain_name(name, "model name")
        directory = self.root / VERSIONS / name
        if not _NAME.match(name) or not directory.is_dir():
            known = [SHIPPED] + [n for _, n in self._kept()]
            raise ModelError(f"no model {name!r} in {self.root / VERSIONS}; known: {known}")
        return directory

    def _entry(self, name: str, active: str, *, check_weights: bool = False) -> ModelEntry:
        """The entry called `name`; with `check_weights`, a kept version's weights must fit its card."""
        from brainseg_gui.ml.checkpoint import check_model, read_card

        plain_name(name, "model name")
        if name == SHIPPED:
            directory = shipped_model_dir()
            return ModelEntry(SHIPPED, directory, read_card(directory), True, active == SHIPPED)
        directory = self.directory_of(name)
        card = check_model(directory) if check_weights else read_card(directory)
        info = _entry_info(directory / ENTRY_FILE)
        return ModelEntry(name, directory, card, False, active == name,
                          str(info.get("kept_at", "")), str(info.get("note", "")))

    def listing(self) -> tuple[list[ModelEntry], list[BrokenEntry]]:
        """(usable models: the shipped one first, then kept versions oldest to newest; broken kept ones)."""
        active = self.active().name
        out = [self._entry(SHIPPED, active)]
        broken = []
        for _, name in self._kept():
            try:
                out.append(self._entry(name, active, check_weights=True))
            except ModelError as error:
                broken.append(BrokenEntry(name, self.root / VERSIONS / name, str(error)))
        return out, broken

    def entries(self) -> list[ModelEntry]:
        """The usable models (see `listing`); each broken kept version is named in a warning."""
        out, broken = self.listing()
        for entry in broken:
            log.warning("skipping kept model %s: %s", entry.name, entry.problem)
        return out

    def get(self, name: str) -> ModelEntry:
        return self._entry(name, self.active().name)

    def active(self) -> ModelEntry:
        """The active model; the shipped one when none was chosen or the chosen one is broken."""
        return self.resolve_active()[0]

    def resolve_active(self) -> tuple[ModelEntry, str]:
        """(the active model, "") or, when the chosen one cannot be used, (the shipped model, why).

        The reason is also logged once as a warning; the caller may show it (the GUI does).
        """
        name, problem = self.active_name()
        if name != SHIPPED:
            try:
                return self._entry(name, name, check_weights=True), ""
            except BrainSegError as error:
                problem = f"the active model {name} cannot be used ({error})"
        if problem:
            problem = f"{problem}: using the shipped model"
            log.warning("%s", problem)
        return self._entry(SHIPPED, SHIPPED), problem

    def load_active(self, device: str | Any = "cpu") -> tuple[LoadedModel, str]:
        """The active model loaded, falling back to the shipped one when it does not load (as
        `resolve_active` decides); returns (model, why the shipped one is used, or "").

        The weights are read and checked once, by `load_model`, not first by `resolve_active`'s check.
        """
        from brainseg_gui.ml.checkpoint import load_model

        name, problem = self.active_name()
        if name != SHIPPED:
            try:
                entry = self._entry(name, name)  # a kept version by that name (its card, not its weights)
                return load_model(entry.directory, device), ""
            except BrainSegError as error:
                problem = f"the active model {name} cannot be used ({error})"
        if problem:
            problem = f"{problem}: using the shipped model"
            log.warning("%s", problem)
        return load_model(shipped_model_dir(), device), problem

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
        from brainseg_gui.ml.checkpoint import load_model

        model_dir = Path(model_dir)
        card = load_model(model_dir).card  # refuse anything that would not load later
        versions = self.root / VERSIONS
        versions.mkdir(parents=True, exist_ok=True)
        number = max((n for n, _ in self._kept()), default=0) + 1
        name = f"v{number}-{card.version}"
        temporary = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=versions))
        try:
            kept_at = datetime.now(UTC).isoformat(timespec="seconds")
            info = {"kept_at": kept_at, "note": note, "source": str(model_dir.resolve())}
            with FileSet() as files:
                for file_name, limit in ((WEIGHTS_FILE, MAX_WEIGHTS_BYTES), (CARD_FILE, MAX_CARD_BYTES)):
                    files.add(temporary / file_name, _read(model_dir / file_name, limit))
                files.add(temporary / ENTRY_FILE, json.dumps(info, indent=2) + "\n")
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
        # never activate weights that do not match their card (checked without building the network)
        entry = self._entry(name, name, check_weights=True)
        write_atomic(self.root / ACTIVE_FILE, json.dumps({"active": name}) + "\n")
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
        shutil.rmtree(trash, ignore_errors=True)  # left by a removal that was killed
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


def _entry_info(path: Path) -> dict[str, Any]:
    """A kept version's entry.json (when, note); {} when it is missing or unreadable (it is optional)."""
    if not os.path.lexists(path):
        return {}
    try:
        data = json.loads(read_small_text(path, "model entry", MAX_POINTER_BYTES))
    except (BrainSegError, ValueError, RecursionError) as error:
        log.warning("ignoring the unreadable %s: %s", path, error)
        return {}
    return data if isinstance(data, dict) else {}


def _read(path: Path, limit: int) -> bytes:
    try:
        return read_small_bytes(path, "model file", limit)
    except StudyLoadError as error:
        raise ModelError(str(error)) from None


def load_active_model(device: str | Any = "cpu") -> tuple[LoadedModel, str]:
    """The user's active model loaded, or the shipped one with the reason (see ModelRegistry.load_active)."""
    return ModelRegistry().load_active(device)


def active_model_dir() -> Path:
    """The folder of the model a prediction or fine-tune uses when none is named."""
    try:
        return ModelRegistry().active().directory
    except ModelError as error:  # e.g. the shipped model's card is unreadable in a dev checkout
        log.warning("model registry: %s", error)
        return shipped_model_dir()
