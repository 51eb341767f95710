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
from train.checkpoint import atomic_torch_save, load_checkpoint  # noqa: E402

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
