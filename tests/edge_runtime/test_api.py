"""The Python API as an ML engineer's own code calls it (README "Python API"): the arrays it is handed, how a
batch is given, and what it says about a frame that is no part. Found by a campaign on the API: a defective part
came back "ok" from a float image with one pixel above 1.0, and a blank frame was a plain "ok"."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.errors import ImageReadError, ModelError, UsageError
from edge_runtime.model import OPENED_ATTRIBUTES, EdgeModel, load_model
from edge_runtime.preprocess import read_image
from edge_runtime.summary import NO_PART
from tests.edge_runtime.conftest import make_tiny_model
from tests.edge_runtime.fault_cases import _edited_threshold

SAMPLES = Path(__file__).resolve().parents[2] / "edge_runtime" / "samples" / "test"


@pytest.fixture(scope="module")
def model() -> EdgeModel:
    return load_model()


@pytest.fixture(scope="module")
def defective(casting_dir: Path) -> list[np.ndarray]:
    return [read_image(p) for p in sorted((casting_dir / "test" / "def_front").glob("*.jpeg"))[:12]]


def test_a_float_image_scores_as_its_8_bit_self_whatever_its_overshoot_or_alpha(model, defective):
    """The range of a float image was read from its largest pixel: a 0..1 image resized with cubic interpolation
    (overshoot to 1.002), or one pixel at 1.001, was taken for 0..255 and came out black: every defective part
    "ok". An opaque alpha (255.0, or 65535 in a 16-bit BGRA image) blackened the picture too; a 16-bit camera's
    values held as floats (0..65535) were clipped to white."""
    for gray in defective:
        big = cv2.resize(gray, (600, 600), interpolation=cv2.INTER_CUBIC)
        want = model.predict(big)
        assert want.defective
        bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
        one_high = gray / 255.0
        one_high[0, 0] = 1.001
        variants = {
            "cubic 0..1": cv2.resize(gray.astype(np.float32) / 255, (600, 600), interpolation=cv2.INTER_CUBIC),
            "one pixel at 1.001": one_high,
            "float 0..65535": gray.astype(np.float32) * 257,
            "float BGRA, alpha 255.0": np.dstack([bgr / 255.0, np.full(gray.shape, 255.0)]).astype(np.float32),
            "uint16 BGRA, alpha 65535": np.dstack([bgr.astype(np.uint16), np.full(gray.shape, 65535, np.uint16)]),
        }
        for name, image in variants.items():
            got = model.predict(image)
            assert got.defective, (name, got.score)


def test_normalised_or_hot_float_images_score_as_their_8_bit_selves(model, defective, casting_dir: Path):
    """A re-test of the first fix: a normalised image ((x - 0.5) / 0.25, per-image standardised) became flat grey
    and every OK part "defective"; 0.2% hot pixels in a 0..1 image (or in 12-bit data) blackened it; float to 8
    bits truncated (0.99999 of a level lost it), so float16 0..1 scores drifted by up to 0.12."""
    ok = [read_image(p) for p in sorted((casting_dir / "test" / "ok_front").glob("*.jpeg"))[:8]]
    rng = np.random.default_rng(0)
    for gray in ok + defective[:6]:
        want = model.predict(gray)
        x = gray / 255.0
        hot = x.copy()
        hot.flat[rng.choice(hot.size, hot.size // 500, replace=False)] = 50.0
        hot12 = gray.astype(np.uint16) << 4
        hot12.flat[rng.choice(hot12.size, hot12.size // 500, replace=False)] = 65535
        variants = {
            "(x - 0.5) / 0.25": (x - 0.5) / 0.25,
            "standardised": (gray - gray.mean()) / gray.std(),
            "0.2% hot pixels": hot,
            "12-bit, 0.2% hot pixels": hot12,
            "float16 0..1": x.astype(np.float16),
        }
        for name, image in variants.items():
            got = model.predict(image)
            assert got.defective == want.defective and abs(got.score - want.score) < 0.05, (name, got, want)
        assert model.predict(x.astype(np.float16)).score == want.score  # rounded back to the very same pixels


def test_a_frame_without_a_part_says_so_as_edge_infer_does(model, defective):
    """predict gave a blank frame a plain "ok" (0.067) where edge-infer flags it and a gate fails."""
    blank = model.predict(np.zeros((300, 300), np.uint8))
    assert blank.unlike_training and any(NO_PART in why for why in blank.unlike_training)
    assert model.predict(defective[0]).unlike_training is None  # a test image looks like the training images
    assert model.predict(defective[0], heatmap=True).unlike_training is None


def test_a_batch_is_any_list_iterable_or_stack_and_a_bad_item_is_named_by_its_index(model, defective):
    """A stacked array was "The truth value of an array ... is ambiguous", a generator "has no len()"; one bad
    item raised "image: empty image" without saying which."""
    want = [p.score for p in model.predict_batch(defective[:4])]
    assert [p.score for p in model.predict_batch(im for im in defective[:4])] == want
    pulled, pulled_when_scored = [], []
    lazy = (pulled.append(i) or defective[i % 4] for i in range(600))
    scored = model._predict_chunk
    model._predict_chunk = lambda chunk, start, **kw: (
        pulled_when_scored.append(len(pulled)) or scored(chunk, start, **kw)
    )
    try:
        assert [p.score for p in model.predict_batch(lazy)][:4] == want
    finally:
        del model._predict_chunk
    assert pulled_when_scored == [256, 512, 600]  # a chunk at a time: the generator had been read whole first
    five = [p.score for p in model.predict_batch(defective[:5])]
    assert [p.score for p in model.predict_batch(np.stack(defective[:5]))] == five  # N x H x W, N > 4
    stacked_colour = np.stack([cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in defective[:4]])
    assert [p.score for p in model.predict_batch(stacked_colour)] == want
    with pytest.raises(ImageReadError, match=r"image 1: empty image"):
        model.predict_batch([defective[0], None, defective[1]])
    with pytest.raises(ImageReadError, match="not one image: use predict"):
        model.predict_batch(defective[0])
    for one_image in (np.stack(defective[:3])[:, :, :3], np.dstack([defective[0]] * 2), np.stack([defective[0]] * 3)):
        with pytest.raises(ImageReadError, match="could be one image as well as a stack"):  # N x H x 3, gray and
            model.predict_batch(one_image)  # alpha, channels first: 300 and 3 "images" had been scored
    with pytest.raises(ImageReadError, match=r"takes a list of image arrays \(got NoneType\)"):
        model.predict_batch(None)
    with pytest.raises(ImageReadError, match=r"not an image array \(got str\); read a file with read_image"):
        model.predict("part.jpg")
    with pytest.raises(ImageReadError, match=r"channels last"):
        model.predict(np.stack([defective[0]] * 3))  # channels first (3, H, W)


def test_providers_are_named_in_any_case_and_a_wrong_one_lists_the_names():
    """load_model(provider="CUDA") was "ValueError: 'CUDA' is not a valid Provider"; threads="2" was named as the
    command line's --threads, "out of range"."""
    assert load_model(provider="CPU").cfg.provider.value == "cpu"
    assert load_model(provider="CPUExecutionProvider").cfg.provider.value == "cpu"
    with pytest.raises(UsageError, match="provider 'gpu' is not one of auto, cpu, cuda, tensorrt"):
        load_model(provider="gpu")
    with pytest.raises(UsageError, match="threads '2' is not a whole number"):  # it was "--threads '2' is out of range"
        load_model(threads="2")
    assert load_model(threads=np.int64(1)).cfg.threads == 1


