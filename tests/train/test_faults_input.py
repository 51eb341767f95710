"""train-model on the data a production line hands it: file names, folders and values a lab set never has."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.errors import ExitCode, UsageError
from train.checkpoint import load_checkpoint
from train.cli import main
from train.config import TrainConfig

TINY = ["--quiet", "--img-size", "32", "--batch-size", "16", "--loc-head-epochs", "0"]


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def last_line(r) -> str:
    return r.output.strip().splitlines()[-1]


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


def test_a_file_name_with_control_characters_is_shown_escaped_in_the_log(tmp_path: Path, synthetic_data: Path):
    """An unreadable image named with a terminal escape and a newline: its "skipped unreadable image" line was
    printed as it was, so the terminal obeyed the escape (here: clear the screen) and the line broke in two."""
    bad = synthetic_data / "train" / "ok_front" / "bad\x1b[2J\nname.png"
    bad.write_bytes(b"not an image")
    args = ("--data", synthetic_data, "--out", tmp_path / "run", "--epochs", "1", *TINY[1:])
    r = CliRunner().invoke(main, [str(a) for a in args], color=True)  # as on a terminal: click keeps the escapes
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output
    line = next(x for x in r.output.splitlines() if x.startswith("skipped unreadable image"))
    assert "ok_front/bad\\x1b[2J\\nname.png: " in line, line


def test_a_diverging_training_is_one_line_naming_the_learning_rate(tmp_path: Path, synthetic_data: Path):
    """--lr 1e30 (1000 on the casting images) gave "unexpected RuntimeError: all elements of input should be between
    0 and 1 (rerun with --debug ... and report it)", exit 1: a bug to report, where the learning rate was too high."""
    out = tmp_path / "run"
    r = run("--data", synthetic_data, "--out", out, "--epochs", "2", *TINY, "--lr", "1e30")
    assert r.exit_code == ExitCode.USAGE, r.output
    assert last_line(r).startswith("error: training diverged in epoch 1 (") and "lower --lr (now 1e+30)" in r.output
    assert "Traceback" not in r.output and not (out / "last.pt").exists()
    again = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY)  # nothing kept: the same --out
    assert again.exit_code == 0, again.output


def test_a_run_that_diverges_later_keeps_and_names_its_best_epoch(tmp_path: Path, synthetic_data: Path, monkeypatch):
    import train.main as M

    real = M.train_one_epoch
    epochs = iter(range(1, 10))

    def nan_in_epoch_2(*args, **kwargs):
        result = real(*args, **kwargs)
        return result | {"loss": float("nan")} if next(epochs) == 2 else result

    monkeypatch.setattr(M, "train_one_epoch", nan_in_epoch_2)
    cfg = TrainConfig(data=synthetic_data, out=tmp_path / "run", epochs=3, img_size=32, batch_size=16,
                      loc_head_epochs=0, quiet=True)  # fmt: skip
    with pytest.raises(UsageError, match=r"diverged in epoch 2 \(training loss nan\).*another --out") as err:
        M.main(cfg, log=lambda _m: None)
    assert f"{tmp_path / 'run' / 'best.pt'} keeps epoch 1, the best before it" in str(err.value)
    assert load_checkpoint(tmp_path / "run" / "best.pt").epoch == 1  # kept, and the NaN epoch never saved
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_misclassified_test_image_with_a_long_file_name_gets_its_picture(tmp_path: Path):
    """A test image named as some cameras name them (250 characters, legal) that the model got wrong: the run stopped
    at its report, after every epoch, "test__ok_front__cam07_...png: cannot write (File name too long); free some
    space, then rerun the command with --resume", and the resumed run failed the same way: no report, ever."""
    import numpy as np

    from train.data import Split
    from train.report import _save_misclassified

    long = "cam07_" + "0123456789" * 24 + ".png"
    files = [f"ok_front/{long}", "def_front/a.png"]
    split = Split("test", tmp_path, files, np.zeros((2, 8, 8), np.uint8), np.array([0, 1]), ["h0", "h1"])
    errors = [{"file": files[0], "true": "ok"}, {"file": files[1], "true": "defective"}]
    (tmp_path / "run").mkdir()
    _save_misclassified(tmp_path / "run", "test", split, errors, {files[0]: 0.9, files[1]: 0.1})
    names = sorted(p.name for p in (tmp_path / "run" / "misclassified").iterdir())
    assert len(names) == 2 and names[0] == "test__def_front__a.png.png"
    assert names[1].startswith("test__ok_front__cam07_0123456789") and len(names[1]) <= 255


@pytest.mark.parametrize("where", ["train/def_front/batch2", "train/ok_front"])
def test_a_folder_that_cannot_be_listed_is_named_not_passed_over(
    tmp_path: Path, synthetic_data: Path, monkeypatch, where: str
):
    """A sub-folder without read permission (copied from a USB stick as another user) was passed over in silence:
    the run trained without its images, or said "the defective class has fewer than two different images: add
    images"; an unreadable class folder was "no images (looked for .bmp, ...)". Root reads any folder, so the
    refusal is made here by hand, as the kernel makes it for a user."""
    batch = synthetic_data / "train" / "def_front" / "batch2"
    batch.mkdir()
    for f in sorted((synthetic_data / "train" / "def_front").glob("*.png"))[2:]:
        f.rename(batch / f.name)
    real_scandir, refused = os.scandir, str(synthetic_data / where)

    def scandir(path="."):
        if os.fspath(path) == refused:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    r = run("--data", synthetic_data, "--out", tmp_path / "run", "--epochs", "1", *TINY)
    assert r.exit_code == ExitCode.BAD_DATA, r.output
    assert last_line(r) == (
        f"error: {refused}: cannot list the folder (Permission denied), so its images cannot be read; make it "
        "readable for this user, or move it out of the data folder"
    )


