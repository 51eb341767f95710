"""export-onnx never writes over the images it reads, refuses options it would ignore, and says when the accuracy
gate cannot see a missed defect."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="export needs the [train] extra (torch)")

from edge_runtime.errors import ExitCode  # noqa: E402
from tests.export.conftest import TINY_MAX_DROP, export_cli  # noqa: E402
from tests.export.test_cli import assert_one_line_error  # noqa: E402


@pytest.fixture
def evals(tiny_data: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_data / "test", tmp_path / "evals"))


@pytest.mark.parametrize(
    ("target", "extra", "message"),
    [
        (lambda ev, data: ev / "ok_front" / "ok_front_000.png", [], "named like an image"),  # was overwritten
        (lambda ev, data: ev / "ok_front" / "m.onnx", [], "inside --eval-data"),
        (lambda ev, data: ev.parent / "calib" / "m.onnx", ["--quantize", "--calib-data", "CALIB"], "--calib-data"),
        (lambda ev, data: data / "train" / "ok_front" / "m.onnx", [], "the checkpoint's training images"),
    ],
)
def test_out_among_the_images_it_reads_is_refused_before_any_work(
    tiny_run: Path, tiny_data: Path, evals: Path, target, extra: list[str], message: str
):
    calib = shutil.copytree(tiny_data / "train" / "ok_front", evals.parent / "calib")
    out = target(evals, tiny_data)
    before = {p: p.read_bytes() for p in [*evals.parent.rglob("*.png"), *(tiny_data / "train").rglob("*.png")]}
    args = [a if a != "CALIB" else calib for a in extra]
    r = export_cli(tiny_run, "--eval-data", evals, "--out", out, *args)
    assert_one_line_error(r, ExitCode.OUTPUT_ERROR, message)
    assert all(p.read_bytes() == b for p, b in before.items())
    assert not out.exists() or out.suffix == ".png"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--int8-scheme", "s8s8"], "--int8-scheme"),
        (["--max-drop", "1"], "--max-drop"),
        (["--calib-data", "CALIB", "--calib-count", "20"], "--calib-data, --calib-count"),  # eval images do parity
        (["--quantize", "fp16", "--int8-scheme", "s8s8"], "--int8-scheme"),
        (["--float-convs", "3"], "--float-convs"),
        (["--quantize", "fp16", "--float-convs", "0"], "--float-convs"),
    ],
)
def test_quantization_options_that_would_be_ignored_are_a_usage_error(
    tiny_run: Path, tiny_data: Path, tmp_path: Path, args: list[str], named: str
):
    # An FP32 model under an int8 name was written, with no word that the options went unused.
    out = tmp_path / "m_int8.onnx"
    r = export_cli(tiny_run, "--out", out, *[tiny_data / "train" if a == "CALIB" else a for a in args])
    assert_one_line_error(r, ExitCode.USAGE, named)
    assert not out.exists()


def test_calibration_images_make_the_grad_cam_of_an_fp32_export(gradcam_run: Path, tiny_data: Path, tmp_path: Path):
    """A checkpoint without a localisation head whose training images had moved: the export said "pass
    --calib-data DIR", and with it "--calib-data: not used by an fp32 export" (the map's Grad-CAM uses them)."""
    out = tmp_path / "m.onnx"
    r = export_cli(gradcam_run, "--out", out, "--calib-data", tiny_data / "train", "--calib-count", 20)
    assert r.exit_code == 0, r.output
    assert "weights averaged over 20 calibration images" in r.output and out.exists()


