"""Where the defect is: the map from the model, mapped back to source pixels, boxed, drawn and recorded.

``tests/models/tiny_map.onnx`` scores the mean brightness and outputs the input average-pooled 8x8 as its map
(4 x 4 cells at 32 px): a bright patch is its "defect". The real model's map is tested in tests/export/test_cam.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime import heatmap
from edge_runtime.cli import main as infer_main
from edge_runtime.errors import ModelError
from edge_runtime.model import EdgeModel, Provider, RuntimeConfig
from edge_runtime.preprocess import CropMode, PreprocessSpec
from tests.edge_runtime.conftest import MODELS
from tests.edge_runtime.test_no_torch import run_without_torch

SPEC = PreprocessSpec(size=160)


def load(name: str) -> EdgeModel:
    return EdgeModel(MODELS / name, RuntimeConfig(provider=Provider.CPU, threads=1))


def part_with_bright_patch(shape=(300, 300), patch=(190, 40, 290, 140)) -> np.ndarray:
    """A dark frame (an 'ok' part for the tiny model) with a bright square: the 'defect' (x0, y0, x1, y1)."""
    img = np.full(shape, 60, np.uint8)
    img[: shape[0] // 2, :] = 210  # a brighter top half: defective overall (mean pixel > 0.5)
    x0, y0, x1, y1 = patch
    img[y0:y1, x0:x1] = 255
    return img


def test_map_has_the_grid_shape_and_comes_back_on_the_source_image():
    model = load("tiny_map.onnx")
    img = part_with_bright_patch()
    raw = model.predict_inputs(model.input_u8(img)[None], with_map=True)[0]
    assert raw.heatmap.shape == (4, 4) and raw.heatmap.dtype == np.float32
    assert np.isfinite(raw.heatmap).all() and 0 <= raw.heatmap.min() <= raw.heatmap.max() <= 1  # pooled pixels
    p = model.predict(img, heatmap=True)
    assert p.defective and p.heatmap.shape == img.shape and p.heatmap.dtype == np.float32
    assert raw.heatmap.min() - 1e-6 <= p.heatmap.min() <= p.heatmap.max() <= raw.heatmap.max() + 1e-6


def test_pasted_defect_is_where_the_map_the_point_and_the_box_are():
    model = load("tiny_map.onnx")
    patch = (190, 40, 290, 140)
    p = model.predict(part_with_bright_patch(patch=patch), heatmap=True)
    x0, y0, x1, y1 = patch
    inside, outside = p.heatmap[y0:y1, x0:x1].mean(), p.heatmap[200:, :].mean()
    assert inside > outside + 0.3
    raw = model.predict_inputs(model.input_u8(part_with_bright_patch(patch=patch))[None], with_map=True)[0]
    spec = model.info.preprocess
    px, py = heatmap.defect_point(raw.heatmap, (300, 300), spec)
    assert x0 <= px < x1 and y0 <= py < y1
    bx0, by0, bx1, by1 = p.defect_box
    assert bx0 < x1 and x0 < bx1 and by0 < y1 and y0 < by1  # overlaps the patch
    assert by1 <= 150 + 40  # and stays in the top part, near the patch


def test_ok_items_get_no_box():
    model = load("tiny_map.onnx")
    p = model.predict(np.full((300, 300), 20, np.uint8), heatmap=True)  # dark: OK
    assert not p.defective and p.defect_box is None and p.heatmap.shape == (300, 300)


@pytest.mark.parametrize("shape", [(300, 300), (240, 320), (480, 270), (31, 57)])
@pytest.mark.parametrize("crop", [CropMode.CENTER, CropMode.STRETCH])
def test_defect_box_lies_inside_the_image_and_holds_the_hottest_point(shape, crop):
    spec = PreprocessSpec(size=160, crop=crop)
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        cam = rng.normal(0, 10, (10, 10)).astype(np.float32)
        x0, y0, x1, y1 = heatmap.defect_box(cam, shape, spec)
        px, py = heatmap.defect_point(cam, shape, spec)
        assert 0 <= x0 < x1 <= shape[1] and 0 <= y0 < y1 <= shape[0]
        assert x0 <= px < x1 and y0 <= py < y1


def test_a_hot_cell_maps_to_its_source_pixels_through_the_crop():
    """A 400x300 frame is centre-cropped to 300x300 (x 50..350): cell (row 2, col 7) of 10 lands at
    x = 50 + (16*7 + 0.5) * 300/160 - 0.5, y = (16*2 + 0.5) * 300/160 - 0.5."""
    cam = np.zeros((10, 10), np.float32)
    cam[2, 7] = 40.0
    up = heatmap.upsample_to_source(cam, (300, 400), SPEC)
    y, x = np.unravel_index(int(np.argmax(up)), up.shape)
    assert abs(x - (50 + 112.5 * 300 / 160 - 0.5)) <= 1 and abs(y - (32.5 * 300 / 160 - 0.5)) <= 1
    assert heatmap.defect_point(cam, (300, 400), SPEC) == (int(x), int(y))
    assert heatmap.input_region((300, 400), SPEC) == (50.0, 0.0, 350.0, 300.0)
    assert up[:, :40].max() == up[:, 40].max()  # outside the crop: the nearest cell's value, no wrap-around


def test_drawing_colours_the_hot_region_only():
    cam = np.full((10, 10), -10.0, np.float32)
    cam[5, 5] = 300.0
    canvas = np.full((300, 300, 3), 128, np.uint8)
    box = heatmap.defect_box(cam, (300, 300), SPEC)
    heatmap.overlay(canvas, cam, SPEC, box=box)
    hot, cold = canvas[150, 150].astype(int), canvas[20, 20].astype(int)
    assert hot[2] - hot[0] > 60 and hot[2] - hot[1] > 60  # red where the map peaks
    assert np.abs(cold - 128).max() < 40  # a pale wash elsewhere
    assert (canvas[box[1], box[0] : box[2]] == 255).all(axis=-1).any()  # the box's white edge


def test_single_output_model_runs_and_heatmap_asks_for_the_map():
    model = load("tiny.onnx")
    assert not model.has_map
    p = model.predict_inputs(np.zeros((1, 32, 32), np.uint8), with_map=True)[0]
    assert p.heatmap is None and p.defect_box is None
    with pytest.raises(ModelError, match="no localisation map"):
        model.predict(np.zeros((50, 50), np.uint8), heatmap=True)


def write_images(folder: Path) -> Path:
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "bad.png"), part_with_bright_patch())
    cv2.imwrite(str(folder / "good.png"), np.full((300, 300), 20, np.uint8))
    return folder


def test_edge_infer_heatmap_adds_defect_box_and_draws(tmp_path: Path):
    src = write_images(tmp_path / "in")
    args = ["--source", str(src), "--model", str(MODELS / "tiny_map.onnx"), "--json", "--heatmap"]
    r = CliRunner().invoke(infer_main, [*args, "--save", str(tmp_path / "out"), "--output", str(tmp_path / "v.csv")])
    assert r.exit_code == 0, r.output
    recs = {Path(rec["source"]).name: rec for rec in map(json.loads, r.stdout.splitlines())}
    x0, y0, x1, y1 = recs["bad.png"]["defect_box"]
    assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 300 and x0 < 290 and x1 > 190  # over the bright patch
    assert recs["good.png"]["defect_box"] is None
    assert "defect_box" in (tmp_path / "v.csv").read_text().splitlines()[0]
    saved = sorted((tmp_path / "out").glob("*.jpg"))
    assert len(saved) == 2
    drawn = cv2.imread(str(next(p for p in saved if "bad" in p.name)))
    assert drawn[y1 - 2, (x0 + x1) // 2].min() > 200  # the box's white lower edge (the others may be at the border)
    plain = CliRunner().invoke(infer_main, args[:-1])  # without --heatmap: the key is there, null
    assert all(json.loads(line)["defect_box"] is None for line in plain.stdout.splitlines())


def test_edge_infer_heatmap_on_a_model_without_the_map_is_exit_4(tmp_path: Path):
    src = write_images(tmp_path / "in")
    r = CliRunner().invoke(infer_main, ["--source", str(src), "--model", str(MODELS / "tiny.onnx"), "--heatmap"])
    assert r.exit_code == 4 and "no localisation map" in r.output


def test_heatmap_runs_without_torch():
    r = run_without_torch(
        f"""
        import numpy as np
        from edge_runtime.model import load_model
        m = load_model({str(MODELS / "tiny_map.onnx")!r}, provider="cpu")
        img = np.full((120, 160), 30, np.uint8); img[:, :80] = 250
        p = m.predict(img, heatmap=True)
        assert p.heatmap.shape == (120, 160) and p.defect_box is not None
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def casting(shape=(300, 400), centre=(260, 120), background=205) -> np.ndarray:
    """A drawn top view of a casting (flange, dark core, hub, bore) off the frame's centre."""
    img = np.full(shape, background, np.uint8)
    for radius, grey in ((75, 150), (40, 35), (16, 170), (8, 20)):
        cv2.circle(img, centre, radius, grey, -1)
    return img


