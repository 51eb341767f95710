"""train-model faults: a resume that would change the recipe, a full disk, an --out inside --data, stale
misclassified pictures, advice that must not loop, and a resumed run that must equal the uninterrupted one."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edge_runtime.errors import ExitCode
from tests.conftest import REPO, make_dataset
from train.cli import main
from train.config import TrainConfig
from train.main import main as train_main
from train.run_dir import FREE_SPACE

TINY = ["--quiet", "--img-size", "32", "--batch-size", "16", "--loc-head-epochs", "0"]


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def last_line(r) -> str:
    return r.output.strip().splitlines()[-1]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


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
        ("--positive-class", "ok_front"),  # the other class: still refused when the run's own one is accepted
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


def limited_run(args: list, limit: int) -> subprocess.CompletedProcess:
    """train-model in a subprocess whose files may not grow beyond ``limit`` bytes: writes then fail as on a full
    disk (EFBIG instead of ENOSPC), without root."""
    code = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from train.cli import main\n"
        f"main({[str(a) for a in args]!r})\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("limit", "file"),
    [(30_000, "augmentations.png"), (200_000, "best.pt")],  # libpng's "Write Error"; torch's RuntimeError
)
def test_a_full_disk_is_exit_7_naming_the_file(tmp_path: Path, synthetic_data: Path, limit: int, file: str):
    out = tmp_path / "run"
    r = limited_run(["--data", synthetic_data, "--out", out, "--epochs", "1", *TINY], limit)
    assert r.returncode == ExitCode.OUTPUT_ERROR, r.stderr  # was 1, "unexpected RuntimeError/OSError"
    assert r.stderr.strip().splitlines() == [r.stderr.strip().splitlines()[-1]]
    assert r.stderr.startswith(f"error: {out / file}: cannot write")
    assert not list(out.glob(".*.tmp"))  # nothing half-written left behind
    # the limit stopped it, not the disk: it was "is the disk full?", advising to free space, which cannot help
    assert f"ulimit -f: {limit} bytes" in r.stderr and "disk full" not in r.stderr, r.stderr


def test_a_full_disk_at_the_first_epoch_is_continued_by_the_advised_command(tmp_path: Path, synthetic_data: Path):
    out = tmp_path / "run"
    args = ["--data", synthetic_data, "--out", out, "--epochs", "1", *TINY]
    r = limited_run(args, 1_500_000)  # best.pt (0.6 MB) fits, last.pt (2.7 MB) does not
    assert r.returncode == ExitCode.OUTPUT_ERROR, r.stderr
    # best.pt was written first and kept: a half-trained model without its last.pt, which the same command and
    # --resume both refused ("free some space" could not help) and export-onnx exported
    assert not (out / "best.pt").exists()
    assert r.stderr.startswith(f"error: {out / 'last.pt'}: cannot write") and "rerun the same command" in r.stderr
    assert run(*args).exit_code == 0  # space freed: the same command, as advised


def test_a_full_disk_after_an_epoch_advises_resume_and_resume_works(
    tmp_path: Path, synthetic_data: Path, monkeypatch: pytest.MonkeyPatch
):
    import train.plots

    write = train.plots.atomic_write_bytes

    def disk_full_at_curves(path: Path, data: bytes) -> None:  # epoch 1 and its last.pt are written by then
        if path.name == "curves.png":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(path, data)

    out = tmp_path / "run"
    args = ["--data", synthetic_data, "--out", out, "--epochs", "1", *TINY]
    with monkeypatch.context() as m:
        m.setattr(train.plots, "atomic_write_bytes", disk_full_at_curves)
        r = run(*args)
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert "rerun the command with --resume" in last_line(r)  # the same command is refused: last.pt is there
    assert run(*args).exit_code == ExitCode.OUTPUT_ERROR
    assert run(*args, "--resume").exit_code == 0
    assert (out / "report.json").is_file()


def test_out_inside_data_is_refused_before_any_work(tmp_path: Path, synthetic_data: Path):
    out = synthetic_data / "train" / "ok_front" / "run"
    r = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY)
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert "--out is inside --data" in last_line(r)
    assert not out.exists()  # its PNGs became "OK" training images of the next run


@pytest.mark.parametrize("link", ["train", "test"])
def test_out_inside_a_linked_split_of_data_is_refused(tmp_path: Path, synthetic_data: Path, link: str):
    # Datasets often keep their splits as links to a bigger disk: only --data itself was resolved.
    real = tmp_path / f"{link}_elsewhere"
    (synthetic_data / link).rename(real)
    (synthetic_data / link).symlink_to(real, target_is_directory=True)
    out = real / "ok_front" / "run"
    r = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY)
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert "--out is inside --data" in last_line(r)
    assert not out.exists()  # its PNGs became "OK" images of the next run


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


def test_resume_takes_the_options_not_typed_from_the_run(one_epoch: Path, synthetic_data: Path):
    # The run used --img-size 32 --batch-size 16 --loc-head-epochs 0; the defaults were refused as changes.
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", "--quiet", "--resume")
    assert r.exit_code == 0, r.output
    assert "resuming with the run's own --img-size 32, --batch-size 16, --loc-head-epochs 0" in r.output
    report = json.loads((one_epoch / "report.json").read_text())
    assert (report["epochs"], report["config"]["img_size"], report["config"]["batch_size"]) == (2, 32, 16)


def test_resume_refuses_only_the_typed_options_that_differ(one_epoch: Path, synthetic_data: Path):
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", "--lr", "0.01", "--resume")
    assert r.exit_code == ExitCode.USAGE, r.output
    assert last_line(r).startswith(f"error: --lr 0.01: the run in {one_epoch} was trained with --lr 0.003;")
    assert "--img-size" not in last_line(r)  # not typed: the run's own value, not a change


def test_resume_with_fewer_epochs_than_trained_is_refused(one_epoch: Path, synthetic_data: Path):
    common = ["--data", synthetic_data, "--out", one_epoch, *TINY, "--resume"]
    assert run(*common, "--epochs", "2").exit_code == 0
    before = snapshot(one_epoch)
    r = run(*common, "--epochs", "1")
    assert r.exit_code == ExitCode.USAGE, r.output  # was 0: "re-planning ... from 2 to 1 epochs", report said 1
    assert last_line(r).startswith("error: --epochs 1:") and "already trained 2 epochs" in last_line(r)
    assert snapshot(one_epoch) == before
    # all epochs done, the localisation head still to train (an interrupted head): that resume still works
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", "--loc-head-epochs", "1", "--resume")
    assert r.exit_code == 0, r.output
    assert "loc_head" in torch.load(one_epoch / "best.pt", weights_only=True)


def test_resume_accepts_the_positive_class_the_run_found_itself(one_epoch: Path, synthetic_data: Path):
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "1", *TINY, "--resume",
            "--positive-class", "def_front")  # fmt: skip
    assert r.exit_code == 0, r.output  # was 2: "trained with no --positive-class", the same class


class Interrupt(KeyboardInterrupt):
    pass


def test_an_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path: Path, capsys):
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
    # it said "error: interrupted" alone; that the run goes on with --resume was only in the README
    assert "b/last.pt keeps the epochs trained so far: rerun the command with --resume" in capsys.readouterr().err
    train_main(cfg("b", resume=True), log=lambda _m: None)

    def losses(out: str) -> list[float]:
        return [json.loads(x)["train_loss"] for x in (tmp_path / out / "metrics.jsonl").read_text().splitlines()]

    assert losses("b") == losses("a")  # dropout drew other masks from epoch 2 on
    a, b = (torch.load(tmp_path / o / "last.pt", weights_only=True)["model"] for o in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # resumed as a user types it, `train-model --data D --out c --resume`: the run's --threads 1 is its own (the
    # resumed epochs ran on every core, added their floats in another order, and drifted from epoch 2 on)
    with pytest.raises(Interrupt):
        train_main(cfg("c"), log=stop_after_epoch_1)
    typed = frozenset({"data", "out", "resume"})
    train_main(replace(cfg("c", resume=True), threads=None), log=lambda _m: None, given=typed)
    assert losses("c") == losses("a")


def test_a_resumed_run_reports_the_command_that_trains_it_again(one_epoch: Path, synthetic_data: Path):
    """report.json's "command" was the resume command line: run anew, it trained another recipe (the defaults)."""
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", "--quiet", "--resume")
    assert r.exit_code == 0, r.output
    command = json.loads((one_epoch / "report.json").read_text())["command"]
    assert "--resume" not in command and "--epochs 2" in command
    assert "--img-size 32" in command and "--batch-size 16" in command and "--loc-head-epochs 0" in command


