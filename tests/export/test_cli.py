"""export-onnx as a user meets it: defaults, the gate, atomic writes, one-line errors with exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge_runtime.errors import ExitCode, ModelError
from edge_runtime.model import EdgeModel
from tests.conftest import REPO
from tests.export.conftest import TINY_MAX_DROP, export_cli
from train.checkpoint import load_checkpoint
from train.checkpoint_save import atomic_torch_save


def assert_one_line_error(r, code: ExitCode, *words: str) -> None:
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, r.output
    for w in words:
        assert w in lines[0], lines[0]


def write_images(folder: Path, n: int, value: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.full((48, 48), value, np.uint8) if value is not None else rng.integers(0, 255, (48, 48), np.uint8)
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), img)
    return folder


def test_help_lists_options_and_exit_codes():
    r = export_cli("--help")
    assert r.exit_code == 0
    for word in ("--quantize", "--calib-data", "--calib-count", "--eval-data", "--max-drop", "--opset", "--force"):
        assert word in r.output
    text = " ".join(r.output.split())  # as read, whatever the help's line wrapping
    assert "6 gate failed" in text and "7 output not writable" in text and "--fail-on-defect" not in text


def test_without_out_it_writes_beside_the_checkpoint_named_by_precision(tiny_run: Path, tmp_path: Path):
    ckpt = tmp_path / "run" / "best.pt"
    ckpt.parent.mkdir()
    shutil.copy(tiny_run, ckpt)
    r = export_cli(ckpt, "--quantize", "--max-drop", TINY_MAX_DROP)  # --quantize alone means int8
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "best_int8.onnx").is_file()
    assert not (tmp_path / "run" / "best_fp32.onnx").exists()
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")] == []


def test_an_out_that_replaces_a_model_says_so(tiny_fp32: Path, tiny_run: Path, tmp_path: Path):
    """An INT8 file replaced by an FP32 export under its name, with "wrote ..." alone."""
    out = tmp_path / "model_int8.onnx"
    shutil.copy(tiny_fp32, out)
    r = export_cli(tiny_run, "--out", out)
    assert r.exit_code == 0 and f"wrote {out} (it replaced the file that was there)" in r.output, r.output
    r = export_cli(tiny_run, "--out", tmp_path / "new.onnx")
    assert r.exit_code == 0 and r.output.rstrip().endswith(f"wrote {tmp_path / 'new.onnx'}"), r.output


def test_gate_fails_on_a_deliberately_bad_calibration_and_writes_nothing(tiny_run: Path, tmp_path: Path):
    calib = write_images(tmp_path / "calib", 20, value=128)  # flat gray: activation ranges collapse
    out = tmp_path / "bad_int8.onnx"
    # Every convolution in 8 bits: with the default two in float the tiny model's verdicts survive even this
    # calibration (80/80; flat, dark, stripes and noise were tried), so the gate would have nothing to catch.
    args = ("--quantize", "--float-convs", "0", "--calib-data", calib, "--out", out, "--max-drop", TINY_MAX_DROP)
    r = export_cli(tiny_run, *args)
    assert_one_line_error(r, ExitCode.GATE_FAILED, "percentage points", "--force")
    assert not out.exists()
    r = export_cli(tiny_run, *args, "--force")
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and out.is_file()


def test_a_failed_write_leaves_the_previous_model_intact(tiny_run: Path, tiny_fp32: Path, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    shutil.copy(tiny_fp32, out)
    before = out.read_bytes()
    import export.graph

    real_save = export.graph.onnx.save_model

    def crash_on_final_write(proto, path, *a, **kw):
        if Path(path).name.startswith(".model.onnx"):
            Path(path).write_bytes(b"half a model")
            raise OSError(28, "No space left on device")
        return real_save(proto, path, *a, **kw)

    monkeypatch.setattr(export.graph.onnx, "save_model", crash_on_final_write)
    r = export_cli(tiny_run, "--out", out)
    assert_one_line_error(r, ExitCode.OUTPUT_ERROR, "No space left")
    assert out.read_bytes() == before
    assert EdgeModel(out).info.threshold > 0  # still a loadable model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


@pytest.mark.parametrize("kind", ["missing", "corrupt", "incompatible"])
def test_bad_checkpoint_is_one_line_exit_4(tmp_path: Path, kind: str):
    ckpt = tmp_path / "best.pt"
    if kind == "corrupt":
        ckpt.write_bytes(b"\x00garbage" * 100)
    elif kind == "incompatible":
        torch.save({"format": 1, "arch": "defectnet", "model_args": {"in_channels": 1}, "state_dict": {}}, ckpt)
    r = export_cli(ckpt, "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_MODEL, str(ckpt) if kind != "incompatible" else "")


def test_an_empty_or_unreadable_checkpoint_gets_advice_that_fits(tiny_run: Path, tmp_path: Path, monkeypatch):
    """Both were "not a readable defect-edge checkpoint (EOFError / PermissionError); retrain or re-download it"."""
    import train.checkpoint

    (tmp_path / "best.pt").write_bytes(b"")  # an interrupted copy
    r = export_cli(tmp_path / "best.pt", "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_MODEL, "is empty (0 bytes)", "copy it again")

    def denied(path, *a, **kw):  # what a user without read permission meets (root reads any file)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(train.checkpoint.torch, "load", denied)
    with pytest.raises(ModelError, match=r"cannot be read \(Permission denied\); check its permissions"):
        load_checkpoint(tiny_run)  # the default checkpoint of an install, or the Python API


def test_an_exported_model_passed_as_the_checkpoint_is_named_as_such(tmp_path: Path):
    """The ONNX file given where the checkpoint goes: "not a readable defect-edge checkpoint (UnpicklingError);
    retrain or re-download it", advice for a file that was fine."""
    shipped = REPO / "edge_runtime" / "models" / "defectnet_int8.onnx"
    renamed = tmp_path / "model.pt"  # by its bytes too, whatever its name
    renamed.write_bytes(shipped.read_bytes())
    for given in (shipped, renamed):
        r = export_cli(given, "--out", tmp_path / "m.onnx")
        assert_one_line_error(r, ExitCode.BAD_MODEL, "is an exported ONNX model, not a checkpoint; pass the best.pt")