PART_SPEC = PreprocessSpec(size=160, crop=CropMode.PART, part_scale=2.4)


def test_boxes_follow_the_part_centred_crop():
    """With the part-centred crop the map's cells go back to source pixels through the square around the part,
    not the frame's centre: the map's centre cell is the part's centre (260, 120), not the frame's (200, 150).
    (``heatmap.input_region`` once looked the crop up on the package attribute ``edge_runtime.preprocess``, which
    is the preprocess() function, and fell back to the frame's centre square.)"""
    img = casting()
    x0, y0, x1, y1 = heatmap.input_region(img, PART_SPEC)
    assert abs((x0 + x1) / 2 - 260) <= 1.5 and abs((y0 + y1) / 2 - 120) <= 1.5
    from edge_runtime.framing import find_part

    assert x1 - x0 == pytest.approx(2 * 2.4 * find_part(img).radius)  # 2.4 core radii each way
    cam = np.zeros((40, 40), np.float32)
    cam[20, 20] = 10.0  # cell (20, 20) is centred on input pixel (80, 80), the crop's centre
    px, py = heatmap.defect_point(cam, img.shape, PART_SPEC, region=(x0, y0, x1, y1))
    assert abs(px - 260) <= 3 and abs(py - 120) <= 3


def test_a_defect_on_a_round_part_is_pointed_at_to_the_pixel():
    """A 2 px pinhole on the flange of a part-centred model's part: the network's coarse map only knows the
    region (its hot cell 12 source px away), the part's symmetry puts the point on the pinhole and a tight box
    around it."""
    img = casting()
    cv2.circle(img, (310, 90), 2, 60, -1)  # on the flange, 58 px from the centre
    region = heatmap.input_region(img, PART_SPEC)
    cam = np.full((40, 40), -3.0, np.float32)
    cell = heatmap._source_to_cells((40, 40), region, 160) @ np.array([318.0, 84.0, 1.0])
    cam[int(round(cell[1])), int(round(cell[0]))] = 2.0
    point, box = heatmap.point_and_box(cam, img, PART_SPEC)
    assert abs(point[0] - 310) <= 1 and abs(point[1] - 90) <= 1
    assert box[0] <= 310 < box[2] and box[1] <= 90 < box[3]
    assert box[2] - box[0] <= 12 and box[3] - box[1] <= 12
    # without the symmetry (a centre crop) the point stays on the network's coarse cell
    assert heatmap.evidence(cam, img, PreprocessSpec(size=160)) is None


