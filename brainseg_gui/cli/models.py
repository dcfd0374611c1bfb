"""`brainseg models`: list the models you can use, choose the active one, roll back to the shipped one."""

from __future__ import annotations

import argparse

from brainseg_gui.cli import common
from brainseg_gui.cli.common import EXIT_OK


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the models command."""
    p = commands.add_parser(
        "models", parents=parents, help="list, activate or roll back your models",
        description="The shipped model and the fine-tuned models kept in your models folder "
                    "($BRAINSEG_MODELS_DIR, else $XDG_DATA_HOME/brainseg/models). One is active: "
                    "predictions and fine-tunes use it when no model is named.")
    p.add_argument("action", nargs="?", default="list", choices=("list", "activate", "rollback", "remove"),
                   help="list (default); activate NAME; rollback (to the shipped model); remove NAME")
    p.add_argument("name", nargs="?", type=common.model_name, help="a model name from the list (e.g. v2-1a2b3c4d5e6f)")
    p.set_defaults(run=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from brainseg_gui.cli.common import UsageError
    from brainseg_gui.ml.model_registry import ModelRegistry

    registry = ModelRegistry()
    if args.action in ("activate", "remove") and not args.name:
        raise UsageError(f"'brainseg models {args.action}' needs a model NAME (see 'brainseg models list')")
    if args.action == "activate":
        entry = registry.activate(args.name)
        print(f"active model: {entry.name} ({entry.version})")
    elif args.action == "rollback":
        entry = registry.rollback_to_shipped()
        print(f"active model: the shipped model ({entry.version})")
    elif args.action == "remove":
        registry.remove(args.name)
        print(f"removed {args.name}")
    else:
        print(f"models folder: {registry.root}")
        usable, broken = registry.listing()
        for entry in [*usable, *broken]:  # a broken kept version is listed as broken, with why
            print(entry.describe())
    return EXIT_OK