def test_resuming_with_another_arch_names_only_what_was_typed(tmp_path: Path, synthetic_data: Path):
    """--arch seed on a DefectNet run at its default size also named --img-size 224, which was not typed (it
    follows the arch); and a taken --arch showed as "Arch.SEED"."""
    from train.config import Arch
    from train.resume import _as_given

    out = tmp_path / "run"
    default_size = [a for a in TINY if a not in ("--img-size", "32")]
    assert run("--data", synthetic_data, "--out", out, "--epochs", "1", *default_size).exit_code == 0
    r = run("--data", synthetic_data, "--out", out, "--arch", "seed", "--resume")
    assert r.exit_code == ExitCode.USAGE, r.output
    assert last_line(r).startswith(f"error: --arch seed: the run in {out} was trained with --arch defectnet;")
    assert _as_given("arch", Arch.SEED, "seed", synthetic_data) == "--arch seed"


def test_finishing_a_run_again_without_a_head_takes_the_old_head_out(tmp_path: Path, synthetic_data: Path):
    """--resume --loc-head-epochs 0 on a finished run: report.json said 0, best.pt kept the head of the first finish,
    and the export shipped it."""
    out = tmp_path / "run"
    head = [a for a in TINY if a not in ("--loc-head-epochs", "0")] + ["--loc-head-epochs", "1"]
    assert run("--data", synthetic_data, "--out", out, "--epochs", "1", *head).exit_code == 0
    assert torch.load(out / "best.pt", weights_only=True).get("loc_head")
    r = run("--data", synthetic_data, "--out", out, "--loc-head-epochs", "0", "--resume")
    assert r.exit_code == 0, r.output
    assert not torch.load(out / "best.pt", weights_only=True).get("loc_head")
    assert json.loads((out / "report.json").read_text())["config"]["loc_head_epochs"] == 0


