"""The camera-change stress test: every perturbation is scored for every model, and it needs no torch."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.robustness import PERTURBATIONS, affine, main, wider_frame
from tests.conftest import make_dataset


def test_help():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "--data" in r.output and "Exit codes" in r.output


def test_geometry_changes_move_the_part_and_keep_the_background():
    im = np.full((100, 100), 180, np.uint8)
    cv2.circle(im, (50, 50), 30, 40, -1)
    smaller = affine(im, zoom=0.5)
    assert (smaller < 100).sum() < (im < 100).sum() / 3  # the dark disk shrank to about a quarter
    assert smaller[0, 0] == 180  # the new border is the background, not black
    wide = wider_frame(im)
    assert wide.shape[1] > wide.shape[0] > 100


def test_every_perturbation_is_scored_for_every_model(tiny_models, tmp_path: Path):
    data = make_dataset(tmp_path / "d", n_train=1, n_test=4)
    out = tmp_path / "rob.json"
    int8, fp32 = tiny_models
    r = CliRunner().invoke(main, ["--data", str(data), "--model", str(int8), "--model", str(fp32), "--json", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())
    assert len(rows) == 2 * len(PERTURBATIONS)
    assert {r["perturbation"] for r in rows} == {p.name for p in PERTURBATIONS}
    assert all(r["n"] == 8 and r["missed_defects"] + r["false_alarms"] <= 8 for r in rows)
    assert r.output.count("\n| tiny_") == 2 * len(PERTURBATIONS)


def test_an_interrupted_run_keeps_the_rows_scored_before_it(tiny_models, tmp_path: Path, monkeypatch):
    """Ctrl-C (or SIGTERM) minutes into the run lost every row scored so far: "error: interrupted" and nothing else.
    Now they are printed, and written beside --json as x.interrupted.json; the last complete run's file stays."""
    import benchmarks.robustness as rob

    data = make_dataset(tmp_path / "d", n_train=1, n_test=4)
    out = tmp_path / "rob.json"
    out.write_text("[]\n")  # a complete run's file from before
    real, calls = rob.score_model, []

    def ctrl_c_at_the_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rob, "score_model", ctrl_c_at_the_fourth)
    r = CliRunner().invoke(main, ["--data", str(data), "--model", str(tiny_models[0]), "--json", str(out)])
    assert r.exit_code == 130, r.output
    assert r.stderr.strip().splitlines()[-1] == "error: interrupted"
    assert "interrupted: 3 rows of a partial run, written to" in r.stderr
    assert r.stdout.count("\n| tiny_") == 3
    partial = json.loads((tmp_path / "rob.interrupted.json").read_text())
    assert partial["interrupted"] is True and [row["perturbation"] for row in partial["rows"]] == [
        p.name for p in PERTURBATIONS[:3]
    ]
    assert out.read_text() == "[]\n"


def test_no_output_replaces_a_model_or_lands_among_the_data_images(tiny_models, tmp_path: Path):
    """--json onto the model wrote JSON over it; --examples onto a test image replaced the image with the grid;
    --save-images inside --data made a third class folder there, and every later run on it failed (exit 3)."""
    data = make_dataset(tmp_path / "d", n_train=1, n_test=2)
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_models[1].read_bytes())
    image = next((data / "test" / "ok_front").iterdir())
    before = model.read_bytes(), image.read_bytes(), sorted(p.name for p in (data / "test").iterdir())
    base = ["--data", str(data), "--model", str(model), "--only", "blur"]
    for extra in (["--json", str(model)], ["--examples", str(image)], ["--json", str(image)],
                  ["--save-images", str(data / "test")], ["--save-images", str(data)],
                  ["--json", str(tmp_path / "r.json"), "--examples", str(tmp_path / "r.json")]):  # fmt: skip
        r = CliRunner().invoke(main, [*base, *extra])
        assert r.exit_code == 7, (extra, r.output)
        assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output  # before any work
    assert (model.read_bytes(), image.read_bytes(), sorted(p.name for p in (data / "test").iterdir())) == before