def test_a_missing_model_file_is_told_as_the_caller_names_it(tmp_path: Path, monkeypatch):
    """load_model("m.onnx") for a file not there said "pass --model PATH to an .onnx from export-onnx", an option a
    Python caller has not got; edge-infer --model still says --model."""
    from click.testing import CliRunner

    from edge_runtime.cli import main

    monkeypatch.chdir(tmp_path)
    for name, hint in (("m.onnx", '"int8" / "fp32"'), ("./fp32", 'the bare name "fp32"')):
        with pytest.raises(ModelError) as got:
            load_model(name)
        said = str(got.value)
        assert said.startswith(f"{Path(name)}: model file not found; pass load_model the path"), said
        assert hint in said and "--model" not in said, said
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(ModelError, match=r"not a regular file; pass load_model the path") as got:
        load_model("dir.onnx")
    assert "--model" not in str(got.value)
    sample = next(SAMPLES.rglob("*.jpeg"))
    r = CliRunner().invoke(main, ["--model", "m.onnx", "--source", str(sample)])
    assert r.exit_code == 4 and "m.onnx: model file not found; pass --model PATH" in r.output, r.output


def test_regions_not_hot_pixels_set_the_range():
    """A review of the fix: a small bright part on a dark 16-bit frame (0.8% of it) went flat white, and so did a
    bright part on black in a 0..255 float image; a large colour float image's range was sampled from its blue
    channel alone (an orange part read as 0..1, near white); one hot pixel in a standardised image crushed it to
    16 levels. The same reading serves edge-infer's 16-bit and float files."""
    from edge_runtime.preprocess import to_uint8_gray

    frame = np.full((1000, 1000), 200, np.uint16)
    frame[400:490, 400:490] = np.linspace(30000, 60000, 90).astype(np.uint16)[None, :]
    assert np.array_equal(to_uint8_gray(frame)[445, 400:490], (frame[445, 400:490] >> 8).astype(np.uint8))
    ramp = np.zeros((500, 500), np.float32)
    ramp[200:240, 200:240] = np.linspace(50, 250, 40)[None, :]
    assert np.array_equal(to_uint8_gray(ramp)[220, 200:240], np.rint(ramp[220, 200:240]).astype(np.uint8))
    orange = np.zeros((1500, 2000, 3), np.float32)
    orange[...] = (5.0, 100.0, 200.0)  # BGR, 0..255
    want = float(cv2.cvtColor(orange.astype(np.uint8), cv2.COLOR_BGR2GRAY).mean())
    assert abs(float(to_uint8_gray(orange).mean()) - want) <= 1
    standardised = np.random.default_rng(0).normal(0, 1, (300, 300)).astype(np.float32)
    standardised[0, 0] = 60.0
    assert len(np.unique(to_uint8_gray(standardised))) > 200
    # a re-test of the region rule: a 2 x 2 hot corner, a 2-pixel hot edge line or one 3 x 3 hot cluster made 12-bit
    # data 16-bit (a mean of 8 for 136, 222 of 261 OK parts "defective"), and one 3 x 3 patch at -0.02 in a 0..1
    # image read it as -1..1 (17 OK parts "defective")
    twelve = np.full((1000, 1000), 4000, np.uint16)
    for hot in (np.s_[:2, :2], np.s_[:2, :], np.s_[500:503, 500:503], np.s_[:, 150:153]):  # + a stuck 3-px column
        spoilt = twelve.copy()
        spoilt[hot] = 65535
        assert int(to_uint8_gray(spoilt)[700, 700]) == 4000 >> 4
    unit = np.random.default_rng(1).random((300, 300)).astype(np.float32)
    patched = unit.copy()
    patched[50:53, 50:53] = -0.02
    assert np.array_equal(to_uint8_gray(patched)[100:], to_uint8_gray(unit)[100:])


