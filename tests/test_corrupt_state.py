"""Corrupt state degrades instead of blocking; options and model cards are bounded; every failure is named.

The per-user state (models folder, active-model pointer, model cards and weights, edit journals) can
be damaged while any checksum still holds. Loading then falls back to the shipped model with one
message, a journal that cannot be restored is moved aside (never deleted), nothing blocks on a pipe
or inflates without bound, and the command line answers every such failure, and every option out of
range, with exit status 2 and one line.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainseg_gui.cli import study as cli_study
from brainseg_gui.core.edit_session import EditSession
from brainseg_gui.core.errors import ModelError
from brainseg_gui.core.journal import (
    END,
    FILE_MAGIC,
    PART,
    SET_ASIDE_TAG,
    Journal,
    JournalError,
    _record,
    read_journal,
    read_or_set_aside,
    recover,
    recover_or_set_aside,
    replay,
)
from brainseg_gui.core.read_guard import UnsafeNameError
from brainseg_gui.ml import checkpoint, model_registry
from brainseg_gui.ml.checkpoint import CARD_FILE, ModelCard, check_model, load_model, read_card, save_model
from brainseg_gui.ml.model_registry import ModelRegistry
from brainseg_gui.ml.networks import build_generator
from brainseg_gui.ml.shipped import shipped_model_dir
from tests.cli_support import one_error_line, run
from tests.core.journal_child import edit, start_mask

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"in_channels": 4, "out_channels": 3, "widths": [2, 4], "deep_supervision": False}


def tiny_model(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    save_model(folder, build_generator("generator3d", CONFIG),
               ModelCard(architecture="generator3d", config=CONFIG, resolution_mm=2.0))
    return folder


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv(model_registry.MODELS_DIR_ENV, str(tmp_path / "models"))
    return ModelRegistry()


@pytest.fixture
def active(registry: ModelRegistry, tmp_path: Path):
    """A kept tiny model, made active."""
    return registry.keep(tiny_model(tmp_path / "tuned"), note="site A")


def shipped_version() -> str:
    return read_card(shipped_model_dir()).version


def card_data(entry) -> dict:
    return json.loads((entry.directory / CARD_FILE).read_text())


# ---------------------------------------------------------------------------------- models: fallback


@pytest.mark.parametrize("damage", [
    lambda card: "{not json",
    lambda card: json.dumps({**card, "config": {**card["config"], "widths": "wide"}}),
    lambda card: json.dumps({**card, "training": ["not", "an", "object"]}),
    lambda card: json.dumps({**card, "architecture": ["generator3d"]}),
    lambda card: json.dumps({key: value for key, value in card.items() if key != "config"}),
    lambda card: json.dumps([card]),
], ids=["bad-json", "wrong-type-widths", "wrong-type-training", "unhashable-architecture", "missing-key",
        "not-an-object"])
def test_a_corrupt_card_of_the_active_model_falls_back_with_one_message(registry, active, damage, capsys,
                                                                       caplog) -> None:
    from brainseg_gui.ml.predictor import Predictor

    (active.directory / CARD_FILE).write_text(damage(card_data(active)))
    entry, problem = registry.resolve_active()
    assert entry.shipped and active.name in problem and "using the shipped model" in problem
    predictor = Predictor.from_model_dir(None, device="cpu")  # what `predict` and the GUI do
    assert predictor.model_version == shipped_version()
    assert active.name in predictor.model_note

    status, out, err = run(capsys, "models", "list")
    assert status == 0 and "Traceback" not in err
    assert f"{active.name} [broken: " in out  # listed as broken, with why
    assert f"shipped model {shipped_version()} [active]" in out


def test_an_active_pointer_to_a_missing_or_malformed_model_falls_back(registry, active) -> None:
    pointer = registry.root / model_registry.ACTIVE_FILE
    for text in ('{"active": "v9-000000000000"}', '{"active": "../../x"}', '{"active": 7}', "[1, 2]", "{oops",
                 '{"active": "' + "v1-" + "a" * 200 + '"}'):
        pointer.write_text(text)
        entry, problem = registry.resolve_active()
        assert entry.shipped and "using the shipped model" in problem, text
        assert model_registry.active_model_dir() == shipped_model_dir()
    pointer.write_text(json.dumps({"active": active.name}))
    assert registry.resolve_active() == (registry.get(active.name), "")


def test_weights_broken_after_the_check_still_fall_back_when_loading(registry, active,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    entry = registry.get(active.name)  # the check passed; then the weights broke before the load
    monkeypatch.setattr(ModelRegistry, "resolve_active", lambda self: (entry, ""))
    (active.directory / checkpoint.WEIGHTS_FILE).write_bytes(b"\0" * 100)
    loaded, problem = registry.load_active("cpu")
    assert loaded.card.version == shipped_version()
    assert active.name in problem and "content hash" in problem


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_as_active_pointer_or_card_never_blocks(registry, active, tmp_path: Path) -> None:
    pointer = registry.root / model_registry.ACTIVE_FILE
    pointer.unlink()
    os.mkfifo(pointer)
    entry, problem = registry.resolve_active()
    assert entry.shipped and "pipe (FIFO)" in problem
    env = {**os.environ, model_registry.MODELS_DIR_ENV: str(registry.root)}
    done = subprocess.run([sys.executable, "-m", "brainseg_gui", "models", "list"], capture_output=True,
                          text=True, timeout=120, env=env, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert "[active]" in done.stdout and "pipe (FIFO)" in done.stderr

    card = active.directory / CARD_FILE
    card.unlink()
    os.mkfifo(card)
    with pytest.raises(ModelError, match="pipe"):
        read_card(active.directory)


# ------------------------------------------------------------------------ models: cards checked first


def _no_build(*_args, **_kwargs):
    raise AssertionError("the network was built before the card was checked")


def test_a_card_that_does_not_fit_its_weights_is_refused_before_building(active, registry,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    card = card_data(active)
    card["config"] = {**card["config"], "widths": [2, 8]}  # the weights hold widths [2, 4]; the hash still holds
    (active.directory / CARD_FILE).write_text(json.dumps(card))
    monkeypatch.setattr(checkpoint, "build_generator", _no_build)
    with pytest.raises(ModelError, match=r"does not fit the card's architecture .*wrong shapes"):
        load_model(active.directory)
    with pytest.raises(ModelError, match="wrong shapes"):
        check_model(active.directory)
    assert registry.resolve_active()[0].shipped
    with pytest.raises(ModelError, match="wrong shapes"):
        registry.activate(active.name)  # never activated


@pytest.mark.parametrize(("config", "message"), [
    ({"widths": [1_000_000, 2_000_000]}, r"widths holds \[1000000, 2000000\]"),
    ({"widths": [16, 32], "convs_per_level": 10_000}, "convs_per_level is 10000"),
    ({"widths": [16, 32], "in_channels": 4_000_000}, "in_channels is 4000000"),
    ({"widths": [16, 2.5]}, r"widths holds \[2.5\]"),
    ({"widths": [1024] * 8, "convs_per_level": 8}, "parameters, more than"),
])
def test_an_absurd_card_is_refused_before_anything_is_allocated(active, config, message,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    card = card_data(active)
    card["config"] = {**CONFIG, **config}
    (active.directory / CARD_FILE).write_text(json.dumps(card))
    monkeypatch.setattr(checkpoint, "build_generator", _no_build)
    tracemalloc.start()
    try:
        with pytest.raises(ModelError, match=message):
            load_model(active.directory)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    with pytest.raises(ModelError, match=message):
        build_generator("generator3d", {**CONFIG, **config})


def test_card_numbers_out_of_range_are_named() -> None:
    base = ModelCard(architecture="generator3d", config=CONFIG, resolution_mm=2.0, version="0" * 12).to_dict()
    for key, value, message in (("resolution_mm", 0.001, "resolution_mm"), ("resolution_mm", True, "not a number"),
                                ("resolution_mm", float("inf"), "resolution_mm"), ("format_version", True, "format"),
                                ("version", 12, "'version' must be text"), ("postprocess", [], "'postprocess'"),
                                ("inference", {"roi": [100_000] * 3}, "inference roi"),
                                ("inference", {"overlap": 1.5}, "inference overlap")):
        with pytest.raises(ModelError, match=message):
            ModelCard.from_dict({**base, key: value})


def test_model_names_must_be_plain(registry, active) -> None:
    for name in ("../x", "a/b", "..", "", " v1"):
        with pytest.raises(UnsafeNameError):
            registry.activate(name)
        with pytest.raises(UnsafeNameError):
            registry.remove(name)
    assert registry.active().name == active.name


# ------------------------------------------------------------------------------------------ journals


def _journal(folder: Path) -> tuple[Path, EditSession]:
    labels, grid = start_mask()
    ai = labels.copy()
    ai[0:4, 0:4, 0:4] = 4
    session = EditSession(labels, grid, ai=ai)
    path = folder / "case.bsjournal"
    journal = Journal.create(path, session, {"case_id": "case", "model_version": "test-1"})
    session.recorder = journal
    edit(session, journal)
    journal.close()
    return path, session


@pytest.fixture(scope="module")
def journal_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path, _ = _journal(tmp_path_factory.mktemp("journal"))
    return path.read_bytes()


def _records(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, kind, payload length) of every record."""
    out, offset = [], len(FILE_MAGIC)
    while offset < len(data):
        _, kind, length, _ = struct.unpack_from("<2sBII", data, offset)
        out.append((offset, kind, length))
        offset += 11 + length
    return out


