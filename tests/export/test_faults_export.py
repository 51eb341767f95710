"""Export faults: a damaged checkpoint is refused (exit 4); SIGTERM leaves no temporary folder behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="export needs the [train] extra (torch)")

from click.testing import CliRunner  # noqa: E402

from edge_runtime.errors import ExitCode  # noqa: E402
from export.cli import main as export_main  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.edge_runtime.test_faults_process import catches_sigterm  # noqa: E402
from train.checkpoint import load_checkpoint  # noqa: E402
from train.checkpoint_save import atomic_torch_save

DEFAULT = REPO / "train" / "default_model" / "best.pt"


@pytest.fixture(scope="module")
def stamped(tmp_path_factory) -> Path:
    """The committed default checkpoint, re-saved so it carries its content hash."""
    out = tmp_path_factory.mktemp("ckpt") / "best.pt"
    atomic_torch_save(load_checkpoint(DEFAULT), out)
    assert load_checkpoint(out).sha256
    return out


def flip_inside_largest_tensor(src: Path, dst: Path) -> None:
    """Flip one bit in the middle of the largest stored tensor: the zip and the pickle stay valid."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    # local header: 30 bytes + name + extra, then the stored (uncompressed) bytes
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x08
    dst.write_bytes(bytes(data))


def test_bit_flipped_checkpoint_is_refused_with_exit_4(stamped: Path, tmp_path: Path):
    bad = tmp_path / "flipped.pt"
    flip_inside_largest_tensor(stamped, bad)
    r = CliRunner().invoke(export_main, [str(bad), "--out", str(tmp_path / "m.onnx")])
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    assert "hash mismatch" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_sigterm_during_export_removes_the_temporary_folder(stamped: Path, tmp_path: Path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "export.cli", str(stamped), "--out", str(tmp_path / "m.onnx"), "--force"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not catches_sigterm(proc.pid) or not list(tmp_path.glob("defect-edge-export-*")):
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (ExitCode.INTERRUPTED, ExitCode.BAD_DATA, ExitCode.OK), out + err
    assert "Traceback" not in out + err
    assert list(tmp_path.glob("defect-edge-export-*")) == []
    assert not list(tmp_path.glob(".m.onnx.*"))


@pytest.mark.slow
def test_a_stop_while_the_working_folder_is_removed_still_removes_it(
    stamped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A SIGTERM that came while the export removed its working folder at its end cut the removal short: the
    folder, half removed, stayed in the temporary folder (seen once under load in the test above), and the export,
    its model written, ended "interrupted"."""
    import tempfile

    real_rmtree = tempfile._shutil.rmtree

    def stopped_while_removing(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if "defect-edge-export-" in str(path):
            os.kill(os.getpid(), signal.SIGTERM)
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(tempfile._shutil, "rmtree", stopped_while_removing)
    r = CliRunner().invoke(export_main, [str(stamped), "--out", str(tmp_path / "m.onnx"), "--force"])
    # the model was in place before the stop: a stop then only counts (it said "interrupted", exit 130)
    assert r.exit_code == ExitCode.OK and "Traceback" not in r.output, r.output
    assert list(tmp_path.glob("defect-edge-export-*")) == [] and (tmp_path / "m.onnx").stat().st_size > 0


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (lambda tmp, ckpt: fifo(tmp / "pipe.onnx"), "not a regular file"),  # was replaced (so was /dev/full)
        (lambda tmp, ckpt: ckpt, "is the checkpoint being exported"),  # the trained weights were lost
        (lambda tmp, ckpt: tmp / "model.pt", "named like a checkpoint"),
        # the run's own report.json became ONNX bytes, exit 0; so did metrics.jsonl and a name without a suffix
        (lambda tmp, ckpt: tmp / "report.json", "is named .json, not a model file; pass --out FILE.onnx"),
        (lambda tmp, ckpt: tmp / "model", "is without the .onnx suffix, not a model file"),
    ],
)
def test_out_that_must_not_be_replaced_is_refused_before_any_work(stamped: Path, tmp_path: Path, target, message):
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(stamped.read_bytes())
    out = target(tmp_path, ckpt)
    kind = out.stat().st_mode if out.exists() else None
    r = CliRunner().invoke(export_main, [str(ckpt), "--out", str(out)])
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "Traceback" not in r.output
    assert ckpt.read_bytes() == stamped.read_bytes()
    assert (out.stat().st_mode if out.exists() else None) == kind


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--opset", "99"], ExitCode.USAGE, "--opset 99"),  # was exit 1: torch's RuntimeError
        (["--opset", "99999999999999999999"], ExitCode.USAGE, "--opset"),  # was exit 1: a TypeError inside torch
        (["--quantize", "--max-drop", "nan"], ExitCode.USAGE, "--max-drop"),  # was exit 6: "limit nan"
    ],
)
def test_bad_numbers_are_usage_errors_before_any_work(stamped: Path, tmp_path: Path, args, code, message):
    r = CliRunner().invoke(export_main, [str(stamped), "--out", str(tmp_path / "m.onnx"), *args])
    assert r.exit_code == code, r.output
    assert message in r.output.strip().splitlines()[-1] and "Traceback" not in r.output
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("err", ["ENOSPC", "EFBIG"])
def test_a_full_or_limited_temporary_folder_is_one_output_line_and_exit_7(
    stamped: Path, tmp_path: Path, monkeypatch, err
):
    """torch.onnx.export writes into the working folder under TMPDIR: a full one, or a file-size limit (ulimit -f),
    was "unexpected OSError: [Errno 28] No space left on device", exit 1 (a bug, by the README's codes)."""
    import errno
    import tempfile

    import export.graph as graph

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)))

    monkeypatch.setattr(graph, "export_graph", full)
    old = tmp_path / "m.onnx"
    old.write_bytes(b"the last export")
    r = CliRunner().invoke(export_main, [str(stamped), "--out", str(old)])
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith(f"error: {tempfile.gettempdir()}: cannot write the export's working files")
    assert "TMPDIR" in line and old.read_bytes() == b"the last export"