def test_a_pinholes_box_is_drawn_big_enough_to_see():
    """defect_box of a pinhole is a few pixels; --heatmap draws it as a square of at least 1/16 of the picture
    (12 px minimum) about the same place."""
    canvas = np.full((320, 320, 3), 128, np.uint8)
    heatmap.draw(canvas, np.zeros((320, 320), np.float32), (200, 100, 203, 103))
    white = np.all(canvas == 255, axis=2)
    ys, xs = np.nonzero(white)
    assert xs.max() - xs.min() >= 19 and ys.max() - ys.min() >= 19
    assert abs((xs.max() + xs.min()) / 2 - 201) <= 2 and abs((ys.max() + ys.min()) / 2 - 101) <= 2


def test_asymmetry_is_quiet_on_a_sound_part_and_zero_off_it():
    """On a drawn sound part the asymmetry stays near 1 (its rings are round); outside the part's disc, and
    where a turned copy would come from beyond the frame, it is 0."""
    from edge_runtime.symmetry import asymmetry

    img = casting(shape=(300, 300), centre=(150, 150))
    a = asymmetry(img, heatmap.input_region(img, PART_SPEC))
    assert a.shape == img.shape and a.dtype == np.float32
    assert float(a.max()) < 3.0
    assert a[5, 5] == 0.0  # a corner: outside the disc
    cv2.circle(img, (150, 70), 3, 230, -1)  # a bright burr on the flange
    a2 = asymmetry(img, heatmap.input_region(img, PART_SPEC))
    y, x = np.unravel_index(int(np.argmax(a2)), a2.shape)
    assert abs(x - 150) <= 2 and abs(y - 70) <= 2 and a2[y, x] > 5.0
    # a flange crossing the frame's border: no reference for pixels whose turned copy leaves the frame, and no
    # spot along the border
    cut = casting(shape=(300, 300), centre=(150, 60))
    a3 = asymmetry(cut, heatmap.input_region(cut, PART_SPEC))
    assert float(a3[0].max()) == 0.0 and float(a3.max()) < 3.0
    # a part that is not found (its core crosses the border): no symmetry, the network's map alone
    lost = casting(shape=(300, 300), centre=(150, 20))
    assert heatmap.evidence(np.zeros((40, 40), np.float32), lost, PART_SPEC) is None