def _delta(size: int, body: bytes, name: bytes = b"brush", wide: int = 0) -> bytes:
    return struct.pack("<HBQ", len(name), wide, size) + name + body


def test_a_journal_with_a_bad_record_is_moved_aside_not_deleted(tmp_path: Path, journal_bytes: bytes) -> None:
    path = tmp_path / "case.bsjournal"
    damaged = journal_bytes + _record(PART, _delta(3, b"this is not zlib"))  # its checksum holds
    path.write_bytes(damaged)
    with pytest.raises(JournalError, match="stroke record at byte .* is corrupt"):
        read_journal(path)
    with pytest.raises(JournalError, match="kept as") as caught:
        recover_or_set_aside(path)
    assert not path.exists()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("case.bsjournal" + SET_ASIDE_TAG)]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # nothing lost
    assert str(aside[0]) in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize("meta", [
    {"format_version": 1, "shape": [48, 40], "affine": np.eye(4).tolist()},
    {"format_version": 1, "shape": [48, 40, 25], "affine": np.eye(4).tolist()},
    {"format_version": 1, "shape": [48, 40, "24"], "affine": np.eye(4).tolist()},
    {"format_version": 1, "shape": [1 << 20, 1 << 20, 1 << 20], "affine": np.eye(4).tolist()},
    {"format_version": 1, "shape": [48, 40, 24], "affine": [[float("nan")] * 4] * 4},
    {"format_version": 1, "shape": [48, 40, 24]},
    [1, 2, 3],
], ids=["2d", "wrong-size", "text-size", "huge", "nan-affine", "no-affine", "not-an-object"])
def test_wrong_header_content_is_a_journal_error_and_moved_aside(tmp_path: Path, meta) -> None:
    mask = zlib.compress(np.zeros((48, 40, 24), np.uint8).tobytes())
    text = json.dumps(meta).encode()
    payload = struct.pack("<I", len(text)) + text + struct.pack("<Q", len(mask)) + mask + struct.pack("<Q", 0)
    path = tmp_path / "j.bsjournal"
    path.write_bytes(FILE_MAGIC + _record(1, payload))
    with pytest.raises(JournalError, match="unreadable journal header"):
        read_journal(path)
    with pytest.raises(JournalError, match="kept as"):
        read_or_set_aside(path)
    assert not path.exists() and len(list(tmp_path.glob("j.bsjournal" + SET_ASIDE_TAG + "*"))) == 1


