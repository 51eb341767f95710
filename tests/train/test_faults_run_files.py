"""train-model faults of the run's own files: checkpoints cut short (a copy interrupted, a full disk) and what a
SIGKILL leaves in --out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.errors import ExitCode, ModelError
from train.checkpoint import load_checkpoint
from train.cli import main

TINY = ["--quiet", "--img-size", "32", "--batch-size", "16", "--loc-head-epochs", "0"]


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def last_line(r) -> str:
    return r.output.strip().splitlines()[-1]


def cut_in_half(path: Path, to: Path | None = None) -> int:
    data = path.read_bytes()
    (to or path).write_bytes(data[: len(data) // 2])
    return len(data) // 2


def test_a_checkpoint_cut_short_is_named_so_with_its_size(one_epoch: Path, synthetic_data: Path, tmp_path: Path):
    """`head -c 50% best.pt` given to --init or export: "not a readable defect-edge checkpoint (RuntimeError); retrain
    or re-download it", which did not say that the file was only half there."""
    half = tmp_path / "half.pt"
    size = cut_in_half(one_epoch / "best.pt", half)
    with pytest.raises(ModelError, match=rf"half.pt: cut short \({size} bytes, its end missing.*copy it again"):
        load_checkpoint(half)
    r = run("--data", synthetic_data, "--out", tmp_path / "new", "--epochs", "1", *TINY, "--init", half)
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    assert f"half.pt: cut short ({size} bytes" in last_line(r) and "decoded" not in r.output


def test_resume_from_a_last_pt_cut_short_names_the_intact_best_pt(one_epoch: Path, synthetic_data: Path):
    """It said "cannot read resume state (RuntimeError); restore the run's own last.pt", not that the model trained so
    far was still there in best.pt, nor how to go on from it."""
    size = cut_in_half(one_epoch / "last.pt")
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", *TINY, "--resume")
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    best = one_epoch / "best.pt"
    assert last_line(r) == (
        f"error: {one_epoch / 'last.pt'}: cut short ({size} bytes, its end missing: a copy or download that did not "
        f"finish, or a full disk), so the run cannot go on from it; {best} (epoch 1) is intact: export it, or train "
        f"on from its weights in a new run with --init {best} --out NEW; or restore the run's own last.pt"
    )


def test_resume_with_a_best_pt_cut_short_is_refused_before_training(one_epoch: Path, synthetic_data: Path):
    """It trained every epoch left, then failed on best.pt (exit 4) at the report, and so did every --resume after:
    the run could never finish."""
    size = cut_in_half(one_epoch / "best.pt")
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", *TINY, "--resume")
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    assert f"best.pt: cut short ({size} bytes" in last_line(r) and "best epoch so far (1) is lost" in last_line(r)
    assert "decoded" not in r.output and "epoch   2/2" not in r.output


def test_what_a_killed_run_left_is_removed_by_the_next_run_and_said(one_epoch: Path, synthetic_data: Path):
    """A train-model killed while it wrote (SIGKILL, the OOM killer) left its hidden `.best.pt.PID.tmp` and
    `.last.pt.PID.tmp` (3 MB each on the casting model) in --out for good; neither --resume nor a new run removed
    them. Other programs' files in the folder stay."""
    # a container's train-model may have the same PID as the killed one
    left = [
        one_epoch / ".last.pt.999999.tmp",
        one_epoch / ".best.pt.999999.tmp",
        one_epoch / f".report.json.{os.getpid()}.tmp",
    ]
    (one_epoch / "misclassified").mkdir(exist_ok=True)
    left.append(one_epoch / "misclassified" / ".test__ok_front__a.png.999999.tmp")
    for p in left:
        p.write_bytes(b"PK\x03\x04 half a checkpoint")
    other = one_epoch / ".model.onnx.999999.tmp"  # an export into the run folder, not train-model's file
    other.write_bytes(b"onnx")
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", *TINY, "--resume")
    assert r.exit_code == 0, r.output
    assert not any(p.exists() for p in left) and other.exists()
    assert f"removed 4 temporary file(s) that a killed run left in {one_epoch}: .best.pt.999999.tmp" in r.output


KILL_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
real = os.replace
def replace(src, dst, *a, **kw):
    real(src, dst, *a, **kw)
    d = Path(dst)
    if d.name == "last.pt" and any(p.name.startswith(".best.pt.") for p in d.parent.iterdir()):
        os.kill(os.getpid(), signal.SIGKILL)  # after an epoch's last.pt is renamed, before its best.pt is
