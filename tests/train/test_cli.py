"""train-model as a user meets it: --help, bad input gives one line and a documented exit code."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.errors import ExitCode
from tests.conftest import make_dataset
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


def test_debug_shows_the_traceback(tmp_path: Path):
    r = run("--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "--debug")
    assert r.exit_code != 0 and r.exception is not None


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
        "error: torch is not installed; install the extra with: pip install -c constraints.txt 'defect-edge[train]'"
    ]
