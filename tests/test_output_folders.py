"""Output folders: a command writes only into a new, empty or its own folder, and never touches a user's file.

Unit tests of core/output_folder.py, then the five writing commands (`train`, `finetune`, `prepare`,
`crossval`, `experiment`) run on tiny phantoms: a folder holding a user's file is refused in one line
with nothing created or changed, a refused command leaves no folder, a rerun into its own folder
works, and --force writes beside the user's file without touching it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.output_folder import MARKER_NAME, OutputFolderError, claim
from tests.cli_support import one_error_line, run

THESIS = b"PK\x03\x04 my thesis, three years of work"
TRAIN_FAST = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--device", "cpu", "--no-adversarial"]


def _user_folder(folder: Path) -> Path:
    """A folder holding one file of the user's."""
    folder.mkdir(parents=True)
    (folder / "thesis.docx").write_bytes(THESIS)
    return folder


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def _marker(folder: Path) -> dict:
    return json.loads((folder / MARKER_NAME).read_text())


# -- core/output_folder.py ---------------------------------------------------------------------------


def test_a_missing_folder_is_created_by_the_first_own_with_the_marker(tmp_path: Path) -> None:
    out = claim(tmp_path / "new" / "run", "train")
    assert not (tmp_path / "new").exists()
    out.own("card.json", "training", "training/cache")
    marker = _marker(tmp_path / "new" / "run")
    assert marker["command"] == "train" and marker["paths"] == ["card.json", "training"]
    assert marker["brainseg_version"] and marker["created"]
    assert out.owns("training/cache/P1.npz") and not out.owns("thesis.docx")


def test_an_empty_folder_and_the_same_commands_folder_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    claim(tmp_path / "empty", "prepare").own("a_t1.nii.gz")
    (tmp_path / "empty" / "a_t1.nii.gz").write_bytes(b"image")
    again = claim(tmp_path / "empty", "prepare")
    assert again.may_replace("a_t1.nii.gz") and again.may_replace("b_t1.nii.gz")
    again.own("b_t1.nii.gz")
    assert _marker(tmp_path / "empty")["paths"] == ["a_t1.nii.gz", "b_t1.nii.gz"]


def test_a_folder_with_other_files_is_refused_naming_three_of_them(tmp_path: Path) -> None:
    folder = _user_folder(tmp_path / "mine")
    for name in ("b.txt", "c.txt", "d.txt"):
        (folder / name).write_text(name)
    with pytest.raises(OutputFolderError) as refused:
        claim(folder, "train")
    text = str(refused.value)
    assert str(folder) in text and "b.txt, c.txt, d.txt and 1 more" in text
    assert "--force" in text and "new folder" in text and "\n" not in text
    with pytest.raises(OutputFolderError, match="nothing of `brainseg train` to resume"):
        claim(folder, "train", resume=True)
    assert _snapshot(folder)["thesis.docx"] == THESIS and not (folder / MARKER_NAME).exists()


def test_force_writes_beside_but_never_over_a_users_file(tmp_path: Path) -> None:
    folder = _user_folder(tmp_path / "mine")
    out = claim(folder, "train", force=True)
    assert not out.may_replace("thesis.docx") and out.may_replace("card.json")
    with pytest.raises(OutputFolderError, match="thesis.docx was not written by `brainseg train`"):
        out.own("card.json", "thesis.docx")
    assert not (folder / MARKER_NAME).exists()  # nothing of a refused set is recorded
    with pytest.raises(OutputFolderError, match="not deleted"):
        out.remove("thesis.docx")
    out.own("card.json")
    assert _snapshot(folder)["thesis.docx"] == THESIS
    again = claim(folder, "train")  # the marker makes it the command's folder now; the file stays foreign
    assert not again.may_replace("thesis.docx")


def test_remove_deletes_owned_paths_only(tmp_path: Path) -> None:
    out = claim(tmp_path / "run", "finetune")
    out.own("training")
    (tmp_path / "run" / "training" / "cache").mkdir(parents=True)
    (tmp_path / "run" / "training" / "cache" / "a.npz").write_bytes(b"x")
    out.remove("training/cache")
    out.remove("training/cache")  # already gone: nothing to do
    assert not (tmp_path / "run" / "training" / "cache").exists()
    with pytest.raises(ValueError, match="not inside"):
        out.remove(tmp_path / "elsewhere")


