"""What every `brainseg` command shares: exit codes, argument types, the progress bar, small helpers."""

from __future__ import annotations

import argparse
import inspect
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from brainseg_gui.core.errors import BrainSegError

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
CONVENTIONS = ("brats", "brats23", "msd")
DEVICES = ("auto", "cpu", "cuda")


class UsageError(BrainSegError):
    """Bad command-line arguments (argparse's complaints, made one line)."""


class GuiUnavailableError(BrainSegError):
    """The viewer cannot start here (no display, Qt missing)."""


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def require_exists(path: Path) -> None:
    """A missing input path becomes the one-line 'No such file or folder' error."""
    if not path.exists():
        raise FileNotFoundError(2, "No such file or folder", str(path))


def optional(function: Callable[..., Any], **candidates: Any) -> dict[str, Any]:
    """The keyword arguments among `candidates` that `function` takes."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}
    return {name: value for name, value in candidates.items() if name in parameters}


def plain(value: Any) -> Any:
    """JSON-safe scalar: Python float at full precision; NaN/inf become null."""
    if value is None or isinstance(value, (bool, str)):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


class ProgressBar:
    """A `progress(fraction, message)` callback drawing a tqdm bar on stderr, the message as postfix.

    Lines passed to `write` (a case's summary, an epoch's losses and validation Dice) go to stdout
    and the latest also stays in the postfix. The bar is hidden when stderr is not a terminal.
    """

    def __init__(self, description: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=description, disable=None, leave=False,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
        self._message, self._latest = "", ""

    def __call__(self, fraction: float, message: str) -> None:
        self._bar.update(max(0, min(1000, round(fraction * 1000))) - self._bar.n)
        self._message = message or self._message
        self._show()

    def write(self, text: str) -> None:
        self._bar.write(text, file=sys.stdout)
        self._latest = text
        self._show()

    def _show(self) -> None:
        parts = [part for part in (self._message, self._latest) if part]
        self._bar.set_postfix_str(" | ".join(dict.fromkeys(parts)), refresh=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._bar.close()