def test_data_without_two_class_folders_is_exit_3(tmp_path: Path, tiny_models):
    (tmp_path / "only").mkdir()
    r = CliRunner().invoke(main, ["--data", str(tmp_path), "--model", str(tiny_models[0])])
    assert r.exit_code == 3 and r.output.startswith("error: ")


def _drawn_part(bg: int = 170) -> np.ndarray:
    im = np.full((300, 300), bg, np.uint8)
    cv2.circle(im, (150, 150), 110, 215, -1)
    cv2.circle(im, (150, 150), 55, 25, -1)
    return np.clip(im + np.random.default_rng(0).normal(0, 3, im.shape), 0, 255).astype(np.uint8)


def test_station_background_relight_changes_only_what_lies_outside_the_part():
    from benchmarks.station_conditions import relight_background

    im = _drawn_part()
    out = relight_background(im, level=235)
    assert abs(float(np.median(out[:20, :20])) - 235) < 6  # the corner is near white now
    assert np.array_equal(out[100:200, 100:200], im[100:200, 100:200])  # the part itself is untouched


def test_station_framing_fills_the_frame_and_every_condition_changes_the_image():
    from benchmarks.station_conditions import STATION_CONDITIONS, fill_frame

    im = _drawn_part()
    big = fill_frame(im, half_side=0.9)
    assert big.shape == (512, 512)
    assert (big[256, :] > 200).mean() > 0.2  # the flange reaches both borders along the middle row
    for cond in STATION_CONDITIONS:
        out = cond.apply(im)
        assert out.dtype == np.uint8 and out.ndim == 2
        if cond.name.endswith("512 px source"):  # same picture at the camera's resolution
            assert out.shape == (512, 512)
            continue
        small = cv2.resize(out, (300, 300), interpolation=cv2.INTER_AREA)
        assert np.abs(small.astype(int) - im).mean() > 2, cond.name


def test_marked_boxes_follow_the_part_through_every_station_condition():
    """A dark pinhole at a known place on the flange: after each station condition (the zooms and the 512 px
    source included) the changed pixels lie inside its box carried by the condition's ``moves``."""
    from benchmarks.station_conditions import STATION_CONDITIONS, moved_boxes

    plain = _drawn_part()
    marked = plain.copy()
    cv2.circle(marked, (230, 120), 4, 40, -1)
    box = (226, 116, 235, 125)
    for cond in STATION_CONDITIONS:
        changed = np.abs(cond.apply(marked).astype(int) - cond.apply(plain).astype(int)) > 25
        ys, xs = np.nonzero(changed)
        assert len(xs) > 0, cond.name
        ((x0, y0, x1, y1),) = moved_boxes([box], cond.moves(marked) if cond.moves else None, changed.shape)
        inside = (xs >= x0 - 1) & (xs < x1 + 1) & (ys >= y0 - 1) & (ys < y1 + 1)
        assert inside.mean() > 0.95, cond.name
        assert (x1 - x0) * (y1 - y0) <= 4 * changed.sum(), cond.name  # the box is not blown up either