def test_the_models_full_scale_sets_how_hot_a_map_is_drawn():
    """A trained head's logits (defects peak at 1-10) are drawn at full heat from the model's map_full_scale (4);
    a Grad-CAM map keeps its own scale (150): the same low map stays pale there."""
    m = np.array([[-2.0, 0.0, 2.0, 3.0]], np.float32)
    assert heatmap.heat(m, 4.0).tolist() == [[0.0, 0.0, 0.5, 0.75]]
    assert heatmap.heat(m).max() == pytest.approx(3.0 / heatmap.HEAT_FULL_SCALE)
    from edge_runtime.model import default_model_path

    shipped = EdgeModel(default_model_path(), RuntimeConfig(provider=Provider.CPU))
    pred = shipped.predict(np.full((300, 300), 128, np.uint8), heatmap=True)
    assert pred.heat_scale == shipped.info.map_full_scale == 4.0


@pytest.mark.parametrize("crop", [CropMode.CENTER, CropMode.PART])
@pytest.mark.parametrize("bad", ["one NaN cell", "NaN only", "one +inf cell", "one -inf cell"])
def test_a_map_with_nan_or_inf_still_gives_a_box_on_the_image_and_a_finite_drawing(crop, bad):
    """A model whose map overflows (NaN, inf cells): a NaN cell once crashed edge-infer (exit 1, "cannot convert
    float NaN to integer"), a map of NaN only boxed the corner pixel (0, 0, 1, 1). NaN and -inf cells carry no
    evidence, a +inf cell is the hottest."""
    from edge_runtime.model import Prediction

    img = casting(shape=(300, 300), centre=(150, 150))
    cam = np.random.default_rng(0).normal(0, 1, (40, 40)).astype(np.float32)
    cell = {"one NaN cell": np.nan, "one +inf cell": np.inf, "one -inf cell": -np.inf}.get(bad)
    if cell is None:
        cam[:] = np.nan
    else:
        cam[30, 8] = cell
    spec = PreprocessSpec(size=160, crop=crop)
    p = heatmap.locate(Prediction("defective", 0.9, True, 1.0, heatmap=cam), img, spec)
    x0, y0, x1, y1 = p.defect_box
    assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 300
    assert p.heatmap.shape == img.shape and np.isfinite(p.heatmap).all()
    if bad == "NaN only" and crop is CropMode.CENTER:
        assert (x0, y0, x1, y1) == (0, 0, 300, 300)  # no evidence anywhere: the whole input, not one pixel
    if bad == "one +inf cell" and crop is CropMode.CENTER:
        px, py = heatmap.defect_point(cam, img.shape, spec)
        assert x0 <= px < x1 and y0 <= py < y1 and abs(px - 8 * 7.5) <= 8 and abs(py - 30 * 7.5) <= 8
    canvas = np.full((300, 300, 3), 128, np.uint8)
    with np.errstate(invalid="raise"):  # no "invalid value encountered in cast" while drawing
        heatmap.draw(canvas, heatmap.upsample_to_source(cam, img.shape, spec), p.defect_box)
        heatmap.draw(canvas, np.where(np.eye(300, dtype=bool), np.nan, 1.0).astype(np.float32), None)