def test_a_stroke_that_does_not_fit_the_grid_is_a_journal_error(tmp_path: Path, journal_bytes: bytes) -> None:
    voxels = 48 * 40 * 24
    outside = np.array([voxels + 5], np.int32).tobytes() + b"\0\1"
    bad_label = np.array([3], np.int32).tobytes() + b"\0\7"
    for payload, message in ((_delta(1, zlib.compress(outside)), "outside the grid"),
                             (_delta(1, zlib.compress(bad_label)), "labels outside"),
                             (_delta(voxels + 1, zlib.compress(b"")), "voxels in a grid"),
                             (_delta(2, zlib.compress(outside)), "inflates to")):
        path = tmp_path / "j.bsjournal"
        path.write_bytes(journal_bytes + _record(END, payload))
        with pytest.raises(JournalError, match=message):
            read_journal(path)


def _bomb(megabytes: int) -> bytes:
    packer = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(megabytes)) + packer.flush()


def test_a_zlib_bomb_record_is_inflated_only_to_the_grid_bound(tmp_path: Path, journal_bytes: bytes) -> None:
    bomb = _bomb(256)  # 256 MiB of zeros in ~250 KB
    path = tmp_path / "j.bsjournal"
    path.write_bytes(journal_bytes + _record(PART, _delta(4, bomb)))
    tracemalloc.start()
    try:
        with pytest.raises(JournalError, match="inflates to 24 or more bytes"):
            read_journal(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20  # the journal and its masks, never the bomb

    text = json.dumps({"format_version": 1, "shape": [48, 40, 24], "affine": np.eye(4).tolist()}).encode()
    payload = struct.pack("<I", len(text)) + text + struct.pack("<Q", len(bomb)) + bomb + struct.pack("<Q", 0)
    path.write_bytes(FILE_MAGIC + _record(1, payload))
    with pytest.raises(JournalError, match="the starting mask inflates to 46080 or more bytes"):
        read_journal(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_journal_is_refused_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "j.bsjournal"
    os.mkfifo(path)
    with pytest.raises(JournalError, match="pipe"):
        read_journal(path)


def _restores_or_journal_error(path: Path) -> None:
    try:
        contents = read_journal(path)
        replay(contents)
    except JournalError:
        pass


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=1 << 20))
def test_property_any_truncation_restores_or_raises_journal_error(tmp_path: Path, journal_bytes: bytes,
                                                                  cut: int) -> None:
    path = tmp_path / "t.bsjournal"
    path.write_bytes(journal_bytes[:cut % (len(journal_bytes) + 1)])
    _restores_or_journal_error(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8))