def _verdicts(model: EdgeModel, images: list[np.ndarray]) -> list[tuple]:
    """What a pool's task returns (module level: a spawned worker imports it)."""
    return [(p.label, p.score, p.unlike_training) for p in model.predict_batch(images)]


def test_a_model_goes_to_a_spawned_process_pool_and_scores_there_as_here(model):
    """pickle.dumps(load_model()) was "cannot pickle 'InferenceSession' object": a process pool's every worker
    had to load the model itself. It travels as its file, config and content hash, and scores the same there."""
    images = [read_image(p) for p in sorted(SAMPLES.rglob("*.jpeg"))]
    assert len(images) >= 4
    want = _verdicts(model, images)
    singly = [_verdicts(model, [im])[0] for im in images]
    assert {w[0] for w in want} == {"ok", "defective"}
    fp32 = load_model("fp32", provider="cpu", threads=1)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_verdicts, model, images).result() == want
        assert [(p.label, p.score, p.unlike_training) for p in pool.map(model.predict, images)] == singly
        there = pool.submit(_verdicts, fp32, images).result()  # another file and config in the same worker
    assert there == _verdicts(fp32, images)
    again = pickle.loads(pickle.dumps(fp32))
    assert (again.cfg, again.path, again.info) == (fp32.cfg, fp32.path, fp32.info)


