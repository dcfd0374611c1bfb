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


def bounded_float(low: float, high: float, *, unit: str = "", open_low: bool = False,
                  open_high: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in [low, high] (an end is left out when open); the message
    shows the value exactly as typed."""
    left, right = "(" if open_low else "[", ")" if open_high else "]"
    span = f"{left}{low:g}, {high:g}{right}{f' {unit}' if unit else ''}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {span}, got {text!r}") from None
        inside = (math.isfinite(value) and (low < value if open_low else low <= value)
                  and (value < high if open_high else value <= high))
        if not inside:
            raise argparse.ArgumentTypeError(f"expected a number in {span}, got {text}")
        return value

    return parse


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """argparse type: a whole number in [low, high]; the message shows the value exactly as typed."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number {low}..{high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number {low}..{high}, got {text}")
        return value

    return parse


#: --resolution: finer than 0.3 mm allocates more than any computer has; coarser than 10 mm sees no tumour.
MIN_RESOLUTION_MM, MAX_RESOLUTION_MM = 0.3, 10.0
resolution_mm = bounded_float(MIN_RESOLUTION_MM, MAX_RESOLUTION_MM, unit="mm")
#: --patch-size: a training patch's edge in voxels (one patch of 256^3 with 4 channels is 1 GiB).
patch_size = bounded_int(8, 256)
#: --batch-size: patches per step.
batch_size = bounded_int(1, 512)
#: --epochs and --steps-per-epoch: enough for any real schedule, and never a run that cannot end.
epochs = bounded_int(1, 100_000)
steps = bounded_int(1, 1_000_000)
#: --seed: what numpy and torch accept.
seed = bounded_int(0, 2**32 - 1)
#: --width-scale: 4 makes every network ~16 times its default size (~25 M parameters).
width_scale = bounded_float(0.0, 4.0, open_low=True)
#: --fractional-threshold: where the brain surface stops, strictly between 0 and 1.
fraction_open = bounded_float(0.0, 1.0, open_low=True, open_high=True)
#: --brain-adjust: grow or shrink the brain by at most 50 mm (more would be a different organ).
brain_adjust_mm = bounded_float(-50.0, 50.0, unit="mm")


def plain_name_arg(what: str) -> Callable[[str], str]:
    """argparse type: a name that can name files on its own (no '/', '..', control characters)."""

    def parse(text: str) -> str:
        from brainseg_gui.core.read_guard import plain_name

        try:
            return plain_name(text, what)
        except BrainSegError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


#: --case-id: the prefix of every output file's name.
case_id = plain_name_arg("case id")
#: a model name from `brainseg models list`.
model_name = plain_name_arg("model name")


def path_arg(text: str) -> Path:
    """A path argument; an empty one is refused, since Path('') would quietly mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


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
