"""train-model as a user meets it: --help, bad input gives one line and a documented exit code."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.errors import ExitCode
from tests.conftest import REPO, make_dataset
from train.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_help_lists_options_and_exit_codes():
    r = run("--help")
    assert r.exit_code == 0
    for opt in (
        "--data",
        "--out",
        "--epochs",
        "--arch",
        "--img-size",
        "--seed",
        "--val-fraction",
        "--resume",
        "--quiet",
    ):
        assert opt in r.output
    assert "Exit codes" in r.output


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "missing", "data folder not found"),
        (lambda p: (p / "data.zip").write_bytes(b"PK") and p / "data.zip", "is a file, not a folder"),
        (lambda p: (p / "x" / "train" / "def_front").mkdir(parents=True) or p / "x", "only one class folder"),
        (lambda p: make_dataset(p / "odd", classes=("a", "b")), "--positive-class"),
    ],
)
def test_bad_data_is_one_line_exit_3_without_traceback(tmp_path: Path, setup, message: str):
    data = setup(tmp_path)
    r = run("--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet")
    assert r.exit_code == ExitCode.BAD_DATA
    err = r.output.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert "Traceback" not in r.output


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path: Path):
    r = run("--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "--debug")
    assert r.exit_code == ExitCode.BAD_DATA and "Traceback" in r.stderr  # was exit 1, as for a bug


def test_existing_run_is_not_overwritten_without_resume(tmp_path: Path, synthetic_data: Path):
    out = tmp_path / "run"
    args = [
        "--data",
        str(synthetic_data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--quiet",
        "--img-size",
        "32",
        "--batch-size",
        "16",
    ]
    first = run(*args)
    assert first.exit_code == 0, first.output
    before = (out / "best.pt").read_bytes()
    again = run(*args)
    assert again.exit_code == ExitCode.OUTPUT_ERROR
    assert "--resume" in again.output
    assert (out / "best.pt").read_bytes() == before


def test_resume_continues_to_more_epochs(tmp_path: Path, synthetic_data: Path):
    out = tmp_path / "run"
    base = [
        "--data",
        str(synthetic_data),
        "--out",
        str(out),
        "--quiet",
        "--img-size",
        "32",
        "--batch-size",
        "16",
    ]
    assert run(*base, "--epochs", "1").exit_code == 0
    r = run(*base, "--epochs", "2", "--resume")
    assert r.exit_code == 0, r.output
    assert "resumed from" in r.output
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]


def test_without_torch_help_works_and_a_run_names_the_extra(tmp_path: Path):
    from tests.edge_runtime.test_no_torch import run_without_torch

    helped = run_without_torch("from train.cli import main\nmain(['--help'])")
    assert helped.returncode == 0 and "--data" in helped.stdout, helped.stderr
    ran = run_without_torch(
        f"from train.cli import main\nmain(['--data', {str(tmp_path)!r}, '--out', {str(tmp_path / 'r')!r}])"
    )
    assert ran.returncode == ExitCode.MISSING_EXTRA
    assert ran.stderr.strip().splitlines() == [
        "error: torch is not installed; install the extra in the defect-edge checkout with: pip install -c "
        "constraints.txt '.[train]'"
    ]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--val-fraction", "0"),  # was exit 3, a data error
        ("--val-fraction", "nan"),
        ("--lr", "nan"),  # was exit 1 from the optimiser, after loading the data
        ("--lr", "0"),  # trained nothing, silently
        ("--hard-defect-weight", "nan"),  # was exit 1 from the loss, mid-epoch
        ("--hard-defect-weight", "inf"),
        ("--max-bad-fraction", "nan"),  # never aborted, silently
        ("--seed", "-1"),  # was exit 1 from numpy
        ("--seed", "99999999999999999999"),
        ("--station-views", "9"),
        ("--station-share", "nan"),
        ("--station-share", "1.5"),
        ("--img-size", "17"),  # trained, no defect map, and export-onnx then failed (exit 4)
        ("--img-size", "100"),
    ],
)
def test_bad_number_is_a_usage_error_before_anything_is_written(
    tmp_path: Path, synthetic_data: Path, option: str, value: str
):
    out = tmp_path / "run"
    r = run(
        "--data", str(synthetic_data), "--out", str(out), "--epochs", "1", "--quiet", "--img-size", "32", option, value
    )
    assert r.exit_code == ExitCode.USAGE, r.output
    assert option in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_station_training_of_a_whole_frame_model_is_a_usage_error(tmp_path: Path, synthetic_data: Path):
    out = tmp_path / "run"
    r = run("--data", str(synthetic_data), "--out", str(out), "--arch", "seed", "--station-views", "2", "--quiet")
    assert r.exit_code == ExitCode.USAGE, r.output
    assert "--station-views" in r.output.strip().splitlines()[-1] and "Traceback" not in r.output
    assert not out.exists()


def test_more_threads_than_cores_is_a_usage_error(tmp_path: Path, synthetic_data: Path):
    # In process it would take pytest down: torch crashed with a segmentation fault on 100000 threads.
    args = ["--data", str(synthetic_data), "--out", str(tmp_path / "run"), "--epochs", "1", "--threads", "100000"]
    r = subprocess.run([sys.executable, "-m", "train.cli", *args], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == ExitCode.USAGE, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: --threads 100000 is out of range; use 1..{os.cpu_count()} (this machine's CPU cores) "
        "(see 'python -m train.cli --help')"  # a usage error names the command's help, as click's own do
    ]


def test_a_folder_holding_only_best_pt_is_not_trained_over(tmp_path: Path, synthetic_data: Path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "best.pt").write_bytes(b"a model without its last.pt")
    r = run("--data", str(synthetic_data), "--out", str(out), "--epochs", "1", "--quiet", "--img-size", "32")
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert "already holds a training run (best.pt)" in r.output
    assert (out / "best.pt").read_bytes() == b"a model without its last.pt"


def test_resume_from_a_last_pt_that_is_not_a_resume_state_is_exit_4(tmp_path: Path, synthetic_data: Path):
    out = tmp_path / "run"
    base = ["--data", str(synthetic_data), "--out", str(out), "--quiet", "--img-size", "32", "--batch-size", "16"]
    assert run(*base, "--epochs", "1").exit_code == 0
    (out / "last.pt").write_bytes((out / "best.pt").read_bytes())  # a model checkpoint, no optimiser state
    r = run(*base, "--epochs", "2", "--resume")
    assert r.exit_code == ExitCode.BAD_MODEL, r.output  # was exit 1: KeyError 'fingerprint'
    assert "not a resume state" in r.output.strip().splitlines()[-1] and "Traceback" not in r.output


def test_a_refused_resume_leaves_the_run_folder_as_it_was(tmp_path: Path, synthetic_data: Path):
    out = tmp_path / "run"
    common = ["--out", str(out), "--quiet", "--img-size", "32", "--batch-size", "16", "--epochs", "1"]
    assert run("--data", str(synthetic_data), *common).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    other = make_dataset(tmp_path / "other", seed=1)
    r = run("--data", str(other), *common, "--resume")
    assert r.exit_code == ExitCode.BAD_DATA and "other data" in r.output, r.output
    # the augmentation preview of the other data was written over this run's before the refusal
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_seed_arch_at_another_size_is_a_usage_error_before_any_work(tmp_path: Path, synthetic_data: Path):
    """Its classifier is sized for 224 px: --img-size 160 failed with exit 1 ("mat1 and mat2 shapes cannot be
    multiplied") after decoding every image, leaving a run folder behind."""
    out = tmp_path / "run"
    r = run("--data", str(synthetic_data), "--out", str(out), "--arch", "seed", "--img-size", "160", "--quiet")
    assert r.exit_code == 2 and "--arch seed takes 224 px only" in r.output and not out.exists(), r.output


def test_an_empty_out_is_a_usage_error_not_the_current_folder(tmp_path: Path, synthetic_data: Path, monkeypatch):
    """`--out "$RUN"` with RUN unset wrote best.pt, last.pt, report.json and the pictures into the current folder."""
    monkeypatch.chdir(tmp_path)
    r = run("--data", str(synthetic_data), "--out", "", "--epochs", "1", "--quiet")
    assert r.exit_code == ExitCode.USAGE and "is empty (an unset shell variable?)" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_test_split_of_training_copies_is_warned_of_and_the_report_is_strict_json(tmp_path: Path):
    """The test folder was a copy of the training one: "test 32/60 correct" with no word, and report.json held bare
    NaN (the leakage-free test of no image), which strict JSON readers refuse."""
    import shutil

    data = make_dataset(tmp_path / "data", n_train=16, n_test=4)
    shutil.rmtree(data / "test")
    shutil.copytree(data / "train", data / "test")
    out = tmp_path / "run"
    r = run("--data", str(data), "--out", str(out), "--epochs", "1", "--img-size", "32", "--loc-head-epochs", "0")
    assert r.exit_code == 0, r.output
    assert "warning: all 32 test images are copies of training or validation images" in r.output
    report = json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert report["test_leakage_free"]["n"] == 0 and report["test_leakage_free"]["auroc"] is None
    assert any(w.startswith("all 32 test images are copies") for w in report["warnings"])  # the file says it too


def test_a_quick_run_that_learnt_nothing_says_so(tmp_path: Path, casting_dir: Path):
    """The README's quick subset (--max-images-per-class) for 3 epochs shipped a model that scored every image
    0.5223 ("defective" for all 17 samples) with no warning; its weight average still held most of its first
    step's near-random weights. The default run's average is unchanged (make default-model reproduces it)."""
    from train.main import EMA_DECAY, ema_decay

    out = tmp_path / "quick"
    r = run("--data", str(casting_dir), "--out", str(out), "--epochs", "3", "--max-images-per-class", "150",
            "--loc-head-epochs", "0", "--quiet")  # fmt: skip
    assert r.exit_code == 0, r.output
    said = "every validation image scores nearly the same"
    assert f"warning: {said}" in r.output and "the model has not learnt to tell the classes apart" in r.output
    assert any(w.startswith(said) for w in json.loads((out / "report.json").read_text())["warnings"])
    assert ema_decay(40 * 89) == EMA_DECAY  # the default run: 40 epochs of 89 steps
    assert 1 / (1 - ema_decay(80)) <= 16  # 20 epochs of 4 steps: 200 steps of memory had kept 67% of the first


PROJECTION = (
    r"epoch {} took [0-9.]+ s; {} epochs end in about [0-9]+ (s|min|h|days) \(\d{{4}}-\d\d-\d\d \d\d:\d\d\); stop with "
    r"Ctrl-C, go on later with --resume"
)


def test_the_first_epoch_tells_when_the_run_will_end(tmp_path: Path, synthetic_data: Path):
    """`train-model --epochs 100000` (a typo) was taken in silence: a night of CPU before anyone noticed. After the
    first epoch a command trains, one line says how long it took and when the run will end (not with --quiet)."""
    tiny = ["--img-size", "32", "--batch-size", "16", "--loc-head-epochs", "0", "--threads", "1"]
    out = str(tmp_path / "run")
    r = run("--data", str(synthetic_data), "--out", out, "--epochs", "2", *tiny)
    assert r.exit_code == 0, r.output
    said = [line for line in r.output.splitlines() if " took " in line]
    assert len(said) == 1 and re.fullmatch(PROJECTION.format(1, 2), said[0]), r.output
    r = run("--data", str(synthetic_data), "--out", out, "--epochs", "4", "--resume")  # the first of this command
    assert r.exit_code == 0, r.output
    said = [line for line in r.output.splitlines() if " took " in line]
    assert len(said) == 1 and re.fullmatch(PROJECTION.format(3, 4), said[0]), r.output
    r = run("--data", str(synthetic_data), "--out", out, "--epochs", "6", "--resume", "--quiet")
    assert r.exit_code == 0 and " took " not in r.output, r.output


def test_an_epochs_typo_is_told_after_the_first_epoch(tmp_path: Path, synthetic_data: Path):
    from train.config import TrainConfig
    from train.main import main as train_main

    class Seen(Exception):
        pass

    said = []

    def log(line: str) -> None:
        said.append(line)
        if " took " in line:
            raise Seen  # the user's Ctrl-C, once told

    cfg = TrainConfig(data=synthetic_data, out=tmp_path / "run", epochs=100_000, img_size=32, batch_size=16,
                      loc_head_epochs=0, threads=1)  # fmt: skip
    with pytest.raises(Seen):
        train_main(cfg, log=log)
    assert re.fullmatch(PROJECTION.format(1, 100000), said[-1]) and said[-2].startswith("epoch   1/100000")


def test_a_run_longer_than_the_calendar_is_told_in_years_not_a_traceback():
    """--epochs 10**12: the end date is past the year 9999, which datetime cannot hold (OverflowError)."""
    from datetime import datetime

    from train.epochs import projection_line

    line = projection_line(1, 0.5, 10**12, datetime(2026, 11, 29))
    assert "1000000000000 epochs end in about 15844 years (after the year 9999); stop with Ctrl-C" in line
