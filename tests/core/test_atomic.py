"""All-or-nothing writing (core/atomic.py): every failure point leaves the old files and nothing new.

Faults are injected at each system call a set makes (the writer, fsync, the backup link, the
rename), one call at a time, until the write succeeds; a SIGKILL half-way through the renames is
finished by the next reader; a real full disk (a small tmpfs, where the tests run as root).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from fault_injection import FAULT_POINTS, assert_all_or_nothing, listing

from brainseg_gui.core.atomic import FileSet, WriteError, recover, write_atomic

OLD = {"mask.nii.gz": b"old mask", "mask.json": b"{\"old\": true}"}


def _old_files(folder: Path) -> dict[str, bytes | None]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in OLD.items():
        (folder / name).write_bytes(data)
    return listing(folder)


def _write_new_set(folder: Path) -> None:
    """Two replaced files, one new file in a folder the set has to create, one written by a callable."""
    def save(temporary: Path) -> None:
        temporary.write_bytes(b"new")
        temporary.write_bytes(b"new probabilities")

    with FileSet() as files:
        files.add(folder / "mask.nii.gz", b"new mask")
        files.add(folder / "mask.json", "{\"new\": true}")
        files.add(folder / "meshes" / "P_WT.stl", save)
        files.add(folder / "probabilities.nii.gz", save)


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_a_failure_at_any_call_leaves_the_old_files_and_nothing_new(point: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "out"
    _old_files(folder)
    assert assert_all_or_nothing(lambda: _write_new_set(folder), folder, point, monkeypatch) > 0
    assert (folder / "mask.nii.gz").read_bytes() == b"new mask"
    assert (folder / "meshes" / "P_WT.stl").read_bytes() == b"new probabilities"


def test_an_exception_inside_the_block_discards_the_set(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    before = _old_files(folder)
    with pytest.raises(KeyError), FileSet() as files:
        files.add(folder / "mask.nii.gz", b"new")
        files.add(folder / "new" / "deep" / "x.txt", b"new")
        raise KeyError("the user cancelled")
    assert listing(folder) == before


def test_a_folder_in_the_way_or_no_permission_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "taken.txt").mkdir()
    with pytest.raises(WriteError, match="a folder is in the way"):
        write_atomic(tmp_path / "taken.txt", b"x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match="a file is in the way"):
        write_atomic(tmp_path / "file" / "sub" / "x.txt", b"x")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(WriteError, match="permission denied"):
            write_atomic(locked / "x.txt", b"x")


def test_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    target.chmod(0o600)
    write_atomic(target, "new")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o600
    write_atomic(tmp_path / "fresh.txt", "new")
    assert (tmp_path / "fresh.txt").stat().st_mode & 0o777 == 0o644


_KILLED_MID_COMMIT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from brainseg_gui.core import atomic

    folder = Path(sys.argv[1])
    renames = []
    original = atomic._replace

    def replace_then_die(source, target):
        original(source, target)
        renames.append(target)
        if len(renames) == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    atomic._replace = replace_then_die
    with atomic.FileSet() as files:
        for name in ("a.txt", "b.txt", "c.txt"):
            files.add(folder / name, b"new " + name.encode())
""")


def test_a_commit_killed_half_way_is_finished_by_the_next_reader(tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_bytes(b"old " + name.encode())
    child = subprocess.run([sys.executable, "-c", _KILLED_MID_COMMIT, str(tmp_path)], check=False)
    assert child.returncode == -signal.SIGKILL
    assert (tmp_path / "c.txt").read_bytes() == b"old c.txt"  # the set is half-written on disk...
    recover(tmp_path)  # ...until the next reader of the folder finishes it
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        name: b"new " + name.encode() for name in ("a.txt", "b.txt", "c.txt")}


def test_opening_the_case_finishes_a_commit_killed_in_its_folder(tmp_path: Path) -> None:
    """find_case / find_cases are the next reader of a case folder: they finish a decided set first."""
    import numpy as np
    from io_builders import write_nifti

    from brainseg_gui.core.cases import find_case, find_cases

    for name in ("t1", "t1ce", "t2", "flair"):
        write_nifti(tmp_path / f"P_{name}.nii.gz", np.zeros((4, 4, 4), np.float32), np.eye(4))
    for opener in (find_case, find_cases):
        for name in ("a.txt", "b.txt", "c.txt"):
            (tmp_path / name).write_bytes(b"old " + name.encode())
        child = subprocess.run([sys.executable, "-c", _KILLED_MID_COMMIT, str(tmp_path)], check=False)
        assert child.returncode == -signal.SIGKILL and (tmp_path / "c.txt").read_bytes() == b"old c.txt"
        opener(tmp_path)
        assert {n: (tmp_path / n).read_bytes() for n in ("a.txt", "b.txt", "c.txt")} == {
            n: b"new " + n.encode() for n in ("a.txt", "b.txt", "c.txt")}
        assert len(list(tmp_path.iterdir())) == 7, listing(tmp_path)  # no record, backup or temporary left


def test_temporaries_of_a_process_killed_before_its_commit_are_deleted(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"old")
    script = ("import os, signal, sys\nfrom pathlib import Path\nfrom brainseg_gui.core.atomic import FileSet\n"
              "files = FileSet()\nfiles.add(Path(sys.argv[1]) / 'a.txt', b'new')\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False)
    assert len(list(tmp_path.iterdir())) == 2  # the old file and the dead writer's temporary
    recover(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"] and (tmp_path / "a.txt").read_bytes() == b"old"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 256 KiB tmpfs (needs root and a system that lets the tests mount)."""
    mount_point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                          capture_output=True, check=False) if os.geteuid() == 0 else None
    if done is None or done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root, or mounting is not allowed)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_leaves_the_old_set(small_disk: Path) -> None:
    before = _old_files(small_disk / "case")
    with pytest.raises(WriteError, match="the disk is full"), FileSet() as files:
        files.add(small_disk / "case" / "mask.nii.gz", os.urandom(100_000))
        files.add(small_disk / "case" / "mask.json", os.urandom(200_000))
    assert listing(small_disk / "case") == before
    write_atomic(small_disk / "case" / "mask.json", b"fits")  # and the space is free again


def test_a_removal_is_part_of_the_set_and_rolled_back_with_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "WT.stl").write_bytes(b"old WT")
    (tmp_path / "ET.stl").write_bytes(b"old ET")
    before = listing(tmp_path)

    def new_set() -> None:
        with FileSet() as files:
            files.remove(tmp_path / "ET.stl")
            files.add(tmp_path / "WT.stl", b"new WT")

    assert assert_all_or_nothing(new_set, tmp_path, "_replace", monkeypatch) == 1
    assert listing(tmp_path) == {"WT.stl": b"new WT"} != before