@pytest.mark.parametrize(
    ("exc", "size", "blamed"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), None, "space"),
        (OSError(errno.EFBIG, "File too large"), None, "limit"),
        (RuntimeError("unexpected pos"), 5_000, "space"),  # torch's short write, the file far below the limit
        (RuntimeError("unexpected pos"), 50_000_000, "limit"),
    ],
)
def test_the_file_size_limit_is_blamed_only_when_it_stopped_the_write(monkeypatch, exc, size, blamed):
    """A full disk under a generous ``ulimit -f`` (4 GB) was blamed on the limit: 'raise the file-size limit'."""
    import train.run_dir

    monkeypatch.setattr(train.run_dir, "file_size_limit", lambda: 4_000_000)
    monkeypatch.setattr(train.run_dir, "_room", lambda folder: 10**12)
    why, advice = train.run_dir.write_failure(exc, size=size)
    if blamed == "limit":
        assert "ulimit -f: 4000000 bytes" in why and advice.startswith("raise the file-size limit")
    else:
        assert "ulimit" not in why and advice.startswith("free some space")


def test_loc_head_advice_names_no_option_it_lacks(monkeypatch, tmp_path):
    """python -m train.loc_head writes beside its checkpoint: it advised "choose another --out", an option of
    train-model's only."""
    import train.loc_head
    from edge_runtime.errors import OutputError

    def full(*args, **kwargs):
        raise OutputError(f"{tmp_path}/best.pt: cannot write checkpoint (No space left on device); {FREE_SPACE}")

    monkeypatch.setattr(train.loc_head, "add_loc_head", full)
    (tmp_path / "best.pt").write_bytes(b"x")
    r = CliRunner().invoke(train.loc_head.main, [str(tmp_path / "best.pt")])
    assert r.exit_code == ExitCode.OUTPUT_ERROR and "free some space" in r.stderr and "--out" not in r.stderr


