"""The localisation benchmark: the committed hand-marked boxes are sane, the scores mean what they say, and a
run writes its tables and grid without torch (here on the tiny model whose map is the pooled input)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.annotate_boxes import main as annotate_main
from benchmarks.annotate_boxes import pick, render
from benchmarks.localisation import BOXES, distance_to_box, iou, load_boxes, main
from edge_runtime.errors import DataError
from tests.conftest import REPO

TINY_MAP = REPO / "tests" / "models" / "tiny_map.onnx"


def test_help():
    for cmd in (main, annotate_main):
        r = CliRunner().invoke(cmd, ["--help"])
        assert r.exit_code == 0 and "--help" in r.output


def test_committed_boxes_cover_60_defective_test_images_inside_300_px():
    boxes = load_boxes()
    assert len(boxes) == 60 and all(k.startswith("test/def_front/") for k in boxes)
    for marked in boxes.values():
        assert all(0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 300 for x0, y0, x1, y1 in marked)


def test_pick_is_the_committed_choice(casting_dir: Path):
    assert pick(casting_dir) == sorted(load_boxes())


def test_render_enlarges_with_a_grid_and_draws_boxes():
    img = np.full((300, 300), 128, np.uint8)
    plain, boxed = render(img), render(img, [[10, 10, 40, 40]])
    assert plain.shape[0] > 600 and plain.shape[1] > 600
    assert (boxed != plain).any(axis=-1).sum() > 100


def test_scores():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0 and iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert distance_to_box((0, 0), (0, 0, 5, 5)) == 0.0 and distance_to_box((10, 4), (0, 0, 5, 5)) == 6.0


def test_bad_box_file_is_a_data_error(tmp_path: Path):
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(DataError, match="defect-box file"):
        load_boxes(tmp_path / "b.json")


@pytest.mark.parametrize(
    "box",
    [[40, 40, 10, 10], [0, 0, 10**30, 10**30], [-5, 0, 10, 10], [10, 10, 10, 20]],  # inverted, huge, negative, empty
)
def test_a_box_that_is_no_box_is_a_data_error(tmp_path: Path, box: list[int]):
    doc = {"image_size": [300, 300], "images": {"d/0.png": {"boxes": [[1, 1, 5, 5], box]}}}
    (tmp_path / "b.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"d/0.png has box .* not 0 <= x0 < x1 <= 300"):
        load_boxes(tmp_path / "b.json")


def marked_images(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    (data / "d").mkdir(parents=True)
    marked = {}
    for i in range(3):  # a bright 'defect' in the top right of a dark frame, mean above 0.5: defective
        img = np.full((300, 300), 60, np.uint8)
        img[:150] = 210
        img[40:140, 190:290] = 255
        cv2.imwrite(str(data / "d" / f"{i}.png"), img)
        marked[f"d/{i}.png"] = {"boxes": [[190, 40, 290, 140]]}
    (tmp_path / "boxes.json").write_text(json.dumps({"images": marked}))
    return data, tmp_path / "boxes.json"


def test_run_writes_tables_json_and_grid(tmp_path: Path):
    data, boxes = marked_images(tmp_path)
    out = tmp_path / "res" / "loc"
    args = ["--data", data, "--model", TINY_MAP, "--boxes", boxes, "--out", out]
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.with_suffix(".json").read_text())
    (s,) = doc["summary"]
    assert s["images"] == 3 and s["hit_rate"] == 1.0 and s["mean_iou"] > 0
    assert "pointing hit rate" in out.with_suffix(".md").read_text()
    # the pointing under each station condition, the boxes carried along
    from benchmarks.station_conditions import STATION_CONDITIONS

    assert [r["condition"] for r in doc["station"]] == [c.name.removeprefix("station: ") for c in STATION_CONDITIONS]
    assert all(0.0 <= r["tiny_map.onnx"] <= 1.0 and r["images"] >= 1 for r in doc["station"])
    assert all(set(r) == {"condition", "images", "tiny_map.onnx"} for r in doc["station"])  # no "map alone" twin
    assert "Under the station conditions" in out.with_suffix(".md").read_text()
    r = CliRunner().invoke(main, [str(a) for a in [*args, "--no-station"]])
    assert r.exit_code == 0 and json.loads(out.with_suffix(".json").read_text())["station"] == []
    assert cv2.imread(str(out.with_suffix(".png"))).shape[1] == 6 * 200


def test_an_out_that_cannot_be_written_keeps_the_results_on_stdout(tmp_path: Path):
    data, boxes = marked_images(tmp_path)
    (tmp_path / "a_file").write_text("x")
    args = ["--data", data, "--model", TINY_MAP, "--boxes", boxes, "--out", tmp_path / "a_file" / "loc"]
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 7 and r.stderr.startswith("error:") and r.stderr.count("\n") == 1, r.output
    assert "pointing hit rate" in r.stdout  # was lost: the table came only after the files were written
    r = CliRunner().invoke(main, [str(a) for a in [*args[:-1], "/"]])
    assert r.exit_code == 2 and "not a stem" in r.output  # was exit 1, "unexpected ValueError"


def test_a_model_without_the_map_is_refused(tmp_path: Path):
    r = CliRunner().invoke(
        main, ["--model", str(REPO / "tests" / "models" / "tiny.onnx"), "--out", str(tmp_path / "x")]
    )
    assert r.exit_code == 4 and "no localisation map" in r.output


def test_boxes_file_is_where_the_readme_says():
    assert BOXES == REPO / "benchmarks" / "data" / "defect_boxes.json" and (BOXES.parent / "README.md").is_file()


def test_shipped_models_point_at_the_marked_defects(casting_dir: Path):
    """Issue 10's target on the real images: the shipped FP32 and INT8 models' point (the network's map plus the
    part's rotational symmetry, as edge-infer --heatmap finds it) lies inside a hand-marked box on >= 90% of the
    60 images, INT8 within 3 points of FP32, and better than the network's map alone."""
    from benchmarks.localisation import evaluate
    from edge_runtime.model import MODELS_DIR, EdgeModel, Provider, RuntimeConfig

    boxes = load_boxes()
    rates = {}
    for name in ("defectnet_fp32.onnx", "defectnet_int8.onnx"):
        model = EdgeModel(MODELS_DIR / name, RuntimeConfig(provider=Provider.CPU))
        rows, _ = evaluate(model, casting_dir, boxes)
        alone, _ = evaluate(model, casting_dir, boxes, map_only=True)
        rates[name] = sum(r.hit for r in rows) / len(rows)
        assert rates[name] >= 0.9 and rates[name] > sum(r.hit for r in alone) / len(alone) + 0.2
        assert all(r.box is not None and r.box[0] < r.box[2] and r.box[1] < r.box[3] for r in rows)
    assert abs(rates["defectnet_fp32.onnx"] - rates["defectnet_int8.onnx"]) <= 0.03


def test_shipped_model_points_at_the_defects_in_the_stations_world(casting_dir: Path):
    """Under each station condition (near-white background, a full frame, a 512 px source, glints ...) the shipped
    INT8 model's point still lies inside a marked box (boxes carried along) on >= 80% of the images, and far more
    often than the network's map alone."""
    from benchmarks.localisation import station_hit_rates
    from edge_runtime.model import MODELS_DIR, EdgeModel, Provider, RuntimeConfig

    model = EdgeModel(MODELS_DIR / "defectnet_int8.onnx", RuntimeConfig(provider=Provider.CPU))
    for row in station_hit_rates([model], casting_dir, load_boxes()):
        assert row["images"] == 60
        assert row["defectnet_int8.onnx"] >= 0.8, row
        assert row["defectnet_int8.onnx"] >= row["defectnet_int8.onnx, map alone"] + 0.2, row


def test_a_condition_that_leaves_no_marked_image_is_no_rate_not_zero(tmp_path: Path):
    """A box in the frame's corner is pushed out by every zoom of the station conditions: those rows score no
    image, and said 0.0% (as if every point had missed) instead of n/a; the table also named the committed box
    file whatever --boxes gave."""
    data, _ = marked_images(tmp_path)
    corner = tmp_path / "corner.json"
    corner.write_text(json.dumps({"images": {"d/0.png": {"boxes": [[0, 0, 5, 5]]}}}))
    out = tmp_path / "res" / "loc"
    args = ["--data", data, "--model", TINY_MAP, "--boxes", corner, "--out", out]
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.with_suffix(".json").read_text())["station"]
    empty = [row for row in rows if row["images"] == 0]
    assert empty and all(row["tiny_map.onnx"] is None for row in empty)  # zooms: the corner box left the frame
    assert all(row["tiny_map.onnx"] is not None for row in rows if row["images"])
    md = out.with_suffix(".md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {empty[0]['condition']} |"))
    assert "n/a" in line and "0.0%" not in line
    assert str(corner) in md and "defect_boxes.json" not in md