def test_another_commands_folder_is_refused_even_with_force(tmp_path: Path) -> None:
    claim(tmp_path / "model", "train").own("card.json")
    with pytest.raises(OutputFolderError, match="holds the output of `brainseg train`, not of `brainseg crossval`"):
        claim(tmp_path / "model", "crossval", force=True)


def test_crossval_takes_over_the_folds_train_wrote_one_by_one_and_nothing_else(tmp_path: Path) -> None:
    """model/README.md trains each fold with `brainseg train --out runs/cv/fold<k>`, then scores them
    with `brainseg crossval --out runs/cv --evaluate-only`: those fold folders are crossval's own."""
    folds = {f"fold{k}": "train" for k in range(4)}
    for k in (0, 2):
        claim(tmp_path / "cv" / f"fold{k}", "train").own("card.json")
    out = claim(tmp_path / "cv", "crossval", nested=folds)
    out.own("fold0", "fold1", "fold2", "fold3", "summary.md")
    assert json.loads((tmp_path / "cv" / MARKER_NAME).read_text())["command"] == "crossval"
    assert json.loads((tmp_path / "cv" / "fold0" / MARKER_NAME).read_text())["command"] == "train"
    for name, command in (("fold1", "prepare"), ("fold7", "train"), ("notes", "train")):
        other = tmp_path / name
        claim(other / name, command).own("x.txt")
        with pytest.raises(OutputFolderError, match=f"holds {name}"):
            claim(other, "crossval", nested=folds)
    _user_folder(tmp_path / "plain" / "fold0")
    with pytest.raises(OutputFolderError, match="holds fold0"):
        claim(tmp_path / "plain", "crossval", nested=folds)


@pytest.mark.parametrize("content", [
    b"{not json", b"\xff\xfe", b"[]", b'{"format": "brainseg-output", "command": "train", "paths": ["."]}',
    b'{"format": "brainseg-output", "command": "train", "paths": ["../thesis.docx"]}',
    b'{"format": "brainseg-output", "command": "train", "paths": ["/etc"]}',
])
def test_a_corrupt_marker_makes_a_foreign_folder(tmp_path: Path, content: bytes) -> None:
    folder = _user_folder(tmp_path / "mine")
    (folder / MARKER_NAME).write_bytes(content)
    for force in (False, True):
        with pytest.raises(OutputFolderError, match="unreadable output marker"):
            claim(folder, "train", force=force)
    assert (folder / MARKER_NAME).read_bytes() == content


def test_a_marker_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run" / MARKER_NAME).mkdir(parents=True)
    with pytest.raises(OutputFolderError, match="unreadable output marker"):
        claim(tmp_path / "run", "train")


def test_a_file_where_the_folder_goes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        claim(tmp_path / "out", "prepare", force=True)
    assert issubclass(OutputFolderError, BrainSegError)


# -- the commands ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from brainseg_gui.core.phantom import write_phantom_case

    folder = tmp_path_factory.mktemp("phantoms")
    for seed in (1, 2, 3):
        write_phantom_case(folder, seed=seed, shape=(48, 56, 40), case_id=f"P{seed}")
    return folder


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def base_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import torch

    from brainseg_gui.ml import model_registry
    from brainseg_gui.ml.checkpoint import ModelCard, save_model
    from brainseg_gui.ml.networks import build_generator

    monkeypatch.setenv(model_registry.MODELS_DIR_ENV, str(tmp_path / "user-models"))
    torch.manual_seed(0)
    save_model(tmp_path / "base", build_generator("generator3d", {"widths": [4, 8]}),
               ModelCard(architecture="generator3d", config={"widths": [4, 8]}, resolution_mm=2.0))
    return tmp_path / "base"


