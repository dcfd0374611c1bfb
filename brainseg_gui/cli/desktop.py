"""`brainseg --install-desktop` / `--uninstall-desktop`: top-level options that act and exit, like --version.

They register (or remove) the menu entry, the icon and the study MIME types for the current user
(brainseg_gui.desktop), so double-clicking a .nii, .nii.gz, .nrrd or .mha file opens it in BrainSeg.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from brainseg_gui.cli.common import EXIT_OK, EXIT_USAGE
from brainseg_gui.core.errors import BrainSegError


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add the two options to the top-level `brainseg` parser."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--install-desktop", action=_DesktopAction, install=True,
                       help="add BrainSeg to the desktop menu and open .nii/.nii.gz/.nrrd/.mha files with it "
                            "(current user, Linux)")
    group.add_argument("--uninstall-desktop", action=_DesktopAction, install=False,
                       help="remove what --install-desktop added")


class _DesktopAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, *, install: bool, **kwargs: Any) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.install = install

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        from brainseg_gui import desktop

        try:
            if self.install:
                files = desktop.install()
                verb = "installed"
            else:
                files = desktop.uninstall()
                verb = "removed"
        except BrainSegError as error:
            parser.exit(EXIT_USAGE, f"{parser.prog}: error: {error}\n")
        for path in files:
            print(f"{verb} {path}")
        if self.install:
            print("BrainSeg is in the desktop menu; double-clicked .nii, .nii.gz, .nrrd and .mha files open in it")
        elif not files:
            print("nothing to remove: the desktop files were not installed")
        parser.exit(EXIT_OK)