def test_an_empty_file_named_onnx_is_named_as_empty(tmp_path: Path):
    """`export-onnx empty.onnx` (a copy that never finished) said "is an exported ONNX model, not a checkpoint"."""
    (tmp_path / "empty.onnx").write_bytes(b"")
    r = export_cli(tmp_path / "empty.onnx", "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_MODEL, "empty.onnx: is empty (0 bytes)", "copy it again")
    assert "exported ONNX model" not in r.output


def test_an_empty_checkpoint_or_out_is_named_as_empty(tiny_run: Path):
    """`export-onnx "$CKPT" --out "$OUT"` with the variables unset: ".: is a folder", exit 4 or 7."""
    for args in (["", "--out", "m.onnx"], [str(tiny_run), "--out", ""]):
        r = export_cli(*args)
        assert r.exit_code == 2 and "is empty (an unset shell variable?)" in r.output, r.output


def test_weights_that_do_not_fit_the_architecture_are_exit_4(tiny_run: Path, tmp_path: Path):
    ckpt = torch.load(tiny_run, weights_only=True)
    ckpt["model_args"] = {"in_channels": 3}
    atomic_torch_save(ckpt, tmp_path / "best.pt")  # an edited checkpoint, re-hashed as train-model writes it
    assert_one_line_error(export_cli(tmp_path / "best.pt", "--out", tmp_path / "m.onnx"), ExitCode.BAD_MODEL, "fit")


def test_an_input_size_that_is_not_the_models_is_exit_4(tiny_run: Path, tmp_path: Path):
    """A checkpoint without a content hash, its preprocess size edited: "unexpected RuntimeError: The size of tensor
    a (999) must match ...", exit 1."""
    ckpt = torch.load(tiny_run, weights_only=True)
    ckpt.pop("sha256")
    ckpt["preprocess"]["size"] = 999
    torch.save(ckpt, tmp_path / "best.pt")
    r = export_cli(tmp_path / "best.pt", "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_MODEL, "input size (999 px) is not the size its model was built for (32 px)")


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c.update(data=["x"]),
        lambda c: c["data"].update(train_files=5),  # "unexpected TypeError: 'int' object is not iterable" mid-export
        lambda c: c["data"].update(root=5),
        lambda c: c.update(preprocess=[1]),
    ],
)
def test_an_edited_checkpoints_records_of_the_wrong_type_are_exit_4(tiny_run: Path, tmp_path: Path, edit):
    """A checkpoint without a content hash (written before train-model stored one), a field edited to another type:
    "unexpected AttributeError" or "unexpected TypeError", exit 1."""
    ckpt = torch.load(tiny_run, weights_only=True)
    ckpt.pop("sha256")
    edit(ckpt)
    torch.save(ckpt, tmp_path / "best.pt")
    r = export_cli(tmp_path / "best.pt", "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_MODEL, "checkpoint fields are invalid")
    assert not (tmp_path / "m.onnx").exists()


def test_unwritable_output_is_exit_7_before_any_work(tiny_run: Path, tmp_path: Path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert_one_line_error(export_cli(tiny_run, "--out", blocker / "m.onnx"), ExitCode.OUTPUT_ERROR, "--out")
    assert_one_line_error(export_cli(tiny_run, "--out", tmp_path), ExitCode.OUTPUT_ERROR, "folder")


@pytest.mark.parametrize("n, code", [(0, ExitCode.BAD_DATA), (4, ExitCode.BAD_DATA)])
def test_empty_or_tiny_calibration_folder_is_exit_3(tiny_run: Path, tmp_path: Path, n: int, code: ExitCode):
    calib = write_images(tmp_path / "calib", n)
    r = export_cli(tiny_run, "--quantize", "--calib-data", calib, "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, code, "calibration")
    assert not (tmp_path / "m.onnx").exists()


def test_a_calibration_folder_with_too_few_readable_images_is_found_before_any_work(tiny_run: Path, tmp_path: Path):
    """10 files of which 8 were readable passed the early check, and the folder was refused only after the FP32
    export and its evaluation."""
    calib = write_images(tmp_path / "calib", 8)
    for name in ("broken1.png", "broken2.png"):
        (calib / name).write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    r = export_cli(tiny_run, "--quantize", "--calib-data", calib, "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_DATA, "only 8 readable images in the calibration folder (2 of 10 unreadable)")
    assert not (tmp_path / "m.onnx").exists() and "evaluation" not in r.output


def test_a_calibration_folder_with_one_readable_image_says_image(tiny_run: Path, tmp_path: Path):
    """The refusal read "only 1 readable images in the calibration folder"."""
    calib = write_images(tmp_path / "calib", 1)
    (calib / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    r = export_cli(tiny_run, "--quantize", "--calib-data", calib, "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_DATA, "only 1 readable image in the calibration folder (1 of 2 unreadable)")


def test_missing_calibration_folder_is_exit_3(tiny_run: Path, tmp_path: Path):
    r = export_cli(tiny_run, "--quantize", "--calib-data", tmp_path / "nope", "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_DATA, "not found")


@pytest.mark.parametrize("option", ["--calib-data", "--eval-data"])
def test_a_data_folder_that_is_a_file_or_missing_is_named_before_any_work(tiny_run: Path, tmp_path: Path, option):
    """A file there was "folder not found"; a missing --calib-data was found only after the FP32 export, its parity
    check and its evaluation."""
    (tmp_path / "notes.txt").write_text("not a folder")
    r = export_cli(tiny_run, "--quantize", option, tmp_path / "notes.txt", "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_DATA, f"{option} is a file, not a folder")
    r = export_cli(tiny_run, "--quantize", option, tmp_path / "nope", "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_DATA, "folder not found")
    assert "evaluation:" not in r.output and "parity" not in r.output  # nothing done before the error
    (tmp_path / "empty").mkdir()  # no images, or no class folders: found before the export and its evaluation too
    r = export_cli(tiny_run, "--quantize", option, tmp_path / "empty", "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_DATA, "no images" if option == "--calib-data" else "no class subfolders")
    assert "evaluation:" not in r.output and "parity" not in r.output


def test_few_calibration_images_warn(tiny_run: Path, tiny_data: Path, tmp_path: Path):
    r = export_cli(
        tiny_run,
        "--quantize",
        "--calib-data",
        tiny_data / "train",
        "--calib-count",
        30,
        "--out",
        tmp_path / "m.onnx",
        "--max-drop",
        TINY_MAX_DROP,
    )
    assert r.exit_code == 0, r.output
    assert "warning: only 30 calibration images" in r.output


def test_eval_folder_without_class_subfolders_is_exit_3(tiny_run: Path, tmp_path: Path):
    flat = write_images(tmp_path / "flat", 12)
    r = export_cli(tiny_run, "--quantize", "--eval-data", flat, "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_DATA, "no class subfolders")


def test_eval_class_folders_without_a_readable_image_are_found_before_any_work(tiny_run: Path, tmp_path: Path):
    """Empty (or all damaged) class folders were refused only after the FP32 export, its station profile and map."""
    evals = tmp_path / "evals"
    (evals / "def_front").mkdir(parents=True)
    (write_images(evals / "ok_front", 0) / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    r = export_cli(tiny_run, "--eval-data", evals, "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_DATA, "no readable images in ok_front/ and def_front/")
    assert "localisation map" not in r.output and "station check" not in r.output  # no work done


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path: Path):
    r = export_cli(tmp_path / "missing.pt", "--debug")
    assert r.exit_code == ExitCode.BAD_MODEL and "Traceback" in r.stderr  # was exit 1, as for a bug


def test_eval_images_copied_from_train_are_left_out_of_leakage_free(tiny_run: Path, tiny_data: Path, tmp_path: Path):
    evals = tmp_path / "eval"
    shutil.copytree(tiny_data / "test", evals)
    for src in sorted((tiny_data / "train" / "ok_front").iterdir())[:3]:
        shutil.copy(src, evals / "ok_front" / f"copy_{src.name}")
    out = tmp_path / "m.onnx"
    r = export_cli(tiny_run, "--eval-data", evals, "--out", out)
    assert r.exit_code == 0, r.output
    assert "83 labelled images" in r.output and "3 byte-identical" in r.output
    metrics = EdgeModel(out).info.metrics["onnx"]
    assert (metrics["official"]["n"], metrics["leakage_free"]["n"]) == (83, 80)


def test_int8_without_labelled_images_needs_eval_data_or_force(tiny_run: Path, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("DEFECT_EDGE_DATA", raising=False)
    ckpt = torch.load(tiny_run, weights_only=True)
    # The recorded data is not on this machine, under neither recorded path, and DEFECT_EDGE_DATA is not set.
    ckpt["data"]["root"] = ckpt["data"]["root_as_given"] = str(tmp_path / "moved")
    atomic_torch_save(ckpt, tmp_path / "best.pt")
    calib = write_images(tmp_path / "calib", 12)
    r = export_cli(tmp_path / "best.pt", "--quantize", "--calib-data", calib, "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_DATA, "--eval-data", "--force")
    r = export_cli(tmp_path / "best.pt", "--quantize", "--calib-data", calib, "--out", tmp_path / "m.onnx", "--force")
    assert r.exit_code == 0, r.output
    assert "accuracy gate not run" in r.output


def test_a_dataset_that_is_not_here_is_found_before_any_work(
    tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch
):
    """With the recorded dataset moved, INT8 without --eval-data, or without --calib-data, was refused only after
    the map, the FP32 export and its evaluation."""
    monkeypatch.delenv("DEFECT_EDGE_DATA", raising=False)
    ckpt = torch.load(tiny_run, weights_only=True)
    ckpt["data"]["root"] = ckpt["data"]["root_as_given"] = str(tmp_path / "moved")
    atomic_torch_save(ckpt, tmp_path / "best.pt")
    out = tmp_path / "m.onnx"
    for args, words in (
        (["--quantize"], ["no labelled images", "--eval-data"]),
        (["--quantize", "--eval-data", tiny_data / "test"], ["training images", "not reachable", "--calib-data"]),
        ([], ["training images", "not reachable"]),  # FP32 checks parity on them when there are no eval images
    ):
        r = export_cli(tmp_path / "best.pt", *args, "--out", out)
        assert_one_line_error(r, ExitCode.BAD_DATA, *words)
        assert "localisation map" not in r.output and "evaluation" not in r.output and not out.exists()  # no work


def test_moved_dataset_is_found_through_defect_edge_data(tiny_run: Path, tmp_path: Path, monkeypatch):
    from export.images import default_eval_folder, recorded_root

    ckpt = load_checkpoint(tiny_run)
    real_root = Path(ckpt.data.root)
    ckpt.data.root = ckpt.data.root_as_given = str(tmp_path / "moved")
    monkeypatch.delenv("DEFECT_EDGE_DATA", raising=False)
    assert recorded_root(ckpt) is None and default_eval_folder(ckpt) is None
    monkeypatch.setenv("DEFECT_EDGE_DATA", str(real_root))
    assert recorded_root(ckpt) == real_root
    assert default_eval_folder(ckpt) == real_root / "test"


def test_a_runs_last_pt_is_named_as_the_resume_state_with_the_file_to_export(tiny_run: Path, tmp_path: Path):
    """It said "not a defect-edge checkpoint of format 1; retrain with train-model"."""
    r = export_cli(tiny_run.with_name("last.pt"), "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_MODEL, "resume state (last.pt)", str(tiny_run))


def test_a_checkpoint_of_a_newer_format_says_upgrade_not_retrain(tiny_run: Path, tmp_path: Path):
    """A best.pt from a newer defect-edge was told "not a defect-edge checkpoint of format 1; retrain with
    train-model": a training run where an upgrade would do."""
    ckpt = torch.load(tiny_run, map_location="cpu", weights_only=True)
    ckpt["format"] = 2
    torch.save(ckpt, tmp_path / "best.pt")
    r = export_cli(tmp_path / "best.pt", "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_MODEL, "written by a newer defect-edge (checkpoint format 2", "upgrade")
    assert "retrain" not in r.output and not (tmp_path / "m.onnx").exists()


def test_fp16_notes_and_gate_advice_fit_fp16():
    """A faster FP16 was told "use fp32 or int8 on CPUs"; a failed FP16 gate advised calibrating, which FP16 lacks."""
    from dataclasses import replace as dc_replace

    from edge_runtime.errors import GateError
    from edge_runtime.model_info import Precision
    from export.checks import Measured
    from export.report import apply_gate, fp16_note

    ref = Measured(Precision.FP32, 1, 0.0, 1, 0, 1.2, official={"n": 100, "accuracy": 0.99})
    fast = dc_replace(ref, precision=Precision.FP16, latency_ms=1.0, official={"n": 100, "accuracy": 0.95})
    assert "use fp32 or int8" not in fp16_note(ref, fast) and "faster than fp32" in fp16_note(ref, fast)
    assert "use fp32 or int8 on CPUs" in fp16_note(ref, dc_replace(fast, latency_ms=1.5))
    with pytest.raises(GateError) as err:
        apply_gate(ref, fast, max_drop_pp=0.3, force=False, log=print)
    assert "calibrate" not in str(err.value) and "export fp32 instead" in str(err.value)
    with pytest.raises(GateError, match="calibrate with more representative images"):
        apply_gate(ref, dc_replace(fast, precision=Precision.INT8), max_drop_pp=0.3, force=False, log=print)


@pytest.mark.parametrize("module", ["export.ship", "export.quant_study"])
def test_the_maintainer_tools_give_one_line_for_a_bad_checkpoint(tmp_path: Path, module: str):
    """Both printed a traceback, exit 1, for a checkpoint that is missing or not a checkpoint."""
    import subprocess
    import sys

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    args = ["--checkpoint", str(junk), "--out-dir", str(tmp_path / "m")] if module == "export.ship" else [str(junk)]
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert (
        proc.returncode == ExitCode.BAD_MODEL and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    )


def test_a_renamed_resume_state_or_a_folder_gets_advice_that_exists(tiny_run: Path, tmp_path: Path):
    """A renamed last.pt was told to use a best.pt beside it that does not exist; a folder was 'not found'."""
    renamed = tmp_path / "renamed.pt"
    shutil.copy(tiny_run.with_name("last.pt"), renamed)
    r = export_cli(renamed, "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_MODEL, "use the best.pt of its run")
    r = export_cli(tmp_path, "--out", tmp_path / "m.onnx")
    assert_one_line_error(r, ExitCode.BAD_MODEL, "is a folder")


def test_a_subset_without_images_is_not_gated_and_says_so():
    """Eval images that were all copies of training images: the table showed "0/0 (nan%)" and the gate said
    "passed: ... leakage-free +nan pp"; a NaN drop compared as no drop at all."""
    from dataclasses import replace as dc_replace

    from edge_runtime.errors import GateError
    from edge_runtime.model_info import Precision
    from export.checks import Measured
    from export.report import apply_gate

    nan = float("nan")
    ref = Measured(Precision.FP32, 1, 0.0, 1, 0, 1.2, official={"n": 30, "accuracy": 0.9},
                   leakage_free={"n": 0, "accuracy": nan})  # fmt: skip
    said: list[str] = []
    apply_gate(ref, dc_replace(ref, precision=Precision.INT8), max_drop_pp=0.3, force=False, log=said.append)
    assert said == ["accuracy gate passed: int8 vs fp32 drop official +0.00 pp (limit 0.3 pp); "
                    "leakage-free: no images, not gated"]  # fmt: skip
    worse = dc_replace(ref, precision=Precision.INT8, official={"n": 30, "accuracy": 0.8})
    with pytest.raises(GateError, match="loses 10.00 percentage points of official"):
        apply_gate(ref, worse, max_drop_pp=0.3, force=False, log=said.append)


def test_a_failed_export_removes_the_folders_it_made_for_out(tiny_run: Path, tmp_path: Path):
    """`--out new/sub/m.onnx` whose accuracy gate failed "wrote nothing" but left new/sub/ behind, empty."""
    calib = write_images(tmp_path / "calib", 20, value=128)  # flat gray: the gate fails, as in the test above
    out = tmp_path / "new" / "sub" / "bad_int8.onnx"
    args = ("--quantize", "--float-convs", "0", "--calib-data", calib, "--out", out, "--max-drop", TINY_MAX_DROP)
    assert_one_line_error(export_cli(tiny_run, *args), ExitCode.GATE_FAILED, "percentage points")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept" / "sub").mkdir(parents=True)  # a folder that was there stays, and so does one made in it
    args = ("--quantize", "--float-convs", "0", "--calib-data", calib, "--max-drop", TINY_MAX_DROP)
    assert export_cli(tiny_run, *args, "--out", tmp_path / "kept" / "sub" / "m.onnx").exit_code == ExitCode.GATE_FAILED
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["sub"]


def test_a_name_over_the_file_systems_limit_is_one_line_with_its_exit_code(tiny_run: Path, tmp_path: Path):
    """A path with a name over 255 bytes (a generated name, a pasted line) given for the checkpoint, --calib-data,
    --eval-data or --out was "unexpected OSError: [Errno 36] File name too long", exit 1."""
    long, out = "a" * 300, tmp_path / "m.onnx"
    for args, code in (
        ([tmp_path / f"{long}.pt", "--out", out], ExitCode.BAD_MODEL),
        ([tiny_run, "--quantize", "--calib-data", tmp_path / long, "--out", out], ExitCode.BAD_DATA),
        ([tiny_run, "--eval-data", tmp_path / long, "--out", out], ExitCode.BAD_DATA),
        ([tiny_run, "--out", tmp_path / f"{long}.onnx"], ExitCode.OUTPUT_ERROR),
        ([tiny_run, "--out", tmp_path / "new" / long / "m.onnx"], ExitCode.OUTPUT_ERROR),
    ):
        assert_one_line_error(export_cli(*args), code, "File name too long")
    assert list(tmp_path.iterdir()) == []  # nor the folder new/ made for the last --out


def test_a_checkpoint_from_an_unfinished_training_is_exported_with_a_warning(tiny_run: Path, tmp_path: Path):
    """A best.pt from a run stopped at epoch 3 of 40 (last.pt, no report.json beside it) was exported as if final."""
    run = tmp_path / "stopped"
    run.mkdir()
    shutil.copy(tiny_run, run / "best.pt")
    (run / "last.pt").write_bytes(b"resume state")
    r = export_cli(run / "best.pt", "--out", tmp_path / "m.onnx")
    assert r.exit_code == 0, r.output
    assert "its training has not finished (last.pt and no report.json beside it)" in r.output
    assert "rerun its train-model command with --resume" in r.output
    r = export_cli(tiny_run, "--out", tmp_path / "final.onnx")  # a finished run's: no warning
    assert r.exit_code == 0 and "has not finished" not in r.output, r.output
