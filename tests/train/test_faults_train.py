"""train-model faults: a resume that would change the recipe, a full disk, an --out inside --data, stale
misclassified pictures, advice that must not loop, and a resumed run that must equal the uninterrupted one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edge_runtime.errors import ExitCode
from tests.conftest import REPO, make_dataset
from train.cli import main
from train.config import TrainConfig
from train.main import main as train_main

TINY = ["--quiet", "--img-size", "32", "--batch-size", "16", "--loc-head-epochs", "0"]


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def last_line(r) -> str:
    return r.output.strip().splitlines()[-1]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def one_epoch(tmp_path: Path, synthetic_data: Path) -> Path:
    out = tmp_path / "run"
    r = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY)
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--img-size", "48"),  # trained on at 48 px, then exit 1 (a tensor size error), or silently mixed sizes
        ("--lr", "0.01"),
        ("--batch-size", "8"),
        ("--hard-defect-weight", "0"),
        ("--no-second-look", None),
        ("--seed", "3"),
        ("--arch", "seed"),
    ],
)
def test_resume_with_an_option_that_changes_the_model_is_refused_before_training(
    one_epoch: Path, synthetic_data: Path, option: str, value: str | None
):
    before = snapshot(one_epoch)
    given = [option] if value is None else [option, value]
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", *TINY, *given, "--resume")
    assert r.exit_code == ExitCode.USAGE, r.output
    assert last_line(r).startswith(f"error: {option}") and "Traceback" not in r.output
    assert "decoded" not in r.output  # refused before the images were read
    assert snapshot(one_epoch) == before


def test_resume_may_change_epochs_threads_head_and_quiet(one_epoch: Path, synthetic_data: Path):
    args = ["--data", synthetic_data, "--out", one_epoch, "--img-size", "32", "--batch-size", "16", "--resume"]
    r = run(*args, "--epochs", "2", "--threads", "1", "--loc-head-epochs", "1", "--no-bf16")
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["epoch"] for x in (one_epoch / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.parametrize(
    ("limit", "file"),
    [(30_000, "augmentations.png"), (200_000, "best.pt")],  # libpng's "Write Error"; torch's RuntimeError
)
def test_a_full_disk_is_exit_7_naming_the_file(tmp_path: Path, synthetic_data: Path, limit: int, file: str):
    # A file-size limit makes writes fail as a full disk does (EFBIG instead of ENOSPC), without root.
    out = tmp_path / "run"
    code = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from train.cli import main\n"
        f"main({['--data', str(synthetic_data), '--out', str(out), '--epochs', '1', *TINY]!r})\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == ExitCode.OUTPUT_ERROR, r.stderr  # was 1, "unexpected RuntimeError/OSError"
    assert r.stderr.strip().splitlines() == [r.stderr.strip().splitlines()[-1]]
    assert r.stderr.startswith(f"error: {out / file}: cannot write")
    assert not list(out.glob(".*.tmp"))  # nothing half-written left behind


def test_out_inside_data_is_refused_before_any_work(tmp_path: Path, synthetic_data: Path):
    out = synthetic_data / "train" / "ok_front" / "run"
    r = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY)
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert "--out is inside --data" in last_line(r)
    assert not out.exists()  # its PNGs became "OK" training images of the next run


def test_misclassified_holds_only_the_errors_of_this_report(tmp_path: Path, synthetic_data: Path):
    out = tmp_path / "run"
    (out / "misclassified").mkdir(parents=True)
    stale = out / "misclassified" / "test__def_front__gone.png.png"  # an error an earlier model made
    stale.write_bytes(b"png")
    (out / "report.json").write_text("{}")
    assert run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY).exit_code == 0
    errors = json.loads((out / "report.json").read_text())["test"]["errors"]
    pngs = sorted(p.name for p in (out / "misclassified").glob("*.png"))
    assert not stale.exists()
    assert pngs == sorted(f"test__{e['file'].replace('/', '__')}.png" for e in errors)


def test_advice_for_a_folder_with_best_pt_only_does_not_loop(tmp_path: Path, synthetic_data: Path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "best.pt").write_bytes(b"a model without its last.pt")
    fresh = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY)
    resumed = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY, "--resume")
    for r in (fresh, resumed):
        assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
        assert "another --out" in last_line(r)
    assert "pass --resume" not in last_line(fresh)  # each message pointed at the other
    assert "without --resume" not in last_line(resumed)


def test_a_run_refused_for_its_data_leaves_no_empty_out_folder(tmp_path: Path):
    one_class = tmp_path / "data"
    (one_class / "train" / "def_front").mkdir(parents=True)
    out = tmp_path / "runs" / "new"
    r = run("--data", one_class, "--out", out, "--epochs", "1", *TINY)
    assert r.exit_code == ExitCode.BAD_DATA, r.output
    assert not (tmp_path / "runs").exists()


class Interrupt(KeyboardInterrupt):
    pass


def test_an_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path: Path):
    data = make_dataset(tmp_path / "data", n_train=16, n_test=4)

    def cfg(out: str, **kw) -> TrainConfig:
        return TrainConfig(data=data, out=tmp_path / out, epochs=3, img_size=32, batch_size=8, loc_head_epochs=0,
                           quiet=True, threads=1, **kw)  # fmt: skip

    def stop_after_epoch_1(msg: str) -> None:
        if msg.startswith("epoch   1/3"):  # last.pt of epoch 1 is written: Ctrl-C here
            raise Interrupt

    train_main(cfg("a"), log=lambda _m: None)
    with pytest.raises(Interrupt):
        train_main(cfg("b"), log=stop_after_epoch_1)
    train_main(cfg("b", resume=True), log=lambda _m: None)

    def losses(out: str) -> list[float]:
        return [json.loads(x)["train_loss"] for x in (tmp_path / out / "metrics.jsonl").read_text().splitlines()]

    assert losses("b") == losses("a")  # dropout drew other masks from epoch 2 on
    a, b = (torch.load(tmp_path / o / "last.pt", weights_only=True)["model"] for o in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