def test_property_any_byte_mutation_restores_or_raises_journal_error(tmp_path: Path, journal_bytes: bytes,
                                                                     changes: list[tuple[int, int]]) -> None:
    data = bytearray(journal_bytes)
    for position, value in changes:
        data[position % len(data)] = value
    path = tmp_path / "m.bsjournal"
    path.write_bytes(bytes(data))
    _restores_or_journal_error(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=st.integers(min_value=0), changes=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)),
                                                          min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(min_value=0)))
def test_property_mutated_records_with_good_checksums_restore_or_raise_journal_error(
        tmp_path: Path, journal_bytes: bytes, record: int, changes: list[tuple[int, int]], cut: int | None) -> None:
    """The parsers themselves: a payload changed (or cut) and its checksum recomputed to match."""
    records = _records(journal_bytes)
    offset, kind, length = records[record % len(records)]
    payload = bytearray(journal_bytes[offset + 11:offset + 11 + length])
    if payload:
        for position, value in changes:
            payload[position % len(payload)] = value
    if cut is not None:
        payload = payload[:cut % (len(payload) + 1)]
    data = journal_bytes[:offset] + _record(kind, bytes(payload)) + journal_bytes[offset + 11 + length:]
    path = tmp_path / "r.bsjournal"
    path.write_bytes(data)
    _restores_or_journal_error(path)


def test_the_real_journal_still_restores(tmp_path: Path) -> None:
    path, session = _journal(tmp_path)
    recovered, contents = recover(path)
    assert contents.open_stroke and not contents.torn
    session.recorder = None
    session.end_stroke()  # replay closes the stroke the journal left open
    np.testing.assert_array_equal(recovered.labels, session.labels)


# ------------------------------------------------------------------------------------- command line


@pytest.mark.parametrize("value", ["0.001", "1e9", "nan", "-1", "inf", "0.2999", "10.0000001", "one"])
@pytest.mark.parametrize("command", [["prepare", "STUDY", "-o", "OUT"], ["predict", "STUDY", "-o", "OUT.nii.gz"],
                                     ["experiment", "DATA"]])