def test_a_checkpoint_of_another_shape_or_with_three_classes_is_named_as_such(stamped: Path, tmp_path: Path):
    """Weights of another width said "(Error(s) in loading state_dict for DefectNet:)", an empty reason; three class
    names were cut to two in silence and export said "class_names[1] is 'b'; re-export the model"."""
    import torch

    d = load_checkpoint(stamped).to_dict()
    d["state_dict"] = {k: (torch.zeros(v.shape[0] + 1, *v.shape[1:]) if k.endswith("features.2.0.weight") else v)
                       for k, v in d["state_dict"].items()}  # fmt: skip
    atomic_torch_save(d, tmp_path / "wider.pt")
    r = CliRunner().invoke(export_main, [str(tmp_path / "wider.pt"), "--out", str(tmp_path / "m.onnx")])
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    assert "size mismatch for features.2.0.weight" in r.output and "DefectNet:)" not in r.output
    d = load_checkpoint(stamped).to_dict()
    d["class_names"] = ["def_front", "ok_front", "scratch"]
    atomic_torch_save(d, tmp_path / "three.pt")
    r = CliRunner().invoke(export_main, [str(tmp_path / "three.pt"), "--out", str(tmp_path / "m.onnx")])
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    assert "checkpoint names 3 classes ('def_front', 'ok_front', 'scratch')" in r.output
    assert not (tmp_path / "m.onnx").exists()
    odd = [
        ("class_names", ["ok_front", "ok_front"], "exactly two distinct names"),
        ("class_names", ["", "def_front"], "exactly two distinct names"),
        ("class_names", ["ok", "ok "], "exactly two distinct names"),
        ("class_names", [0, 1], "exactly two distinct names"),
        ("class_names", ["ok", "defective\x00"], "exactly two distinct names"),
        ("class_names", ["ok_front"], "names 1 class ("),
        ("positive_class", "scratch", "positive class 'scratch' is not one of its classes"),
    ]
    for key, value, said in odd:
        d = load_checkpoint(stamped).to_dict()
        d[key] = value
        atomic_torch_save(d, tmp_path / "odd.pt")
        r = CliRunner().invoke(export_main, [str(tmp_path / "odd.pt"), "--out", str(tmp_path / "m.onnx")])
        assert r.exit_code == ExitCode.BAD_MODEL and said in r.output, r.output
        assert "re-export" not in r.output