def test_a_disk_that_filled_before_the_limit_is_blamed_as_a_full_disk(monkeypatch):
    """A 1 MB disk under ulimit -f 2000 (2 MB): the checkpoint (larger than both) stopped at the disk, and the line
    advised raising the limit."""
    import train.run_dir

    monkeypatch.setattr(train.run_dir, "file_size_limit", lambda: 2_048_000)
    monkeypatch.setattr(train.run_dir, "_room", lambda folder: 1_000_000)  # less room than the limit
    why, advice = train.run_dir.write_failure(RuntimeError("unexpected pos"), size=2_700_000)
    assert "ulimit" not in why and advice.startswith("free some space")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_kill_or_a_closed_terminal_ends_training_like_ctrl_c(tmp_path: Path, synthetic_data: Path, sig: str):
    """``kill`` gave exit 143 and a closed terminal 129, without a word; now "error: interrupted" and exit 130, as
    Ctrl-C, with the run's last.pt left for --resume."""
    import signal
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "train.cli", "--data", str(synthetic_data), "--out", str(out), "--epochs", "400",
           *TINY, "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # an epoch has ended: a run to resume
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err
    assert (out / "last.pt").exists()  # what --resume continues from


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_stop_while_train_model_starts_is_an_interruption_not_a_kill(tmp_path: Path, synthetic_data: Path, sig):
    """The console script took the signals over only once training began: a SIGTERM or SIGHUP while torch was
    imported killed it silently (exit 143, 129)."""
    import signal
    import time

    script = Path(sys.executable).parent / "train-model"
    if not script.exists():
        pytest.skip("the train-model console script is not installed here")
    cmd = [str(script), "--data", str(synthetic_data), "--out", str(tmp_path / "run"), "--epochs", "400", *TINY]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # importing torch (about a second), before any training
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_stdout_that_fails_loses_the_messages_not_the_training(tmp_path: Path, synthetic_data: Path):
    """`train-model ... > /dev/full` (or `| head -1`) stopped the training at its first message: "unexpected
    OSError", exit 1, no best.pt."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "train.cli", "--data", str(synthetic_data), "--out", str(out), "--epochs", "1",
               *TINY]  # fmt: skip
    with open("/dev/full", "w") as full:
        proc = subprocess.run(command, cwd=REPO, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert (out / "best.pt").is_file() and "Traceback" not in proc.stderr
    assert "warning: stdout could not be written" in proc.stderr


def test_resume_without_the_runs_best_pt_or_with_another_runs_is_refused_before_training(
    one_epoch: Path, synthetic_data: Path, tmp_path: Path
):
    """Without best.pt, --resume trained every epoch and then failed on the missing file ("pass the best.pt written by
    train-model", exit 4), the run's best epoch lost for good. With another run's best.pt (same data, another seed)
    it finished exit 0: report.json described one run, best.pt held the other."""
    other = tmp_path / "other"
    assert run("--data", synthetic_data, "--out", other, "--epochs", "1", *TINY, "--seed", "5").exit_code == 0
    (one_epoch / "best.pt").write_bytes((other / "best.pt").read_bytes())
    before = snapshot(one_epoch)
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", *TINY, "--resume")
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    assert "not the best epoch that" in last_line(r) and "come from different runs" in last_line(r)
    assert "decoded" not in r.output and snapshot(one_epoch) == before
    (one_epoch / "best.pt").unlink()
    before = snapshot(one_epoch)
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", *TINY, "--resume")
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert last_line(r).endswith("best.pt: missing: the run's best epoch so far (1) would be lost; restore the run's "
                                 "own best.pt, or train anew in another --out")  # fmt: skip
    assert "decoded" not in r.output and snapshot(one_epoch) == before


def test_a_second_run_into_the_same_out_while_one_trains_is_refused(tmp_path: Path, synthetic_data: Path):
    """Two train-model runs started together on one --out both passed the "already holds a run" check and both said
    "wrote best.pt" (exit 0); one run's work was gone."""
    import fcntl
    import os

    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as the first run holds it
    try:
        r = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY)
        assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
        assert last_line(r) == f"error: {out}: another train-model is training into it; choose another --out"
        assert "decoded" not in r.output and list(out.iterdir()) == []
    finally:
        os.close(fd)
    assert run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY).exit_code == 0  # free again
    r = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY, "--resume")  # the same process, again
    assert r.exit_code == 0, r.output


