"""`brainseg listen --config FILE`: the automatic node (core/listen_node.py): studies in by C-STORE,
SEG and SR back to a PACS node, without anyone clicking; stops on Ctrl+C or SIGTERM."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from typing import Any

from brainseg_gui.cli import common
from brainseg_gui.cli.common import EXIT_OK


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the listen command."""
    p = commands.add_parser(
        "listen", parents=parents, help="run the automatic segmentation node (C-STORE in, SEG + SR out)",
        description=__doc__ + "\n\nFILE (JSON): {\"ae_title\": \"BRAINSEG\", \"port\": 11112, \"host\": \"0.0.0.0\", "
                    "\"work_dir\": \"/srv/brainseg\", \"destination\": \"<node of 'brainseg pacs nodes'>\", "
                    "\"stable_seconds\": 30, \"max_parallel\": 1, \"model\": null, \"device\": \"auto\"}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=common.path_arg, required=True, metavar="FILE")
    p.add_argument("--max-parallel", type=common.bounded_int(1, 64), metavar="N",
                   help="studies segmented at once (default: the config's, else 1)")
    p.set_defaults(run=_run_listen)


def _run_listen(args: argparse.Namespace) -> int:
    from brainseg_gui.core.listen_node import ListenConfig, ListenNode

    common.require_exists(args.config)
    config = ListenConfig.read(args.config)
    if args.max_parallel:
        config = dataclasses.replace(config, max_parallel=args.max_parallel)
    node = ListenNode(config)
    _log_to(config.work_dir / "listen.log")

    def stop(*_: Any) -> None:
        node.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    def ready() -> None:
        print(f"listening as {config.ae_title} on {config.host}:{config.port}; results to "
              f"{node.destination.describe()}; work in {config.work_dir}", flush=True)

    node.serve(on_ready=ready)
    print("stopped", flush=True)
    return EXIT_OK


def _log_to(path: Any) -> None:
    """Every study's line also in WORK/listen.log (received, queued, segmented and sent, or why not)."""
    logger = logging.getLogger("brainseg_gui.core.listen_node")
    for handler in (logging.FileHandler(path, encoding="utf-8"), logging.StreamHandler(sys.stdout)):
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.setLevel(logging.INFO)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not a second time on stderr