@pytest.mark.parametrize("extra", [[], ["--force"], ["--quantize", "int8", "--force"]])
def test_weights_that_are_not_finite_are_refused_before_any_work(stamped: Path, tmp_path: Path, extra):
    """NaN weights made a model that scores NaN: with --force it was written and reported "262/715 correct", and
    quantized it failed inside onnxruntime ("unexpected AssertionError: scale issue", exit 1)."""
    import torch

    d = load_checkpoint(stamped).to_dict()
    name = next(k for k, v in d["state_dict"].items() if v.is_floating_point() and v.ndim == 4)
    d["state_dict"][name] = torch.full_like(d["state_dict"][name], float("nan"))
    atomic_torch_save(d, tmp_path / "nan.pt")
    r = CliRunner().invoke(export_main, [str(tmp_path / "nan.pt"), *extra, "--out", str(tmp_path / "m.onnx")])
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    assert f"weights are not finite (NaN or infinite, or a negative variance; first in {name})" in r.output
    assert "evaluation:" not in r.output and not (tmp_path / "m.onnx").exists()
    d = load_checkpoint(stamped).to_dict()  # a NaN in the preprocessing: "unexpected ValueError" after the export
    d["preprocess"]["mean"] = float("nan")
    atomic_torch_save(d, tmp_path / "pre.pt")
    r = CliRunner().invoke(export_main, [str(tmp_path / "pre.pt"), *extra, "--out", str(tmp_path / "m.onnx")])
    assert r.exit_code == ExitCode.BAD_MODEL and "preprocessing holds mean=nan" in r.output, r.output
    # in the localisation head (the defect boxes moved), or a negative BatchNorm variance (finite, NaN scores)
    for where in ("loc_head", "running_var"):
        d = load_checkpoint(stamped).to_dict()
        sd = d["loc_head"]["state_dict"] if where == "loc_head" else d["state_dict"]
        key = next(k for k, v in sd.items() if v.is_floating_point() and (where == "loc_head" or k.endswith(where)))
        sd[key] = sd[key].clone()
        sd[key].view(-1)[0] = float("nan") if where == "loc_head" else -1.0
        atomic_torch_save(d, tmp_path / f"{where}.pt")
        r = CliRunner().invoke(export_main, [str(tmp_path / f"{where}.pt"), *extra, "--out", str(tmp_path / "m.onnx")])
        assert r.exit_code == ExitCode.BAD_MODEL and "weights are not finite" in r.output, r.output


@pytest.mark.parametrize("stdout", ["full", "reader-gone"])
def test_a_stdout_that_fails_loses_the_messages_not_the_export(tiny_run: Path, tmp_path: Path, stdout: str):
    """`export-onnx ... > /dev/full` was exit 7 blaming TMPDIR ("/tmp: cannot write the export's working files"),
    and `export-onnx ... | head -1` was "unexpected BrokenPipeError", exit 1: no model written either way."""
    out = tmp_path / "m.onnx"
    command = [sys.executable, "-m", "export.cli", str(tiny_run), "--out", str(out)]
    if stdout == "full":
        if not os.path.exists("/dev/full"):
            pytest.skip("needs /dev/full")
        with open("/dev/full", "w") as full:
            proc = subprocess.run(command, cwd=REPO, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
        err = proc.stderr
    else:
        p = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout is not None
        p.stdout.readline()
        p.stdout.close()  # like `| head -1`
        _, err = p.communicate(timeout=300)
        proc = subprocess.CompletedProcess(command, p.returncode, None, err)
    assert proc.returncode == ExitCode.OK, err
    assert out.is_file() and "Traceback" not in err and "error:" not in err
    assert "warning: stdout could not be written" in err and "its messages were lost, not the work" in err


def test_no_writable_temporary_folder_is_one_line_naming_tmpdir(tiny_run: Path, tmp_path: Path, monkeypatch):
    """With /tmp, /var/tmp and the current folder read-only, the export's own exit-7 line called
    tempfile.gettempdir() for its message, which raised again: "unexpected FileNotFoundError", exit 1."""
    import tempfile

    import export.main as export_module

    def no_tmp(*a, **kw):
        raise FileNotFoundError(2, "No usable temporary directory found in ['/tmp', '/var/tmp']")

    monkeypatch.setattr(export_module.tempfile, "TemporaryDirectory", no_tmp)
    monkeypatch.setattr(tempfile, "gettempdir", no_tmp)
    monkeypatch.setenv("TMPDIR", "/ro/tmp")
    r = CliRunner().invoke(export_main, [str(tiny_run), "--out", str(tmp_path / "m.onnx")])
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert "/ro/tmp: cannot make the export's working folder" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "m.onnx").exists()