def test_a_linked_folder_of_images_is_named_not_passed_over(tmp_path: Path, synthetic_data: Path):
    """ok_front/batch2 -> /mnt/nas/batch2 (a folder of images on another disk) was left out without a word."""
    elsewhere = tmp_path / "nas" / "batch2"
    elsewhere.mkdir(parents=True)
    for f in sorted((synthetic_data / "train" / "ok_front").glob("*.png"))[:4]:
        f.rename(elsewhere / f.name)
    (synthetic_data / "train" / "ok_front" / "batch2").symlink_to(elsewhere)
    out = tmp_path / "run"
    r = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY)
    assert r.exit_code == 0, r.output
    assert (
        f"warning: {synthetic_data / 'train'}: links to folders are not followed (ok_front/batch2); the images in "
        "them are not trained on: copy them in, or link each image file instead"
    ) in r.output.splitlines()
    data = json.loads((out / "report.json").read_text())["data"]
    assert data["links_not_followed"] == [{"split": "train", "link": "ok_front/batch2"}]


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("batch_size", 1, "batch_size=1 is out of range; use a value at least 2"),  # trained nothing, exit 0
        ("seed", -1, "seed=-1 is out of range"),  # numpy's ValueError after decoding every image
        ("lr", float("nan"), "lr=nan is out of range; use a value above 0"),  # torch's ValueError after decoding
        ("max_bad_fraction", float("nan"), "max_bad_fraction=nan"),  # never aborted
        ("img_size", 17, "img_size=17: defectnet takes a multiple of 16, such as 16"),  # no defect map, later exit 4
        ("second_look", "no", "second_look='no': pass True or False"),  # counted as on
        ("threads", 0, "threads 0 is out of range"),  # took every core
        ("epochs", 1.5, "epochs=1.5: not a whole number"),
    ],
)
def test_the_python_api_refuses_what_the_options_refuse_before_any_work(
    tmp_path: Path, synthetic_data: Path, field: str, value: object, said: str
):
    import train.main as M

    cfg = TrainConfig(data=synthetic_data, out=tmp_path / "run", epochs=1, img_size=32, loc_head_epochs=0)
    with pytest.raises(UsageError, match=re.escape(said)):
        M.main(replace(cfg, **{field: value}), log=lambda _m: None)
    assert not (tmp_path / "run").exists()


def test_the_python_api_takes_the_arch_by_its_name(tmp_path: Path):
    """arch="defectnet" (a str, as in the CLI) was not Arch.DEFECTNET to `is`: every image was decoded without the
    part crop, then the run failed with "AttributeError: 'str' object has no attribute 'value'"."""
    from train.config import Arch
    from train.main import spec_for

    cfg = TrainConfig(data=tmp_path, out=tmp_path / "run", arch="defectnet")
    assert cfg.arch is Arch.DEFECTNET and spec_for(cfg).crop.value == "part"
    with pytest.raises(UsageError, match="arch='resnet': use one of defectnet, seed"):
        TrainConfig(data=tmp_path, out=tmp_path / "run", arch="resnet")


def test_an_out_that_is_a_file_says_so(tmp_path: Path, synthetic_data: Path):
    """--out model.onnx (a file, a slip for the run folder) was "cannot write the run folder (File exists)"."""
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    r = run("--data", synthetic_data, "--out", model, "--epochs", "1", *TINY)
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert last_line(r) == f"error: {model}: is a file, not a folder; pass --out the run folder to make (or resume)"
    assert model.read_bytes() == b"onnx"


def test_an_out_whose_name_is_too_long_is_one_line(tmp_path: Path, synthetic_data: Path):
    """An --out folder named over 255 bytes was "unexpected OSError: [Errno 36] File name too long", exit 1."""
    out = tmp_path / ("a" * 300)
    r = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY)
    assert r.exit_code == ExitCode.USAGE, r.output
    assert last_line(r) == (f"error: {out}: a name in this path is longer than the file system allows (255 bytes a "
                            "name, 4096 the whole path); use a shorter one")  # fmt: skip


def test_many_unreadable_images_are_counted_after_the_first_twenty(tmp_path: Path, synthetic_data: Path):
    """With --max-bad-fraction 1, 300 unreadable files printed 300 "skipped" lines (20,000 printed 20,000), the
    run's own lines lost among them. Now the first 20 are named and the rest counted; report.json lists them all."""
    ok = synthetic_data / "train" / "ok_front"
    for k in range(300):
        (ok / f"broken_{k:03d}.png").write_bytes(b"not a picture")
    out = tmp_path / "run"
    r = CliRunner().invoke(
        main,
        [
            str(a)
            for a in ("--data", synthetic_data, "--out", out, "--epochs", "1", "--max-bad-fraction", "1", *TINY[1:])
        ],  # fmt: skip
    )
    assert r.exit_code == 0, r.output
    assert r.output.count("skipped unreadable image") == 20
    assert f"skipped 280 more unreadable images in {synthetic_data / 'train'} (all of them in report.json" in r.output
    report = json.loads((out / "report.json").read_text())
    assert len(report["data"]["unreadable"]) == 300
