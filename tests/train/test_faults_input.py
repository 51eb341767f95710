"""train-model on the data a production line hands it: file names, folders and values a lab set never has."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from train.checkpoint import load_checkpoint
from train.cli import main

TINY = ["--quiet", "--img-size", "32", "--batch-size", "16", "--loc-head-epochs", "0"]


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_file_name_that_is_not_utf8_is_trained_on(tmp_path: Path, synthetic_data: Path):
    """A Latin-1 name (a Windows share, an old camera: b'n\\xe9gatif.png') stopped the run after decoding every image:
    "unexpected UnicodeEncodeError: 'utf-8' codec can't encode ... surrogates not allowed", exit 1."""
    ok = synthetic_data / "train" / "ok_front"
    first = sorted(ok.iterdir())[0]
    os.rename(os.fsencode(first), os.fsencode(ok) + b"/n\xe9gatif.png")
    out = tmp_path / "run"
    r = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY)
    assert r.exit_code == 0, r.output
    used = load_checkpoint(out / "best.pt").data
    assert "ok_front/n\udce9gatif.png" in used.train_files + used.val_files