os.replace = replace
from train.cli import main
main(sys.argv[1:])
"""


def test_a_kill_between_an_epochs_two_renames_is_resumed(tmp_path: Path, synthetic_data: Path):
    """Killed after an epoch's last.pt was renamed into place and before its best.pt was, the run could never be
    resumed: `best.pt: missing: the run's best epoch so far (1) would be lost; restore the run's own best.pt` (or,
    later in a run, "the two files come from different runs"), while that best.pt lay whole beside it under its
    temporary name."""
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "run"
    args = ["--data", str(synthetic_data), "--out", str(out), "--epochs", "2", *TINY]
    proc = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, *args], cwd=REPO, capture_output=True)
    assert proc.returncode == -9 and (out / "last.pt").exists() and not (out / "best.pt").exists()
    r = run(*args, "--resume")
    assert r.exit_code == 0, r.output
    assert "best.pt: put in place from .best.pt." in r.output and "the best epoch (1) that a killed run" in r.output
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert json.loads((out / "report.json").read_text())["model"]["best_epoch"] >= 1


def test_resume_on_other_data_names_the_images_that_differ(one_epoch: Path, synthetic_data: Path):
    """An image moved to the other class folder (relabelled) since: "was trained on other data; use a new --out", which
    told neither what differed nor that putting the data back lets the run go on."""
    moved = synthetic_data / "train" / "def_front" / "ok_front_000.png"
    (synthetic_data / "train" / "ok_front" / "ok_front_000.png").rename(moved)
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", *TINY, "--resume")
    assert r.exit_code == ExitCode.BAD_DATA, r.output
    assert last_line(r) == (
        f"error: {one_epoch / 'last.pt'}: was trained on other data (train/: 1 added (def_front/ok_front_000.png), "
        "1 gone (ok_front/ok_front_000.png)); put the data back as the run had it to resume, or use a new --out for "
        "this data"
    )
    moved.rename(synthetic_data / "train" / "ok_front" / "ok_front_000.png")  # put back: the run goes on
    assert run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", *TINY, "--resume").exit_code == 0


def test_a_resume_while_the_run_trains_elsewhere_is_told_to_wait_not_to_move(one_epoch: Path, synthetic_data: Path):
    """A second --resume of a run still training (a restart script, another terminal) was told "choose another
    --out", where there is nothing to resume; the run it meant ends, and can then be resumed."""
    import fcntl
    import os

    fd = os.open(one_epoch, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as the run training in it holds it
    try:
        r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", *TINY, "--resume")
    finally:
        os.close(fd)
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert last_line(r) == (
        f"error: {one_epoch}: another train-model is training into it now; let that run end (or stop it), then rerun "
        "this --resume to continue from its last.pt"
    )
    assert "decoded" not in r.output


@pytest.mark.parametrize("change", ["moved", "test image added", "moved, last.pt of an older train-model"])
def test_resume_on_other_image_names_is_refused_before_any_image_is_decoded(
    one_epoch: Path, synthetic_data: Path, change: str
):
    """The refusal came only once every image was decoded (minutes on the casting set): the names tell first."""
    import torch

    if change.endswith("older train-model"):  # no listing in it: the images its best.pt names are compared
        state = torch.load(one_epoch / "last.pt", weights_only=True)
        state.pop("listing", None)
        torch.save(state, one_epoch / "last.pt")
    if change.startswith("moved"):
        (synthetic_data / "train" / "ok_front" / "ok_front_000.png").rename(
            synthetic_data / "train" / "def_front" / "ok_front_000.png"
        )
        why = "train/: 1 added (def_front/ok_front_000.png), 1 gone (ok_front/ok_front_000.png)"
    else:
        (synthetic_data / "test" / "ok_front" / "extra.png").write_bytes(
            (synthetic_data / "test" / "ok_front" / "ok_front_000.png").read_bytes()
        )
        why = "train/ holds the same files: its images or test/ changed"
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", *TINY, "--resume")
    assert r.exit_code == ExitCode.BAD_DATA, r.output
    assert last_line(r) == (
        f"error: {one_epoch / 'last.pt'}: was trained on other data ({why}); put the data back as the run had it to "
        "resume, or use a new --out for this data"
    )
    assert "decoded" not in r.output


def test_resume_of_a_finished_run_says_so_and_leaves_it_as_it_was(one_epoch: Path, synthetic_data: Path):
    """--resume of a run that had trained all its epochs decoded every image and wrote its report (and head) again,
    in silence, exit 0: a user who meant to train further did not learn that --epochs had to be raised."""

    def snapshot() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in one_epoch.iterdir() if p.is_file()}

    before = snapshot()
    r = run("--data", synthetic_data, "--out", one_epoch, *TINY, "--resume")
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines() == [
        f"{one_epoch}: the run had finished (epoch 1 of 1); nothing trained, its files left as they were; pass "
        "--epochs N above 1 with --resume to train it further"
    ]
    assert snapshot() == before
    (one_epoch / "report.json").unlink()  # stopped while its report was written: the resume finishes it
    r = run("--data", synthetic_data, "--out", one_epoch, *TINY, "--resume")
    assert r.exit_code == 0, r.output
    assert (f"{one_epoch}: every epoch was trained already (epoch 1 of 1); nothing to train: writing the run's report "
            "and localisation head") in r.output  # fmt: skip
    assert json.loads((one_epoch / "report.json").read_text())["epochs"] == 1