def test_resolution_out_of_range_is_one_line(capsys, tmp_path: Path, command: list[str], value: str) -> None:
    argv = [str(tmp_path / a) if a.isupper() else a for a in command]
    status, _, err = run(capsys, *argv, "--resolution", value)
    line = one_error_line(err)
    assert status == 2 and "--resolution" in line and value in line and "[0.3, 10] mm" in line
    assert not (tmp_path / "OUT").exists()


@pytest.mark.parametrize(("option", "value"), [
    ("--width-scale", "4.0000001"), ("--patch-size", "100000"), ("--batch-size", "0"), ("--epochs", "1e9"),
    ("--seed", "-1"), ("--steps-per-epoch", "99999999999")])
def test_other_numeric_options_are_bounded(capsys, tmp_path: Path, option: str, value: str) -> None:
    status, _, err = run(capsys, "experiment", tmp_path, option, value)
    line = one_error_line(err)
    assert status == 2 and option in line and value in line  # the value exactly as typed


@pytest.mark.parametrize(("option", "value"), [("--fractional-threshold", "1.5"), ("--brain-adjust", "1e9"),
                                               ("--brain-adjust", "nan"), ("--case-id", "../x"),
                                               ("--case-id", "a/b")])
def test_prepare_options_are_bounded_and_case_ids_plain(capsys, tmp_path: Path, option: str, value: str) -> None:
    status, _, err = run(capsys, "prepare", tmp_path, "-o", tmp_path / "out", option, value)
    line = one_error_line(err)
    assert status == 2 and option in line and value in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("action", ["activate", "remove"])
@pytest.mark.parametrize("name", ["../x", "a/b", ".."])
def test_models_activate_or_remove_refuses_a_path(capsys, registry, action: str, name: str) -> None:
    status, _, err = run(capsys, "models", action, name)
    line = one_error_line(err)
    assert status == 2 and "not a plain name" in line and repr(name) in line
    assert not (registry.root / model_registry.ACTIVE_FILE).exists()


def _failing_info(monkeypatch: pytest.MonkeyPatch, error: BaseException | None = None) -> None:
    def fail(_args):
        if error is None:
            np.empty((47001, 55001, 39001), np.float32)  # 367 TiB: refused at once by the allocator
        raise error

    monkeypatch.setattr(cli_study, "_run_info", fail)


def test_memory_error_is_a_named_line_with_exit_2(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_info(monkeypatch)
    status, _, err = run(capsys, "info", "x")
    line = one_error_line(err)
    assert status == 2 and "not enough memory to run 'brainseg info': the input needs 375,589.6 GiB" in line
    assert "unexpected" not in line

    _failing_info(monkeypatch, RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                                            "allocate memory: you tried to allocate 4294967296 bytes."))
    status, _, err = run(capsys, "info", "x")
    assert status == 2 and "the input needs 4.0 GiB" in one_error_line(err)


def test_permission_and_full_disk_are_named(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_info(monkeypatch, PermissionError(errno.EACCES, "Permission denied", "/data/case/t1.nii.gz"))
    status, _, err = run(capsys, "info", "x")
    assert status == 2 and one_error_line(err) == "brainseg: error: permission denied: /data/case/t1.nii.gz"
    _failing_info(monkeypatch, OSError(errno.ENOSPC, "No space left on device", "/out/pred.nii.gz"))
    status, _, err = run(capsys, "info", "x")
    assert status == 2 and "the disk is full (writing /out/pred.nii.gz)" in one_error_line(err)


def test_a_real_bug_stays_unexpected_with_exit_1(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_info(monkeypatch, ZeroDivisionError("division by zero"))
    status, _, err = run(capsys, "info", "x")
    assert status == 1 and one_error_line(err).startswith("brainseg: error: unexpected ZeroDivisionError")


def test_empty_and_missing_inputs_give_named_errors(capsys, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for argv in (["info", ""], ["predict", tmp_path / "empty", "-o", tmp_path / "out"],
                 ["predict", tmp_path / "absent", "-o", tmp_path / "out.nii.gz"], ["models", "activate"],
                 ["models", "activate", "v9-000000000000"]):
        status, _, err = run(capsys, *argv)
        line = one_error_line(err)
        assert status == 2 and "unexpected" not in line, argv