def test_examples_png_shows_one_tile_per_condition(tmp_path: Path):
    from benchmarks.robustness import CONDITION_SETS, examples_png

    out = tmp_path / "ex.png"
    examples_png(out, _drawn_part(), CONDITION_SETS["station"], tile=64)
    grid = cv2.imread(str(out))
    rows = -(-len(CONDITION_SETS["station"]) // 4)
    assert grid.shape[:2] == (64 * rows, 64 * 4)


def test_examples_with_a_suffix_opencv_cannot_write_is_one_output_error(tmp_path: Path):
    from benchmarks.robustness import CONDITION_SETS, examples_png
    from edge_runtime.errors import OutputError

    with pytest.raises(OutputError, match="choose another --examples"):  # was a multi-line cv2.error (exit 1)
        examples_png(tmp_path / "ex.txt", _drawn_part(), CONDITION_SETS["station"], tile=64)


DEFAULT_CKPT = Path(__file__).resolve().parents[2] / "train" / "default_model" / "best.pt"


def test_validation_images_of_a_checkpoint_are_scored_or_missing_ones_named(tmp_path: Path, casting_dir: Path):
    pytest.importorskip("torch", reason="reading a checkpoint needs the train extra")
    out = tmp_path / "val.json"
    args = ["--validation-of", str(DEFAULT_CKPT), "--set", "station", "--limit", "24", "--json", str(out)]
    r = CliRunner().invoke(main, ["--data", str(casting_dir), *args])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())
    # every station condition and the images unchanged, both shipped models, on 24 of the checkpoint's validation
    # images (not the test set)
    from benchmarks.station_conditions import STATION_CONDITIONS

    assert len(rows) == 2 * (1 + len(STATION_CONDITIONS)) and all(r["n"] == 24 for r in rows)
    assert {r["perturbation"] for r in rows} >= {"none", "station: raw camera + highlights"}
    (tmp_path / "elsewhere" / "train").mkdir(parents=True)
    r = CliRunner().invoke(main, ["--data", str(tmp_path / "elsewhere"), *args])
    assert r.exit_code == 3 and "validation images best.pt lists are not there" in r.output
    assert "Traceback" not in r.output


def test_save_images_writes_the_chosen_conditions_and_only_matching_nothing_is_a_usage_error(tmp_path: Path):
    data = make_dataset(tmp_path / "data", n_train=2, n_test=3, seed=0) / "test"
    out = tmp_path / "imgs"
    r = CliRunner().invoke(
        main, ["--data", str(data), "--set", "station", "--only", "raw camera", "--save-images", str(out)]
    )
    assert r.exit_code == 0, r.output
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["station_raw_camera_all_of_the_above", "station_raw_camera_highlights"]
    written = sorted((out / folders[0]).rglob("*.png"))
    assert len(written) == len(list(data.rglob("*.png"))) + len(list(data.rglob("*.jp*g")))
    assert cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED).shape == (512, 512)  # the raw camera's 512 px frame
    r = CliRunner().invoke(main, ["--data", str(data), "--only", "no such condition"])
    assert r.exit_code == 2 and "matches no condition" in r.output and "Traceback" not in r.output


def test_save_images_keeps_to_the_limit_s_sample(tmp_path: Path):
    """--limit 60 with --save-images wrote all 715 images per condition."""
    from benchmarks.robustness import labelled_images, sample

    data = make_dataset(tmp_path / "data", n_train=2, n_test=6, seed=0) / "test"
    out = tmp_path / "imgs"
    args = ["--data", str(data), "--set", "station", "--only", "raw camera (all", "--limit", "4"]
    r = CliRunner().invoke(main, [*args, "--save-images", str(out)])
    assert r.exit_code == 0, r.output
    written = sorted(p.stem for p in out.rglob("*.png"))
    files, _ = labelled_images(data, "def_front")
    assert written == sorted(Path(files[i]).stem for i in sample(files, 4))  # the images the run scores


def test_save_images_refuses_the_options_it_would_ignore(tmp_path: Path, tiny_models):
    """--save-images with --json said "wrote 4 images", exit 0, and wrote no JSON; --positive-class (train-model's
    name) is the option the class-folder message names."""
    data = make_dataset(tmp_path / "data", n_train=2, n_test=6, seed=0) / "test"
    base = ["--data", str(data), "--set", "station", "--only", "raw camera (all", "--limit", "4"]
    r = CliRunner().invoke(main, [*base, "--save-images", str(tmp_path / "imgs"), "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 2 and "--save-images writes the images and scores nothing, so --json" in r.output
    assert not (tmp_path / "imgs").exists() and not (tmp_path / "r.json").exists()
    r = CliRunner().invoke(main, [*base, "--save-images", str(tmp_path / "imgs"), "--no-symmetry-look"])
    assert r.exit_code == 2 and "--no-symmetry-look would be ignored" in r.output
    r = CliRunner().invoke(main, [*base, "--model", str(tiny_models[0]), "--positive-class", "nosuch"])
    assert r.exit_code == 3 and "--positive-class 'nosuch' is not one of the class folders" in r.output