def test_unreadable_calibration_picks_are_replaced_by_readable_images(tiny_run: Path, tiny_data: Path, tmp_path: Path):
    """The --calib-count sample was drawn before the files were read: 12 readable images among 42 files gave
    "only 1 readable calibration images (need at least 10)"."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted((tiny_data / "train").rglob("*.png"))[:12]:
        shutil.copy(p, calib / p.name)
    for k in range(30):
        (calib / f"bad{k:02d}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    out = tmp_path / "m.onnx"
    r = export_cli(tiny_run, "--quantize", "--calib-data", calib, "--calib-count", 10, "--out", out, "--max-drop",
                   TINY_MAX_DROP)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "calibration: 10 images" in r.output and out.exists()
    # A folder 70% damaged was told in a warning line per file; now in one line that counts them and names three.
    told = [line for line in r.output.splitlines() if "bad" in line and ".png" in line]
    assert len(told) == 1 and re.search(r"warning: skipped \d+ unreadable calibration images of \d+ read", told[0])
    assert told[0].count("bad") == 3 and "more" in told[0], told[0]


def test_calibration_images_still_check_parity_when_there_are_no_eval_images(
    tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch
):
    import export.images

    monkeypatch.setattr(export.images, "default_eval_folder", lambda ckpt: None)
    r = export_cli(tiny_run, "--out", tmp_path / "m.onnx", "--calib-data", tiny_data / "train", "--calib-count", 64)
    assert r.exit_code == 0, r.output
    assert "calibration: 64 images" in r.output


def test_too_few_calibration_images_names_the_option(tiny_run: Path, tmp_path: Path):
    r = export_cli(tiny_run, "--quantize", "--calib-count", 5, "--out", tmp_path / "m.onnx")
    assert r.exit_code == ExitCode.USAGE, r.output  # was exit 3, blaming the data: "pass --calib-data DIR"
    assert "--calib-count" in r.output and "10" in r.output
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("emptied", ["files", "folder"])
def test_the_gate_warns_when_the_eval_images_hold_no_defect(tiny_run: Path, evals: Path, tmp_path: Path, emptied):
    """Without its defect folder at all, a folder of OK images was "no class subfolders (ok_front/def_front ...)",
    exit 3; an empty defect folder gave the warning, as the README says of both."""
    shutil.rmtree(evals / "def_front")
    if emptied == "files":
        (evals / "def_front").mkdir()
    r = export_cli(tiny_run, "--quantize", "--eval-data", evals, "--out", tmp_path / "m.onnx", "--max-drop",
                   TINY_MAX_DROP, "--force")  # fmt: skip
    assert r.exit_code == 0, r.output
    warning = [ln for ln in r.output.splitlines() if ln.startswith("warning:") and "no defective images" in ln]
    assert len(warning) == 1 and "missed defect" in warning[0]


def test_the_default_output_of_an_installed_default_model_is_the_current_folder():
    """With a non-editable install, ``export-onnx --quantize`` wrote ``.../site-packages/train/default_model/
    best_int8.onnx``: where nobody looks, and removed by the next install. A checkout's checkpoint keeps its own
    folder."""
    from export.config import Precision
    from export.main import default_output

    installed = Path("/venv/lib/python3.11/site-packages/train/default_model/best.pt")
    assert default_output(installed, Precision.INT8) == Path("best_int8.onnx")
    assert default_output(Path("/work/repo/train/default_model/best.pt"), Precision.INT8) == Path(
        "/work/repo/train/default_model/best_int8.onnx"
    )


def test_symmetry_look_for_a_model_that_is_not_part_centred_is_a_usage_error(tiny_run: Path, tmp_path: Path):
    """``--symmetry-look`` on a whole-frame model (the origin network's) was dropped without a word, while
    ``--map`` on the same model is an error."""
    import torch

    from train.checkpoint_save import atomic_torch_save

    d = torch.load(tiny_run, map_location="cpu", weights_only=True)
    d["preprocess"] = {**d["preprocess"], "crop": "center"}
    whole_frame = tmp_path / "whole_frame.pt"
    atomic_torch_save(d, whole_frame)
    out = tmp_path / "m.onnx"
    r = export_cli(whole_frame, "--symmetry-look", "--out", out)
    assert_one_line_error(r, ExitCode.USAGE, "--symmetry-look")
    assert "not part-centred" in r.output and not out.exists()


@pytest.mark.parametrize("n", ["7", "100"])
def test_float_convs_that_would_leave_nothing_in_int8_are_refused(tiny_run: Path, tmp_path: Path, n: str):
    """A 5-convolution network exported with --float-convs 5 was an "INT8" file without one QuantizeLinear, as
    large and slow as FP32, and its metadata said "first 100 convolutions in float"."""
    out = tmp_path / "m_int8.onnx"
    r = export_cli(tiny_run, "--quantize", "int8", "--float-convs", n, "--out", out)
    assert_one_line_error(r, ExitCode.USAGE, f"--float-convs {n}", "has 7 convolutions", "at most 6", "FP32")
    assert not out.exists() and "calibration" not in r.output and "localisation map" not in r.output  # no work done


def test_float_convs_default_is_the_architectures_and_bounds_are_checked():
    from edge_runtime.errors import UsageError
    from export.config import ExportConfig
    from export.quantize import check_float_convs

    # Measured on defectnet; the origin network's first two convolutions are 61% of its multiply-adds.
    assert ExportConfig().float_convs_for("defectnet") == 2 and ExportConfig().float_convs_for("seed") == 0
    assert ExportConfig(float_convs=3).float_convs_for("seed") == 3
    with pytest.raises(ValueError, match="0 or more"):
        ExportConfig(float_convs=-1)  # the API kept 6 of 7 in float (a slice [:-1]) and said "first -1"
    check_float_convs(0, 0, "no-conv")  # a network without convolutions still exports as INT8
    with pytest.raises(UsageError, match="has 1 convolution, .* none can stay in float"):
        check_float_convs(1, 1, "one-conv")


def test_an_unreadable_calibration_image_is_named_once(gradcam_run: Path, tiny_data: Path, tmp_path: Path):
    """A model without a trained head makes its Grad-CAM map from the calibration images, then calibrates INT8 on
    them again: each unreadable file was named twice."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted((tiny_data / "train").rglob("*.png"))[:30]:
        shutil.copy(p, calib / p.name)
    (calib / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    out = tmp_path / "m_int8.onnx"
    r = export_cli(gradcam_run, "--quantize", "--calib-data", calib, "--calib-count", 31, "--out", out,
                   "--max-drop", TINY_MAX_DROP)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert r.output.count("broken.png") == 1, r.output


def test_eval_folders_named_otherwise_are_named_in_the_refusal(tiny_run: Path, tiny_data: Path, tmp_path: Path):
    """--eval-data with good/ and bad/: "no class subfolders" beside two of them."""
    evals = tmp_path / "gb"
    shutil.copytree(tiny_data / "test" / "ok_front", evals / "good")
    shutil.copytree(tiny_data / "test" / "def_front", evals / "bad")
    r = export_cli(tiny_run, "--eval-data", evals, "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_DATA, "its folders (bad, good) are not the model's classes")


def test_evaluating_on_the_training_images_is_warned_and_not_a_nan(tiny_run: Path, tiny_data: Path, tmp_path: Path):
    """--eval-data DIR/train: the gate "passed" on the images the model learnt, and the leakage-free cell read
    "0/0 (nan%, 0 err)", without a word."""
    r = export_cli(tiny_run, "--eval-data", tiny_data / "train", "--out", tmp_path / "m.onnx")
    assert r.exit_code == 0, r.output
    assert "eval images are training images of this checkpoint; the accuracy check is no test there" in r.output
    assert "nan%" not in r.output and "| n/a |" in r.output
    clean = export_cli(tiny_run, "--eval-data", tiny_data / "test", "--out", tmp_path / "t.onnx")
    assert clean.exit_code == 0 and "no test there" not in clean.output


def test_calibrating_on_the_accuracy_checks_own_images_is_warned(tiny_run: Path, tiny_data: Path, tmp_path: Path):
    """--calib-data on the test split the INT8 gate scores: the gate "passed" on ranges fitted to its own images."""
    args = ["--quantize", "--float-convs", "0", "--max-drop", TINY_MAX_DROP, "--force"]
    r = export_cli(tiny_run, *args, "--calib-data", tiny_data / "test", "--out", tmp_path / "q.onnx")
    assert r.exit_code == 0, r.output
    assert "holds the accuracy check's images" in r.output and "the INT8 gate is then optimistic" in r.output


def test_calibrating_on_copies_of_the_accuracy_checks_images_is_warned(tiny_run: Path, tiny_data: Path, tmp_path: Path):
    """--calib-data a folder holding copies of test images (copied to the line PC): not a word, as the folders
    differ; the gate "passed" on ranges fitted to its own images."""
    calib = tmp_path / "calib"
    shutil.copytree(tiny_data / "test" / "def_front", calib)
    for f in sorted((tiny_data / "train" / "ok_front").iterdir())[:20]:
        shutil.copy(f, calib / f"train_{f.name}")
    copied = len(list((tiny_data / "test" / "def_front").iterdir()))
    args = ["--quantize", "--float-convs", "0", "--max-drop", TINY_MAX_DROP, "--force"]
    r = export_cli(tiny_run, *args, "--calib-data", calib, "--out", tmp_path / "q.onnx")
    assert r.exit_code == 0, r.output
    assert f"{copied} of its {copied + 20} calibration images are copies of the accuracy check's images" in r.output
    assert "the INT8 gate is then optimistic" in r.output
    clean = tmp_path / "clean"
    shutil.copytree(tiny_data / "train" / "def_front", clean)
    r = export_cli(tiny_run, *args, "--calib-data", clean, "--out", tmp_path / "c.onnx")
    assert r.exit_code == 0 and "gate is then optimistic" not in r.output, r.output
    other = export_cli(tiny_run, *args, "--calib-data", tiny_data / "train", "--out", tmp_path / "t.onnx")
    assert other.exit_code == 0 and "accuracy check's images" not in other.output


def test_unreadable_eval_images_are_counted_per_class_and_a_thinned_class_is_warned_of(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
):
    """98 of 100 defective eval images unreadable: one line said "skipped 98 ... of 160 (61%)", the gate passed
    on the 2 left, and nothing said the defects went unchecked; a newline in a name broke the line; 1 of 301 was 0%."""
    evals = tmp_path / "ev"
    shutil.copytree(tiny_data / "test" / "ok_front", evals / "ok_front")
    (evals / "def_front").mkdir()
    for p in sorted((tiny_data / "test" / "def_front").glob("*.png"))[:2]:
        shutil.copy(p, evals / "def_front" / p.name)
    for k in range(6):
        (evals / "def_front" / f"bad{k}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    (evals / "def_front" / "a\nbad.png").write_bytes(b"")  # listed first: named in the line
    r = export_cli(tiny_run, "--eval-data", evals, "--out", tmp_path / "m.onnx")
    assert r.exit_code == 0, r.output
    n_ok = len(list((evals / "ok_front").iterdir()))
    lines = r.output.splitlines()
    skipped = [line for line in lines if line.startswith("warning: skipped")]
    assert skipped == [line for line in lines if ".png" in line and "bad" in line]  # one line names them all
    assert f"skipped 7 unreadable eval images of {n_ok + 9} read" in skipped[0] and "; def_front/ 7 of 9)" in skipped[0]
    assert "a\\nbad.png" in skipped[0] and not any(line.startswith("bad.png") for line in lines)
    assert any("def_front: only 2 of its 9 eval images could be read" in line for line in lines), r.output
    assert not any("ok_front: only" in line for line in lines)


def test_the_python_api_takes_the_enums_strings_and_refuses_what_the_cli_refuses(tiny_run: Path, tmp_path: Path):
    """ExportConfig(precision="int8") was converted to FP16 and crashed after the whole export with "'str' object
    has no attribute 'value'"; calib_count=3 said "only 3 readable calibration images"; opset=9 printed torch's
    graph."""
    from edge_runtime.model import EdgeModel
    from edge_runtime.model_info import Precision
    from export.config import ExportConfig, Int8Scheme
    from export.main import export_onnx

    cfg = ExportConfig(precision="int8", scheme="s8s8", max_drop_pp=float(TINY_MAX_DROP), eval_data=str(tmp_path))
    assert cfg.precision is Precision.INT8 and cfg.scheme is Int8Scheme.S8S8 and cfg.eval_data == tmp_path
    out = tmp_path / "api_int8.onnx"
    cfg = ExportConfig(precision="int8", max_drop_pp=float(TINY_MAX_DROP))
    assert export_onnx(str(tiny_run), str(out), cfg, log=lambda _m: None) == out  # str paths too
    assert EdgeModel(out).info.precision is Precision.INT8
    for bad, word in (
        ({"precision": "int4"}, "Precision"),
        ({"calib_count": 3}, "calib_count must be at least 10"),
        ({"opset": 9}, "opset must be 17 or more"),
        ({"max_drop_pp": float("nan")}, "max_drop_pp"),
        ({"max_drop_pp": -1.0}, "max_drop_pp"),
        ({"calib_data": ""}, "calib_data is empty"),
    ):
        with pytest.raises(ValueError, match=word):
            ExportConfig(**bad)


def test_a_dataset_without_test_split_is_told_so_not_to_rename_or_relocate_it(
    tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch
):
    """A station folder with train/ only (no test images): --quantize was told "the checkpoint's test split is not
    here; set DEFECT_EDGE_DATA to the dataset folder" (it was here), and --eval-data on it "its folders (train) are
    not the model's classes; rename them"."""
    import torch

    from train.checkpoint_save import atomic_torch_save

    monkeypatch.delenv("DEFECT_EDGE_DATA", raising=False)
    station = tmp_path / "station3"
    shutil.copytree(tiny_data / "train", station / "train")
    ckpt = torch.load(tiny_run, weights_only=True)
    ckpt["data"]["root"] = ckpt["data"]["root_as_given"] = str(station)
    atomic_torch_save(ckpt, tmp_path / "run" / "best.pt")
    out = tmp_path / "m.onnx"
    r = export_cli(tmp_path / "run" / "best.pt", "--quantize", "--out", out)
    assert_one_line_error(r, ExitCode.BAD_DATA, f"{station} has no test/ folder", "--eval-data", "--force")
    assert "DEFECT_EDGE_DATA" not in r.output
    r = export_cli(tiny_run, "--quantize", "--eval-data", station, "--out", out)
    assert_one_line_error(r, ExitCode.BAD_DATA, "holds train/ but no test/", "not trained on")
    assert "rename" not in r.output and not out.exists()
