"""`brainseg pacs`: keep PACS nodes, find studies, retrieve one, send results back.

    brainseg pacs nodes [list]
    brainseg pacs nodes add NAME --dicomweb URL [--auth basic|bearer --user U] [--ca-bundle PEM]
    brainseg pacs nodes add NAME --dimse AET@HOST:PORT [--our-aet BRAINSEG]
    brainseg pacs nodes remove NAME | test NAME
    brainseg pacs find --node NAME [--patient-name ..] [--patient-id ..] [--accession ..] [--from D] [--to D]
                       [--modality MR] | --study UID (its series)
    brainseg pacs get STUDY_UID --node NAME -o DIR [--series UID ...]
    brainseg pacs send DIR --to NAME [--yes]

A password or token is never an argument (it would show in the process list and the shell's history):
it is asked for, read from stdin with --secret-stdin, or taken from $BRAINSEG_PACS_SECRET.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from brainseg_gui.cli import common
from brainseg_gui.cli.common import EXIT_OK, UsageError

SECRET_ENV = "BRAINSEG_PACS_SECRET"


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the pacs command and its subcommands."""
    pacs = commands.add_parser("pacs", parents=parents, help="PACS nodes: find, retrieve, send back",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = pacs.add_subparsers(dest="pacs_action", metavar="ACTION", required=True)

    nodes = actions.add_parser("nodes", parents=parents, help="list, add, remove or test PACS nodes")
    nodes.add_argument("action", nargs="?", default="list", choices=("list", "add", "remove", "test"))
    nodes.add_argument("name", nargs="?", help="the node's name (letters, digits, . _ -)")
    nodes.add_argument("--dicomweb", metavar="URL", help="DICOMweb base URL (e.g. https://pacs/dicom-web)")
    nodes.add_argument("--auth", choices=("none", "basic", "bearer"), default="none")
    nodes.add_argument("--user", default="", help="user name for basic authentication")
    nodes.add_argument("--ca-bundle", type=common.path_arg, help="PEM file of the CA that signed the server's certificate")
    nodes.add_argument("--dimse", metavar="AET@HOST:PORT", help="a DIMSE node: its AE title, host and port")
    nodes.add_argument("--our-aet", default="BRAINSEG", help="our AE title towards a DIMSE node (default BRAINSEG)")
    nodes.add_argument("--secret-stdin", action="store_true", help="read the password or token from stdin")
    nodes.add_argument("--replace", action="store_true", help="replace a node of the same name")
    nodes.set_defaults(run=_run_nodes)

    find = actions.add_parser("find", parents=parents, help="find studies (or one study's series) on a node")
    find.add_argument("--node", required=True)
    find.add_argument("--patient-name", default="", help="wildcards * and ? allowed")
    find.add_argument("--patient-id", default="")
    find.add_argument("--accession", default="")
    find.add_argument("--from", dest="date_from", default="", metavar="DATE", help="study date from (YYYY-MM-DD)")
    find.add_argument("--to", dest="date_to", default="", metavar="DATE", help="study date to (YYYY-MM-DD)")
    find.add_argument("--modality", default="", help="e.g. MR")
    find.add_argument("--study", metavar="UID", help="list this study's series instead")
    find.add_argument("--json", action="store_true", help="print JSON instead of a table")
    find.set_defaults(run=_run_find)

    get = actions.add_parser("get", parents=parents, help="retrieve a study into a folder (resumable)")
    get.add_argument("study_uid", metavar="STUDY_UID")
    get.add_argument("--node", required=True)
    get.add_argument("-o", "--output", type=common.path_arg, required=True, help="a new or empty folder")
    get.add_argument("--series", nargs="+", metavar="UID", help="only these series")
    get.set_defaults(run=_run_get)

    send = actions.add_parser("send", parents=parents, help="send a folder's DICOM results (SEG, SR) to a node")
    send.add_argument("folder", type=common.path_arg, metavar="DIR")
    send.add_argument("--to", required=True, metavar="NODE")
    send.add_argument("--yes", action="store_true", help="send without asking")
    send.set_defaults(run=_run_send)


def _store() -> Any:
    from brainseg_gui.core.pacs_nodes import NodeStore

    return NodeStore()


def _connection(name: str) -> Any:
    from brainseg_gui.core.pacs_connect import connect

    store = _store()
    node = store.get(name)
    return connect(node, store.secret(node))


def _run_nodes(args: argparse.Namespace) -> int:
    from brainseg_gui.core.pacs_nodes import PacsNode
    from brainseg_gui.core.pacs_secrets import describe_store

    store = _store()
    if args.action in ("add", "remove", "test") and not args.name:
        raise UsageError(f"'brainseg pacs nodes {args.action}' needs a node NAME")
    if args.action == "list":
        nodes = store.nodes()
        print(f"nodes file: {store.path}; secrets: {describe_store(store.root)}")
        for node in nodes:
            print(node.describe())
        if not nodes:
            print("no nodes yet: brainseg pacs nodes add NAME --dicomweb URL | --dimse AET@HOST:PORT")
    elif args.action == "remove":
        store.remove(args.name)
        print(f"removed {args.name}")
    elif args.action == "test":
        started = time.perf_counter()
        answer = _connection(args.name).echo()
        print(f"ok: {answer} ({time.perf_counter() - started:.2f} s)")
    else:
        if bool(args.dicomweb) == bool(args.dimse):
            raise UsageError("give --dicomweb URL or --dimse AET@HOST:PORT (one of them)")
        if args.dicomweb:
            node = PacsNode(args.name, "dicomweb", url=args.dicomweb, auth=args.auth, username=args.user,
                            ca_bundle=str(args.ca_bundle.expanduser().resolve()) if args.ca_bundle else "")
        else:
            ae_title, host, port = _dimse_address(args.dimse)
            node = PacsNode(args.name, "dimse", ae_title=ae_title, host=host, port=port, our_ae_title=args.our_aet)
        secret = _secret(args, node) if node.needs_secret else None
        store.add(node, secret=secret, replace=args.replace)
        print(f"added {node.describe()}")
    return EXIT_OK


def _dimse_address(text: str) -> tuple[str, str, int]:
    title, _, rest = text.partition("@")
    host, _, port = rest.rpartition(":")
    if not title or not host or not port.isdigit():
        raise UsageError(f"--dimse {text!r}: expected AET@HOST:PORT, e.g. ORTHANC@pacs.hospital.org:4242")
    return title, host, int(port)


def _secret(args: argparse.Namespace, node: Any) -> str:
    what = "password" if node.auth == "basic" else "token"
    if args.secret_stdin:
        secret = sys.stdin.readline().rstrip("\n")
    elif os.environ.get(SECRET_ENV):
        secret = os.environ[SECRET_ENV]
    elif sys.stdin.isatty():
        secret = getpass.getpass(f"{what} for {node.name}: ")
    else:
        raise UsageError(f"node {node.name} needs a {what}: give it on stdin with --secret-stdin or in ${SECRET_ENV}")
    if not secret:
        raise UsageError(f"an empty {what} for {node.name}")
    return secret


def _run_find(args: argparse.Namespace) -> int:
    from brainseg_gui.core.pacs_client import StudyQuery

    connection = _connection(args.node)
    if args.study:
        rows: list[Any] = connection.find_series(args.study)
        if args.json:
            print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
            return EXIT_OK
        print(f"{'number':>6}  {'modality':8}  {'images':>6}  {'description':40}  series UID")
        for row in sorted(rows, key=lambda r: (r.number is None, r.number or 0)):
            print(f"{row.number if row.number is not None else '':>6}  {row.modality:8}  "
                  f"{row.instance_count if row.instance_count is not None else '?':>6}  {row.description[:40]:40}  "
                  f"{row.series_uid}")
        return EXIT_OK
    query = StudyQuery(args.patient_name, args.patient_id, args.accession, args.date_from, args.date_to, args.modality)
    rows = connection.find_studies(query)
    if args.json:
        print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
        return EXIT_OK
    print(f"{'date':8}  {'patient':24}  {'patient ID':12}  {'accession':12}  {'modalities':10}  {'series':>6}  "
          f"{'description':30}  study UID")
    for row in rows:
        series = row.series_count if row.series_count is not None else "?"
        print(f"{row.study_date:8}  {row.patient_name[:24]:24}  {row.patient_id[:12]:12}  {row.accession[:12]:12}  "
              f"{','.join(row.modalities)[:10]:10}  {series:>6}  {row.description[:30]:30}  {row.study_uid}")
    print(f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'} found on {args.node}")
    return EXIT_OK


def _run_get(args: argparse.Namespace) -> int:
    from brainseg_gui.core.errors import Cancelled
    from brainseg_gui.core.pacs_cache import checked_uid, retrieve_study

    checked_uid(args.study_uid, "study")
    output = args.output
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"{output} exists and is not an empty folder; give a new folder")
    store = _store()
    connection = _connection(args.node)
    with common.ProgressBar(f"retrieving {args.study_uid[-12:]}") as bar:
        try:
            result = retrieve_study(connection, args.study_uid, series_uids=args.series, limit_gb=store.cache_limit_gb,
                                    progress=bar)
        except (KeyboardInterrupt, Cancelled):
            raise Cancelled("retrieve interrupted; what arrived is kept in the cache: run the same command again "
                            "to fetch only the rest") from None
    _copy_study(result.folder, output, [series.series_uid for series in result.series])
    print(f"{result.instances} images of {len(result.series)} series in {output} ({result.fetched} fetched now, "
          f"the rest from the cache {result.folder})")
    if result.evicted:
        print(f"evicted from the cache to stay within {store.cache_limit_gb:g} GB: {', '.join(result.evicted)}")
    print(f"open it with: brainseg {output}")
    return EXIT_OK


def _copy_study(cached: Path, output: Path, series: list[str]) -> None:
    """The cached study's chosen series into `output` (hard links where the file system allows)."""
    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for uid in series:
            (staging / uid).mkdir(parents=True)
            for source in (cached / uid).glob("*.dcm"):
                try:
                    os.link(source, staging / uid / source.name)
                except OSError:
                    shutil.copy2(source, staging / uid / source.name)
        if output.exists():
            output.rmdir()  # empty, checked before the retrieve
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _run_send(args: argparse.Namespace) -> int:
    from brainseg_gui.core.dicom_sources import is_part10
    from brainseg_gui.core.pacs_client import read_datasets, text_of
    from brainseg_gui.core.pacs_send import send_files, sent_log_path

    common.require_exists(args.folder)
    folder = args.folder
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_part10(p)) if folder.is_dir() else \
        ([folder] if is_part10(folder) else [])
    if not files:
        raise UsageError(f"{folder} holds no DICOM file to send")
    datasets = read_datasets(files)
    store = _store()
    print(f"to {store.get(args.to).describe()}:")
    for path, dataset in zip(files, datasets):
        print(f"  {path.name}: {text_of(dataset, 'Modality') or '?'} {text_of(dataset, 'SeriesDescription')!r} "
              f"patient {text_of(dataset, 'PatientID')!r}, study {text_of(dataset, 'StudyInstanceUID')}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("sending to a PACS needs a confirmation: add --yes")
        if input(f"send {len(files)} file(s) to {args.to}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing sent")
            return EXIT_OK
    sent = send_files(args.to, files, store, datasets=datasets)
    for uid in sent:
        print(f"sent {uid}")
    print(f"{len(sent)} instance(s) stored on {args.to}; logged in {sent_log_path()}")
    return EXIT_OK