def test_ship_replaces_the_shipped_pair_and_card_together_or_not_at_all(tiny_run: Path, tmp_path: Path, monkeypatch):
    """`python -m export.ship` whose INT8 export failed its accuracy gate (or was stopped) after the FP32 one had been
    written left the shipped FP32 file from the new checkpoint, the INT8 one and the model card from the old."""
    import export.ship as ship_module
    from edge_runtime.errors import GateError

    out = tmp_path / "models"
    ship_module.ship(tiny_run, out, log=lambda _m: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["MODEL_CARD.md", "defectnet_fp32.onnx", "defectnet_int8.onnx"]
    real = ship_module.export_onnx

    def int8_fails(checkpoint, path, cfg, *, log):
        if cfg.precision.value == "int8":
            raise GateError("int8 loses 9.09 percentage points ...; model not written")
        return real(checkpoint, path, cfg, log=log)

    monkeypatch.setattr(ship_module, "export_onnx", int8_fails)
    from train.checkpoint import load_checkpoint
    from train.checkpoint_save import atomic_torch_save

    other = tmp_path / "other.pt"  # another checkpoint: same weights, another threshold, so another FP32 file

    ckpt = load_checkpoint(tiny_run)
    ckpt.threshold = 0.25
    atomic_torch_save(ckpt, other)
    with pytest.raises(GateError):
        ship_module.ship(other, out, log=lambda _m: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing half-replaced, no staging left


def test_ship_out_dir_that_cannot_hold_the_models_is_one_line_exit_7(tmp_path: Path):
    """`python -m export.ship --out-dir FILE` was "unexpected FileExistsError", exit 1; a bad checkpoint left the
    --out-dir it had made behind, empty."""
    from export.ship import main as ship_main

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for out_dir, words in ((blocker, "is a file, not a folder"), (blocker / "models", "cannot write the shipped")):
        r = CliRunner().invoke(ship_main, ["--checkpoint", str(DEFAULT), "--out-dir", str(out_dir)])
        assert r.exit_code == ExitCode.OUTPUT_ERROR and "Traceback" not in r.output, r.output
        assert r.output.startswith("error: ") and words in r.output and len(r.output.splitlines()) == 1, r.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    r = CliRunner().invoke(ship_main, ["--checkpoint", str(junk), "--out-dir", str(tmp_path / "new" / "models")])
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    assert not (tmp_path / "new").exists()


def test_a_stop_signal_between_the_shipped_files_renames_waits_until_all_three_are_in(
    tiny_run: Path, tmp_path: Path, monkeypatch
):
    """A Ctrl-C or SIGTERM that came between two of `python -m export.ship`'s final renames left the new FP32 file
    beside the old INT8 file and model card, and said "interrupted". Now the signal waits until all three are in,
    then only counts: the models are shipped, as one set."""
    import os
    import signal

    import export.ship as ship_module
    from edge_runtime.stopping import StopSignals
    from train.checkpoint import load_checkpoint
    from train.checkpoint_save import atomic_torch_save

    out = tmp_path / "models"
    ship_module.ship(tiny_run, out, log=lambda _m: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = tmp_path / "other.pt"  # same weights, another threshold: every shipped file differs
    ckpt = load_checkpoint(tiny_run)
    ckpt.threshold = 0.25
    atomic_torch_save(ckpt, other)
    real_replace, renamed = os.replace, []

    def replace_then_ctrl_c(src, dst):  # os.replace is the os module's: the exports' own renames pass through
        real_replace(src, dst)
        if Path(dst).parent == out:  # one of the final three (the exports rename within the staging folder)
            renamed.append(Path(dst).name)
            if len(renamed) == 1:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace_then_ctrl_c)
    with StopSignals() as stop:
        ship_module.ship(other, out, log=lambda _m: None, stop=stop)
    assert stop.count == 1 and len(renamed) == 3
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(after) == sorted(before)
    assert all(after[name] != before[name] for name in before), "a shipped file was left from the old set"


def test_a_second_export_to_the_same_out_is_refused_while_the_first_runs(tiny_run: Path, tmp_path: Path):
    """Two exports to one --out at once (FP32, then INT8) both said "wrote m.onnx"; the file held the INT8 model,
    and the FP32 export's user was not told."""
    from edge_runtime.model import EdgeModel
    from tests.export.conftest import TINY_MAX_DROP

    out = tmp_path / "out" / "m.onnx"
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "TMPDIR": str(work)}
    first = subprocess.Popen(
        [sys.executable, "-m", "export.cli", str(tiny_run), "--out", str(out)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(work.glob("defect-edge-export-*")) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)  # held in the middle of its work while the second one starts
        assert first.poll() is None, first.communicate()
        second = CliRunner().invoke(
            export_main, [str(tiny_run), "--quantize", "--out", str(out), "--max-drop", TINY_MAX_DROP]
        )
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=300)
    assert second.exit_code == ExitCode.OUTPUT_ERROR, second.output
    assert f"error: {out}: another export-onnx is writing this file now" in second.output
    assert first.returncode == ExitCode.OK and f"wrote {out}" in stdout, stdout + stderr
    assert EdgeModel(out).info.precision.value == "fp32"  # the first export's model, as it said
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]  # no lock or temporary file left