def test_a_pickled_model_whose_file_went_or_changed_fails_where_it_opens_as_a_load_fails(tmp_path, tiny_model):
    """In the worker, the model is opened again with a load's checks, and must find the bytes loaded here: a
    failure had killed the worker (BrokenProcessPool, a traceback from inside multiprocessing); it is the load's
    one line, raised by the task."""
    path = tmp_path / "m.onnx"
    shutil.copy(tiny_model, path)
    model = load_model(path, provider="cpu")
    cases = {
        "removed": lambda: path.unlink(),
        "tampered": lambda: path.write_bytes(_edited_threshold(tiny_model.read_bytes())),
        "replaced by another model": lambda: make_tiny_model(path, threshold=0.3),
    }
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for name, change in cases.items():
            change()
            try:
                load_model(path, provider="cpu")
                want = f"{path}: the model file changed after this model was loaded"
            except ModelError as exc:
                want = str(exc)
            with pytest.raises(ModelError) as got:
                pool.submit(_verdicts, model, [np.zeros((48, 48), np.uint8)]).result()
            assert str(got.value).startswith(want) and "\n" not in str(got.value), name


def test_a_pickled_model_whose_file_went_answers_hasattr_and_fails_at_use(tmp_path, tiny_model):
    """hasattr(model, "x") on such a model raised its ModelError (as did getattr with a default, which libraries
    that look a model over call): it answers now; predict still raises the load's one line."""
    path = tmp_path / "m.onnx"
    shutil.copy(tiny_model, path)
    sent = pickle.dumps(load_model(path, provider="cpu"))
    path.unlink()
    model = pickle.loads(sent)
    assert not hasattr(model, "x") and getattr(model, "x", "none") == "none" and hasattr(model, "predict")
    with pytest.raises(ModelError) as got:
        model.predict(np.zeros((48, 48), np.uint8))
    assert str(got.value).startswith(f"{path}: model file not found") and "\n" not in str(got.value)


def test_a_pickled_model_that_fails_otherwise_where_it_is_opened_answers_hasattr_too(tmp_path, tiny_model):
    """A worker with fewer cores than the model's threads fails with a UsageError, not a ModelError: that one was
    raised at a mere hasattr(model, "x"), or a notebook's look for _repr_html_; predict still raises it."""
    from edge_runtime.model_pickle import unpickled

    loaded = load_model(tiny_model, provider="cpu")
    assert set(loaded.__dict__) == OPENED_ATTRIBUTES  # what a failed model raises its error for, as __init__ sets it
    too_many = replace(loaded.cfg, threads=(os.cpu_count() or 1) + 1)
    model = unpickled(Path(tiny_model).absolute(), too_many, loaded.sha256)
    assert isinstance(model, EdgeModel)
    assert not hasattr(model, "x") and not hasattr(model, "_repr_html_") and getattr(model, "x", "none") == "none"
    with pytest.raises(UsageError) as got:
        model.predict(np.zeros((48, 48), np.uint8))
    assert "threads" in str(got.value) and "\n" not in str(got.value)


def test_heatmap_takes_true_or_false_only(model):
    """heatmap="no" (any object) was taken for its truth: the map was computed and drawn for "no"."""
    image = read_image(sorted(SAMPLES.rglob("*.jpeg"))[0])
    for value in ("yes", "no", 1, None, [True]):
        with pytest.raises(TypeError, match=r"^heatmap must be True or False, not .*; pass heatmap=True or "):
            model.predict(image, heatmap=value)
        with pytest.raises(TypeError, match="heatmap must be True or False"):
            model.predict_batch([image], heatmap=value)
    with pytest.raises(TypeError, match="with_map must be True or False"):
        model.predict_inputs(np.stack([model.input_u8(image)]), with_map="no")
    assert model.predict(image, heatmap=np.bool_(True)).heatmap is not None
    assert model.predict(image, heatmap=np.False_).heatmap is None


