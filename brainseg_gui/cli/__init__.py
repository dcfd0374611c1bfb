"""The `brainseg` command: the viewer, and info / evaluate / predict / train / ... for the shell.

Thin by design (DESIGN.md): argument handling and printing only; the work is done by `core` and `ml`.
Each command lives in its own module here with a `register(commands, parents)` function. It starts
fast: numpy, torch, Qt and SimpleITK are imported inside the command that needs them.
A user's mistake (bad path, corrupt file, unknown labels, mismatched grids, ...) becomes ONE line
on stderr, `brainseg: error: ...`, and exit status 2 (130 for Ctrl-C), never a traceback; `-v`
shows debug logs and tracebacks. Nothing is written when a command fails.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from brainseg_gui import RESEARCH_USE_NOTE, __version__
from brainseg_gui.cli import desktop as desktop_options
from brainseg_gui.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    UsageError,
)
from brainseg_gui.cli.logs import (
    describe_error,
    fail,
    named_failure,
    silence_stdout,
    start_logging,
    stop_logging,
)
from brainseg_gui.core.errors import BrainSegError

log = logging.getLogger(__name__)

#: The modules of brainseg_gui.cli that add commands, in the order `--help` lists them.
COMMAND_MODULES = ("study", "prepare", "predict", "refine", "train", "crossval", "finetune", "models", "export",
                   "experiment", "pacs", "listen")
#: Where the shipped model is installed, and its card's file name (read without importing torch).
SHIPPED_PACKAGE, CARD_FILE, WEIGHTS_FILE = "brainseg_gui.shipped_model", "card.json", "weights.safetensors"

__all__ = ["UsageError", "build_parser", "main", "version_text"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `brainseg` with `argv` (default: sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    argv = _with_default_command(parser, list(sys.argv[1:] if argv is None else argv))
    doing = _doing(parser, argv)
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return fail(str(error), EXIT_USAGE)
    except SystemExit as done:  # --help, --version
        return int(done.code or 0) if not isinstance(done.code, str) else EXIT_USAGE
    handler = start_logging(args.verbose, live=getattr(args, "live_logs", False))
    completed = False
    try:
        status = int(args.run(args) or EXIT_OK)
        completed = True
        return status
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # `brainseg info ... | head`: the reader left; say nothing more
        silence_stdout()
        completed = True
        return EXIT_BROKEN_PIPE
    except (BrainSegError, OSError, MemoryError) as error:
        log.debug("details of the error below", exc_info=True)
        return fail(named_failure(error, doing) or describe_error(error), EXIT_USAGE)
    except Exception as error:  # a bug: say so in one line; -v shows where
        named = named_failure(error, doing)  # torch's out-of-memory is a RuntimeError
        if named is not None:
            log.debug("details of the error below", exc_info=True)
            return fail(named, EXIT_USAGE)
        log.debug("unexpected error", exc_info=True)
        hint = "" if args.verbose else " (run with -v for details)"
        return fail(f"unexpected {type(error).__name__}: {describe_error(error)}{hint}", EXIT_UNEXPECTED)
    finally:
        # info prints the study's warnings itself; other commands show the held ones on success.
        stop_logging(handler, succeeded=completed and not getattr(args, "warnings_in_output", False))


def _doing(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """What the user asked for, for a message: "run 'brainseg predict'"."""
    names = _command_names(parser)
    name = next((token for token in argv if token in names), None)
    return f"run 'brainseg {name}'" if name else "run brainseg"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (imports nothing heavy)."""
    verbose = _Parser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                         help="show debug logs and tracebacks")
    parser = _Parser(
        prog="brainseg",
        description="Brain-tumour MRI segmentation: viewer, editor and command line. " + RESEARCH_USE_NOTE,
        epilog="Without a command, `brainseg [STUDY]` opens the viewer (on the demo study when none is given).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="show debug logs and tracebacks")
    parser.add_argument("--version", action=_VersionAction, help="print the app and model versions")
    desktop_options.add_options(parser)  # --install-desktop / --uninstall-desktop
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(commands, [verbose])
    return parser


def _with_default_command(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`brainseg [STUDY]` means `brainseg gui [STUDY]`; help and --version stay top-level."""
    names = _command_names(parser)
    index = len(argv)  # where the study (or nothing) begins
    for position, token in enumerate(argv):
        if token in ("-h", "--help", "--version"):
            return argv
        if token == "--" or not token.startswith("-"):
            if token in names:
                return argv
            index = position
            break
    # Options before it that only `gui` knows (`brainseg --no-welcome`) go after the inserted command.
    top_level = {option for action in parser._actions for option in action.option_strings}
    before = argv[:index]
    return [*(t for t in before if t in top_level), "gui", *(t for t in before if t not in top_level), *argv[index:]]


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def version_text() -> str:
    """App version and the shipped model's version, read from its card without importing torch."""
    return f"brainseg {__version__}\nmodel: {shipped_model_summary()}"


def shipped_model_summary() -> str:
    """One line naming the shipped model (version, architecture, date), or why there is none."""
    from importlib import resources

    try:
        folder = resources.files(SHIPPED_PACKAGE)
        card = json.loads(folder.joinpath(CARD_FILE).read_text(encoding="utf-8"))
        has_weights = folder.joinpath(WEIGHTS_FILE).is_file()
    except (ImportError, OSError, ValueError):
        return "no model installed"
    if not isinstance(card, dict):
        return "no model installed (unreadable card)"
    details = ", ".join(str(card[k]) for k in ("architecture", "created") if card.get(k))
    text = str(card.get("version") or "unknown version") + (f" ({details})" if details else "")
    return text if has_weights else f"{text}, but its weights are missing"