def _commands(data: Path, out: Path, base: Path) -> list[list[object]]:
    return [
        ["train", data, "--out", out, *TRAIN_FAST],
        ["crossval", data, "--out", out, "--folds", "2", *TRAIN_FAST],
        ["finetune", data / "P1", data / "P2", "--val", data / "P3", "--out", out, "--base", base, "--device", "cpu"],
        ["prepare", data / "P1", "-o", out],
        ["experiment", data, "--out", out, "--models", "fcn", "--device", "cpu"],
    ]


def test_every_command_refuses_a_folder_with_a_users_file(capsys: pytest.CaptureFixture[str], data: Path,
                                                          base_model: Path, tmp_path: Path) -> None:
    folder = _user_folder(tmp_path / "mine")
    for argv in _commands(data, folder, base_model):
        status, _, err = run(capsys, *argv)
        line = one_error_line(err)
        assert status == 2, argv
        assert str(folder) in line and "thesis.docx" in line and "--force" in line, line
        assert _snapshot(folder) == {"thesis.docx": THESIS}, argv


def test_a_command_refused_by_its_inputs_creates_no_folder(capsys: pytest.CaptureFixture[str], data: Path,
                                                           tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    (tmp_path / "bogus.nii.gz").write_text("not an image")
    refused = [
        (["train", tmp_path / "nothing", "--out", tmp_path / "a", *TRAIN_FAST], "no case found"),
        (["train", data, "--out", tmp_path / "b", "--val", "P9", *TRAIN_FAST], "P9"),
        (["crossval", data, "--out", tmp_path / "c", "--folds", "5", *TRAIN_FAST], "5 folds need"),
        (["crossval", data, "--out", tmp_path / "d", "--folds", "2", "--evaluate-only"], "no trained fold"),
        (["prepare", "--t1", tmp_path / "bogus.nii.gz", "-o", tmp_path / "e"], "bogus.nii.gz"),
        (["experiment", tmp_path / "nothing", "--out", tmp_path / "f", "--models", "fcn"], "no case found"),
    ]
    for argv, expected in refused:
        status, _, err = run(capsys, *argv)
        assert status == 2 and expected in one_error_line(err), (argv, err)
        assert not Path(str(argv[argv.index("--out" if "--out" in argv else "-o") + 1])).exists(), argv


def test_force_writes_beside_a_users_file_and_a_rerun_replaces_only_its_own(
        capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path, one_thread: None) -> None:
    folder = _user_folder(tmp_path / "mine")
    status, _, err = run(capsys, "train", data, "--out", folder, "--force", *TRAIN_FAST)
    assert status == 0, err
    assert (folder / "thesis.docx").read_bytes() == THESIS and (folder / "card.json").is_file()
    assert _marker(folder)["command"] == "train"
    status, _, err = run(capsys, "train", data, "--out", folder, "--resume", *TRAIN_FAST)  # its own folder now
    assert status == 0, err
    status, _, err = run(capsys, "crossval", data, "--out", folder, "--folds", "2", "--force", *TRAIN_FAST)
    assert status == 2 and "holds the output of `brainseg train`" in one_error_line(err)
    assert (folder / "thesis.docx").read_bytes() == THESIS

    prepared = _user_folder(tmp_path / "prepared")
    (prepared / "P1_t1.nii.gz").write_bytes(b"the user's own t1")  # a name prepare would write
    status, _, err = run(capsys, "prepare", data / "P1", "-o", prepared, "--force", "--no-skull-strip")
    assert status == 2 and "P1_t1.nii.gz was not written by `brainseg prepare`" in one_error_line(err)
    assert _snapshot(prepared) == {"thesis.docx": THESIS, "P1_t1.nii.gz": b"the user's own t1"}
    status, _, err = run(capsys, "prepare", data / "P2", "-o", prepared, "--force", "--no-skull-strip")
    assert status == 0, err
    first = (prepared / "P2_t1.nii.gz").read_bytes()
    status, _, err = run(capsys, "prepare", data / "P2", "-o", prepared, "--no-skull-strip", "--resolution", "2")
    assert status == 0, err  # a rerun into its own folder replaces its own files
    assert (prepared / "P2_t1.nii.gz").read_bytes() != first
    assert (prepared / "thesis.docx").read_bytes() == THESIS
    assert (prepared / "P1_t1.nii.gz").read_bytes() == b"the user's own t1"