def test_a_one_pixel_high_or_wide_image_is_framed_in_memory_like_its_own_size(model, tmp_path, monkeypatch):
    """predict on a 1 x 100,000 px image took 2.8 GB and 13 s (3 x 200,000: 1.9 GB): with no part found, its
    1-pixel square was framed by enlarging the whole frame 160 times. Only the square's own pixels are enlarged now,
    to the same input a frame of those pixels alone gives, and edge-infer gives the file the same verdict."""
    import json

    from click.testing import CliRunner

    from edge_runtime.cli import main
    from edge_runtime.framing import crop_square

    resize = cv2.resize

    def bounded(src, dsize, *args, **kwargs):  # refuses before allocating: the old framing fails fast
        if dsize and dsize[0] * dsize[1] > 4_000_000:
            raise MemoryError(f"cv2.resize of {src.shape} to {dsize}")
        return resize(src, dsize, *args, **kwargs)

    monkeypatch.setattr(cv2, "resize", bounded)
    rng = np.random.default_rng(0)
    for shape in ((1, 100_000), (100_000, 1), (3, 200_000)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        got = model.predict(image)
        assert got.unlike_training and NO_PART in got.unlike_training[0], shape
        cv2.imwrite(str(tmp_path / "strip.png"), image)
        r = CliRunner().invoke(main, ["--source", str(tmp_path / "strip.png"), "--json", "--workers", "1"])
        record = json.loads(r.stdout)
        assert (record["label"], record["score"], tuple(record["unlike_training"])) == (
            got.label, round(got.score, 6), got.unlike_training), shape  # fmt: skip
    row = rng.integers(0, 256, (1, 100_001), dtype=np.uint8)
    middle = (49_999.5, -0.5, 50_000.5, 0.5)  # the one-pixel square at its middle, as framing takes it
    alone = crop_square(row[:, 49_998:50_002], (1.5, -0.5, 2.5, 0.5), 160, 77)  # 4 px: enlarged whole
    assert np.array_equal(crop_square(row, middle, 160, 77), alone)
    column_alone = crop_square(row.T[49_998:50_002], (-0.5, 1.5, 0.5, 2.5), 160, 77)
    assert np.array_equal(crop_square(row.T, (-0.5, 49_999.5, 0.5, 50_000.5), 160, 77), column_alone)


def test_the_package_itself_gives_load_model_and_names_an_empty_path():
    """``from edge_runtime import load_model`` was an ImportError (only ``edge_runtime.model`` had it), and
    ``load_model("")`` said ".: not a regular file", the working folder."""
    import edge_runtime
    from edge_runtime import EdgeModel, Prediction
    from edge_runtime import load_model as from_package

    assert from_package is load_model and EdgeModel is edge_runtime.model.EdgeModel
    assert Prediction is edge_runtime.model.Prediction
    assert {"load_model", "EdgeModel", "Prediction"} <= set(edge_runtime.__all__)
    with pytest.raises(AttributeError, match="no attribute 'lod_model'"):
        edge_runtime.lod_model  # noqa: B018 - a typo still fails as a missing name
    with pytest.raises(ModelError, match=r"^the model's path is empty \(an unset shell variable\?\)"):
        load_model("")


def test_a_model_loaded_by_a_relative_path_unpickles_after_the_folder_changed(tmp_path, tiny_model, monkeypatch):
    """load_model("m.onnx"), then os.chdir: every pool task failed "m.onnx: model file not found" (the path went as
    typed); the model travels by its absolute path."""
    shutil.copy(tiny_model, tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    model = load_model("m.onnx", provider="cpu")
    monkeypatch.chdir(tmp_path.parent)
    there = pickle.loads(pickle.dumps(model))
    image = np.full((48, 48), 90, np.uint8)
    assert there.predict(image).score == model.predict(image).score
    assert there.path == tmp_path / "m.onnx"