def test_resume_with_another_runs_best_pt_of_the_same_data_seed_and_epoch_is_refused(
    one_epoch: Path, synthetic_data: Path, tmp_path: Path
):
    """Same data, seed and best epoch, another --lr: the check by (data, epoch) let it through, exit 0, with
    report.json describing one run and best.pt holding the other's weights."""
    other = tmp_path / "other"
    assert run("--data", synthetic_data, "--out", other, "--epochs", "1", *TINY, "--lr", "0.01").exit_code == 0
    (one_epoch / "best.pt").write_bytes((other / "best.pt").read_bytes())
    r = run("--data", synthetic_data, "--out", one_epoch, "--epochs", "2", *TINY, "--resume")
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    assert "come from different runs" in last_line(r) and "decoded" not in r.output


def test_a_run_folder_made_read_only_is_named_as_such_not_as_a_full_disk(tmp_path: Path, monkeypatch):
    """A run folder made read-only mid-training: "cannot write checkpoint (the write stopped short: is the disk
    full?); free some space, then rerun ... --resume", advice that could not help."""
    import errno

    from edge_runtime.errors import OutputError
    from train import run_dir as rd

    why, advice = rd.write_failure(PermissionError(errno.EACCES, "Permission denied"))
    assert (why, advice) == ("Permission denied", rd.MAKE_WRITABLE)
    # torch's zip writer fails with a RuntimeError and no errno: the folder itself is asked
    monkeypatch.setattr(rd.os, "access", lambda path, mode: False)
    why, advice = rd.write_failure(RuntimeError("File run/best.pt cannot be opened."), size=10, folder=tmp_path)
    assert why == f"{tmp_path} is not writable (permission denied)" and advice == rd.MAKE_WRITABLE
    (tmp_path / "last.pt").write_bytes(b"an epoch")
    with pytest.raises(OutputError) as caught, rd.rerun_advice(tmp_path):
        raise OutputError(f"{tmp_path}/best.pt: cannot write checkpoint ({why}); {advice}")
    assert str(caught.value).endswith("make the folder writable for this user, then rerun the command with "
                                      "--resume: it continues from last.pt; or choose another --out")  # fmt: skip


def test_a_stop_while_an_epochs_checkpoint_is_written_keeps_that_epoch(
    tmp_path: Path, synthetic_data: Path, monkeypatch
):
    """A Ctrl-C or SIGTERM that came while last.pt was written cut the write: the epoch just trained was lost (and,
    between the renames of last.pt and best.pt, the pair no longer matched). The write finishes, then it stops."""
    import signal

    real_save = torch.save

    def save_then_stop(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if Path(f).name.startswith(".last.pt.") and len(obj["history"]) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the stop arrives in the middle of epoch 2's write

    monkeypatch.setattr(torch, "save", save_then_stop)
    out = tmp_path / "run"
    r = run("--data", synthetic_data, "--out", out, "--epochs", "4", *TINY, "--threads", "1")
    assert r.exit_code == ExitCode.INTERRUPTED, r.output
    assert last_line(r) == "error: interrupted"
    assert len(torch.load(out / "last.pt", weights_only=True)["history"]) == 2  # epoch 2 kept
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    monkeypatch.setattr(torch, "save", real_save)
    r = run("--data", synthetic_data, "--out", out, "--epochs", "3", *TINY, "--threads", "1", "--resume")
    assert r.exit_code == 0, r.output
    assert "resumed from" in r.output and "after epoch 2" in r.output