def test_two_models_with_the_same_file_name_are_refused_not_mixed_up(tmp_path: Path):
    """Results are keyed by file name: with runs/a/model.onnx and runs/b/model.onnx both rows showed the second
    model's scores, without a word."""
    data, boxes = marked_images(tmp_path)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "model.onnx").write_bytes(TINY_MAP.read_bytes())
    args = ["--data", data, "--boxes", boxes, "--out", tmp_path / "loc", "--no-station"]
    args += ["--model", tmp_path / "a" / "model.onnx", "--model", tmp_path / "b" / "model.onnx"]
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 2 and "two models are named 'model.onnx'" in r.output, r.output
    assert not (tmp_path / "loc.json").exists()


def test_a_box_beyond_its_image_is_a_data_error(tmp_path: Path):
    """Boxes marked on 300 px images, scored on a 150 px copy: a box past the image was a silent miss in the table
    (and dropped from the station rows, so the two counted different images)."""
    data, boxes = marked_images(tmp_path)
    cv2.imwrite(str(data / "d" / "1.png"), np.full((150, 150), 200, np.uint8))
    args = ["--data", data, "--model", TINY_MAP, "--boxes", boxes, "--out", tmp_path / "loc"]
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 3 and r.stderr.count("\n") == 1, r.output
    assert "d/1.png: box [190, 40, 290, 140] lies beyond the 150x150 image" in r.stderr


def test_fractional_boxes_are_widened_to_whole_pixels_and_non_numbers_refused(tmp_path: Path):
    # Was: int() truncated [10.6, 20.4, 30.9, 40.2] to [10, 20, 30, 40], cutting the far edges, and took a
    # boolean as 0 or 1.
    doc = {"image_size": [300, 300], "images": {"d/0.png": {"boxes": [[10.6, 20.4, 30.9, 40.2]]}}}
    (tmp_path / "b.json").write_text(json.dumps(doc))
    assert load_boxes(tmp_path / "b.json") == {"d/0.png": [(10, 20, 31, 41)]}
    for bad in ([True, 0, 5, 5], ["1", 0, 5, 5]):
        doc["images"]["d/0.png"]["boxes"] = [bad]
        (tmp_path / "b.json").write_text(json.dumps(doc))
        with pytest.raises(DataError, match="not a list of numbers"):
            load_boxes(tmp_path / "b.json")