def test_edge_infer_heatmap_on_a_map_with_nan_cells_is_not_an_internal_error(tmp_path: Path):
    """The shipped-model path through edge-infer: a NaN cell in the map made the run stop with exit 1."""
    from edge_runtime import model as model_module

    src = write_images(tmp_path / "in")
    run = model_module.EdgeModel.run

    def nan_cell(self, batch):
        scores, maps = run(self, batch)
        maps = maps.copy()
        maps[:, 0, 0, 0] = np.nan
        return scores, maps

    args = ["--source", str(src), "--model", str(MODELS / "tiny_map.onnx"), "--json", "--heatmap"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model_module.EdgeModel, "run", nan_cell)
        r = CliRunner().invoke(infer_main, [*args, "--save", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    recs = {Path(rec["source"]).name: rec for rec in map(json.loads, r.stdout.splitlines())}
    x0, y0, x1, y1 = recs["bad.png"]["defect_box"]
    assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 300 and x0 < 290 and x1 > 190  # still over the bright patch


@pytest.mark.parametrize("cell", [(0, 0), (20, 0), (0, 39)])
def test_a_hot_edge_cell_points_inside_the_part_centred_crop_not_at_the_frames_corner(cell):
    """Off the crop the upsampled map repeats its edge cells; with the hottest cell on the map's edge the point
    (the evidence's first maximum) was the frame's pixel (0, 0) or (0, 120), boxed as one pixel, far off the part."""
    img = casting()  # part at (260, 120): the crop covers x 175..346, y 34..206
    region = heatmap.input_region(img, PART_SPEC)
    cam = np.full((40, 40), -3.0, np.float32)
    cam[cell] = 50.0
    (px, py), (x0, y0, x1, y1) = heatmap.point_and_box(cam, img, PART_SPEC)
    assert region[0] - 1 <= px <= region[2] and region[1] - 1 <= py <= region[3]
    want = heatmap.cell_to_source(cell[::-1], (40, 40), region, 160)
    assert abs(px - want[0]) <= 8 and abs(py - want[1]) <= 8
    assert x0 <= px < x1 and y0 <= py < y1 and (x1 - x0) * (y1 - y0) > 1


def test_a_part_too_small_for_the_symmetry_falls_back_to_the_map():
    """A part found but a few pixels across gets no asymmetry; with a map <= 0 the evidence was 0 everywhere and
    the point and box were the frame's corner pixel, off the part."""
    img = np.full((20, 20), 205, np.uint8)
    cv2.circle(img, (10, 10), 5, 150, -1)
    cv2.circle(img, (10, 10), 2, 35, -1)
    region = heatmap.input_region(img, PART_SPEC)
    assert region[0] > 2  # the part was found: a small square about (10, 10)
    (px, py), (x0, y0, x1, y1) = heatmap.point_and_box(np.full((40, 40), -3.0, np.float32), img, PART_SPEC)
    assert region[0] - 1 <= px <= region[2] and region[1] - 1 <= py <= region[3]
    assert x0 <= px < x1 and y0 <= py < y1 and x1 - x0 > 1


def test_drawing_a_big_frame_does_not_copy_it_in_floats():
    """draw() blended in numpy floats: 11.7 bytes of working memory per canvas byte (1.7 GB and 4.5 s on an
    8000 x 6000 frame); one frame-sized OpenCV blend still about 6 (0.9 GB). By bands of rows, a few MB whatever
    the frame."""
    import tracemalloc

    canvas = np.full((1500, 2000, 3), 128, np.uint8)
    src = cv2.resize(np.random.default_rng(0).normal(0, 3, (40, 40)).astype(np.float32), (2000, 1500))
    tracemalloc.start()
    try:
        heatmap.draw(canvas, src, (10, 10, 20, 20), full_scale=4.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < canvas.size
    assert np.abs(canvas.astype(int) - 128).max() > 20  # and it still draws
    assert np.abs(canvas[-300:].astype(int) - 128).max() > 20  # to the last band


def test_the_box_is_found_without_frame_sized_masks():
    """The box is looked for inside the rectangle the input covers: frame-sized masks and labels took 0.4 GB on
    an 8000 x 6000 frame."""
    import tracemalloc

    source_map = np.zeros((3000, 4000), np.float32)
    source_map[1500:1510, 2000:2020] = 5.0
    region = (1800.0, 1300.0, 2400.0, 1900.0)
    tracemalloc.start()
    try:
        box = heatmap._box_around(source_map, (2005, 1505), region, 2.5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert box == (2000, 1500, 2020, 1510)
    assert peak < source_map.size  # bytes: a quarter of the map's own
    assert heatmap._box_around(source_map, (10, 10), region, 2.5) == (10, 10, 11, 11)  # a point outside: itself


@pytest.mark.parametrize("shape", [(300, 1), (1, 300), (1, 1)])
def test_a_one_pixel_thin_defective_image_gets_its_box(tmp_path: Path, shape: tuple[int, int]):
    """OpenCV's compare took a 1-pixel-wide window and a scalar for two arrays of unequal size: the whole batch
    was lost (exit 1, no records, no summary)."""
    src = write_images(tmp_path / "in")
    cv2.imwrite(str(src / "thin.png"), np.full(shape, 250, np.uint8))
    args = ["--source", str(src), "--model", str(MODELS / "tiny_map.onnx"), "--json", "--heatmap"]
    r = CliRunner().invoke(infer_main, [*args, "--save", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    recs = {Path(rec["source"]).name: rec for rec in map(json.loads, r.stdout.splitlines())}
    assert len(recs) == 3 and recs["thin.png"]["label"] == "defective"
    x0, y0, x1, y1 = recs["thin.png"]["defect_box"]
    assert 0 <= x0 < x1 <= shape[1] and 0 <= y0 < y1 <= shape[0]
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 3


def test_a_box_that_cannot_be_found_leaves_the_verdict_with_a_warning(tmp_path: Path, monkeypatch):
    def broken(*args, **kwargs):
        raise cv2.error("OpenCV(5.0.0) arithm.cpp:1611: error: (-209:Sizes do not match)\n in function 'compare'")

    monkeypatch.setattr(heatmap, "locate", broken)
    src = write_images(tmp_path / "in")
    args = ["--source", str(src), "--model", str(MODELS / "tiny_map.onnx"), "--json", "--heatmap", "--fail-on-defect"]
    r = CliRunner().invoke(infer_main, [*args, "--save", str(tmp_path / "out")])
    assert r.exit_code == 10 and "Traceback" not in r.output and "error:" not in r.stderr
    recs = {Path(rec["source"]).name: rec for rec in map(json.loads, r.stdout.splitlines())}
    assert recs["bad.png"]["label"] == "defective" and recs["bad.png"]["defect_box"] is None
    assert all(rec["warning"].startswith("no heatmap or defect box for this item (") for rec in recs.values())
    assert "compare" in recs["bad.png"]["warning"]  # OpenCV's last line, not its first
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 2 and "2 with warnings" in r.stderr
