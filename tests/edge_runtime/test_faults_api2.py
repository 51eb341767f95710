"""The Python API and decoding, third campaign: a JPEG cut off in its last bytes, a model closed by a service that
swaps models, and the two-step path (``preprocess`` then ``scores``) against ``predict``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edge_runtime
from edge_runtime.cli import main
from edge_runtime.errors import ImageWarning
from edge_runtime.model import EdgeModel, load_model
from edge_runtime.preprocess import read_image

SAMPLES = Path(edge_runtime.__file__).parent / "samples" / "test"


@pytest.fixture(scope="module")
def model() -> EdgeModel:
    return load_model()


def _records(folder: Path, *extra: str) -> dict[str, dict]:
    r = CliRunner().invoke(main, ["--source", str(folder), "--json", "--workers", "1", *extra])
    assert "Traceback" not in r.output, r.output
    return {Path(rec["source"]).name: rec for rec in map(json.loads, r.stdout.splitlines())}


def test_a_jpeg_cut_off_in_its_last_bytes_is_judged_with_a_warning(tmp_path: Path):
    """OpenCV 5 refuses a JPEG whose end-of-image marker (FF D9) is missing: a camera or a copy cut off in its last
    bytes was "not a readable image" (exit 3 alone, an item error in a folder), where OpenCV 4 decoded it with a
    warning. Every byte that came is decoded again, with the record's warning (and so --fail-on-defect's failure);
    where only the marker is missing the picture, and so the verdict, is the whole file's."""
    intact = (SAMPLES / "def_front" / "cast_def_0_3446.jpeg").read_bytes()
    assert intact.endswith(b"\xff\xd9") and 0 < intact.find(b"\xff\xda") < len(intact) // 2  # the scan: 2nd half
    folder = tmp_path / "parts"
    folder.mkdir()
    half = intact[: len(intact) // 2]
    cuts = {"intact.jpeg": intact, "no_eoi.jpeg": intact[:-2], "few.jpeg": intact[:-8], "mid.jpeg": half}
    for name, data in cuts.items():
        (folder / name).write_bytes(data)
    recs = _records(folder)
    assert recs["intact.jpeg"]["warning"] is None and recs["intact.jpeg"]["defective"] is True
    for name in ("no_eoi.jpeg", "few.jpeg", "mid.jpeg"):
        assert recs[name]["error"] is None and recs[name]["label"] in ("ok", "defective"), recs[name]
    assert recs["no_eoi.jpeg"]["warning"] == "JPEG has no end marker (truncated file); the verdict may be wrong"
    assert (recs["no_eoi.jpeg"]["label"], recs["no_eoi.jpeg"]["score"]) == (
        recs["intact.jpeg"]["label"], recs["intact.jpeg"]["score"],
    )  # fmt: skip
    for name in ("few.jpeg", "mid.jpeg"):  # cut in the scan: the decoder says what it concealed
        assert recs[name]["warning"].startswith("decoder reported damage: Corrupt JPEG data"), recs[name]

    with pytest.warns(ImageWarning, match=r"no_eoi\.jpeg: JPEG has no end marker"):
        cut = read_image(folder / "no_eoi.jpeg")
    assert np.array_equal(cut, read_image(folder / "intact.jpeg"))

    gate = CliRunner().invoke(main, ["--source", str(folder / "no_eoi.jpeg"), "--json", "--fail-on-defect"])
    assert gate.exit_code == 10, gate.stderr  # a warned item never passes a gate


def test_a_jpeg_cut_in_its_headers_is_still_unreadable(tmp_path: Path):
    """Putting the end marker back decodes what came of the picture; a file cut before its scan has none."""
    intact = (SAMPLES / "ok_front" / "cast_ok_0_8189.jpeg").read_bytes()
    (tmp_path / "head.jpeg").write_bytes(intact[: intact.find(b"\xff\xda")])  # up to its scan
    rec = _records(tmp_path)["head.jpeg"]
    assert rec["label"] is None and "not a readable image" in rec["error"]


def test_preprocess_then_scores_softens_as_predict_does(model: EdgeModel):
    """``model.scores(preprocess(images, model.info.preprocess))`` skipped the softening that predict gives an input
    sharper than any training image: 5 of the 715 test images scored otherwise (by up to 0.0003), and a sharper
    camera's parts by up to 0.0034 (sharpened samples)."""
    from benchmarks.station_conditions import sharpen
    from edge_runtime import preprocess
    from edge_runtime.model import RuntimeConfig, default_model_path

    images = [sharpen(read_image(f)) for f in sorted(SAMPLES.rglob("*.jpeg"))]
    spec = model.info.preprocess
    want = [p.score for p in model.predict_batch(images)]
    assert model.scores(preprocess(images, spec)) == pytest.approx(want, abs=1e-6)
    assert np.array_equal(preprocess(images, spec), model.prepare(images))
    as_is = EdgeModel(default_model_path(), RuntimeConfig(soften=False))
    assert not np.array_equal(preprocess(images, spec), preprocess(images, as_is.info.preprocess))  # some softened
    assert spec.sharpness_limit == model.sharpness_limit is not None and as_is.info.preprocess.sharpness_limit is None
    assert "sharpness_limit" not in spec.to_dict() and spec == as_is.info.preprocess  # the file's spec, unchanged


def test_preprocess_then_scores_gives_predicts_score_on_every_test_image(model: EdgeModel, casting_dir: Path):
    from edge_runtime import preprocess

    images = [read_image(f) for f in sorted((casting_dir / "test").glob("*/*.jpeg"))]
    want = np.array([p.score for p in model.predict_batch(images)])
    got = np.concatenate(
        [model.scores(preprocess(images[i : i + 64], model.info.preprocess)) for i in range(0, 715, 64)]
    )
    assert len(images) == 715
    assert np.abs(got - want).max() <= 1e-6, np.flatnonzero(np.abs(got - want) > 1e-6)


def test_a_closed_model_frees_its_session_and_refuses_work_in_one_line(tiny_model: Path):
    """A service that swaps models could not free the old one's onnxruntime session when it chose: the model had no
    close() and no with-block; the session lived as long as any reference to the model did."""
    import gc
    import pickle
    import weakref

    image = np.full((64, 64), 220, np.uint8)
    with load_model(tiny_model, provider="cpu") as m:  # TypeError: no context manager protocol, before
        assert m.predict(image).defective and not m.closed
        session = weakref.ref(m.session)
    from edge_runtime.errors import ClosedModelError, ModelError

    gc.collect()
    assert m.closed and session() is None and not hasattr(m, "session")  # released, not merely hidden
    said = re.escape(f"{tiny_model}: this model was closed (close(), or the end of its with block); load it again")
    for use in (lambda: m.predict(image), lambda: m.predict_batch([image]), lambda: m.scores(m.prepare([image]))):
        with pytest.raises(ClosedModelError, match=said) as err:
            use()
        assert isinstance(err.value, ModelError) and "\n" not in str(err.value)
    m.close()  # again: nothing to do
    with pytest.raises(ClosedModelError), m:
        pass
    assert m.info.threshold == 0.5 and m.path == tiny_model  # what it was stays readable

    # a pool worker's model, closed by a task, is opened again for the next task (it had been handed out closed)
    live = load_model(tiny_model, provider="cpu")
    first = pickle.loads(pickle.dumps(live))
    first.close()
    assert pickle.loads(pickle.dumps(live)).predict(image).defective


def test_a_wrongly_shaped_batch_for_scores_or_predict_inputs_is_named_in_one_line(model: EdgeModel):
    """model.scores and model.predict_inputs, handed a batch of another size (a 128 px preprocess, channels in
    colour, one image without its batch axis), raised onnxruntime's own "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :
    Got invalid dimensions for input: image ... Please fix either the inputs/outputs or the model" over 4 lines, or an
    IndexError; preprocess([]) and model.prepare([]) (the end of a data set sliced in batches) numpy's "need at least
    one array to stack". Now one ImageReadError names the shape to pass, and no images are an empty batch."""
    from edge_runtime.errors import ImageReadError

    spec = model.info.preprocess
    size, channels = spec.size, spec.channels
    image = read_image(sorted(SAMPLES.rglob("*.jpeg"))[0])
    x = edge_runtime.preprocess([image], spec)
    for wrong in (np.zeros((1, channels, 128, 128), np.float32), np.repeat(x, 3, axis=1), x[0]):
        with pytest.raises(ImageReadError, match=rf"^scores takes a batch of shape \(N, {channels}, {size}, {size}\)"):
            model.scores(wrong)
    u8 = model.input_u8(image)
    for wrong in (np.zeros((1, 64, 64), np.uint8), u8):
        said = rf"^predict_inputs takes a batch of shape \(N, {size}, {size}\), as model.input_u8 makes it, not"
        with pytest.raises(ImageReadError, match=said):
            model.predict_inputs(wrong)
    assert model.predict_inputs(u8[None])[0].score == model.predict(image).score
    for empty in (edge_runtime.preprocess([], spec), model.prepare([])):
        assert empty.shape == (0, channels, size, size) and len(model.scores(empty)) == 0


def test_preprocess_or_prepare_given_one_image_refuses_it_instead_of_scoring_its_rows(model: EdgeModel):
    """preprocess(image, spec) and model.prepare(image), handed one image instead of a list, read its rows as images:
    a defective part in colour (300 x 300 x 3) became 300 "images" of 300 x 3, the first scored 0.06 ("ok") where
    predict gives 0.998; a channels-first image three gray ones; a gray one "image: unsupported image shape (300,)".
    They read images as predict_batch does now: one image, or an array that could be one, is one line."""
    from edge_runtime.errors import ImageReadError

    spec = model.info.preprocess
    gray = read_image(sorted(SAMPLES.rglob("*.jpeg"))[0])
    colour = np.dstack([gray] * 3)
    for use, name in ((lambda x: edge_runtime.preprocess(x, spec), "preprocess"), (model.prepare, "prepare")):
        with pytest.raises(
            ImageReadError,
            match=rf"^{name} takes a list of images, not one image: use predict for one image, or pass \[image\]$",
        ):
            use(gray)
        for one in (colour, np.moveaxis(colour, 2, 0)):
            with pytest.raises(ImageReadError, match=rf"^{name} takes a list of images, not an array of shape"):
                use(one)
        assert np.array_equal(use([colour]), use(np.stack([colour] * 5))[:1])
    assert model.scores(model.prepare([colour]))[0] == model.predict(colour).score
