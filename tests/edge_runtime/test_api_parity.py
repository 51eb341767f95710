"""The Python API against edge-infer and against the arrays and paths a service's own code hands it: the same picture
gets the same verdict whichever way it comes in, and what cannot be read is named in one line. Found by a second
campaign on the API."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.model import EdgeModel, load_model
from edge_runtime.prediction import recorded_score
from edge_runtime.preprocess import read_image, to_uint8_gray


@pytest.fixture(scope="module")
def model() -> EdgeModel:
    return load_model()


def _record(path: Path) -> dict:
    r = CliRunner().invoke(main, ["--source", str(path), "--json", "--workers", "1"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_a_colour_png_scores_in_edge_infer_as_its_pixels_do_in_predict(model, tmp_path, casting_dir: Path):
    """edge-infer made a colour PNG gray by libpng's conversion, which truncates (half the pixels a level darker than
    predict makes the same BGR pixels): a tinted copy of an OK part scored 0.494, defective, in edge-infer and 0.301,
    ok, in model.predict(cv2.imread(path))."""
    part = cv2.imread(str(casting_dir / "test" / "ok_front" / "cast_ok_0_1368.jpeg"))
    tinted = np.clip(part * np.array([0.8, 1.0, 1.15]), 0, 255).astype(np.uint8)
    pictures = {
        "tinted.png": tinted,
        "tinted_alpha.png": cv2.cvtColor(tinted, cv2.COLOR_BGR2BGRA),
        "tinted_16.png": tinted.astype(np.uint16) * 257,
    }
    for name, pixels in pictures.items():
        cv2.imwrite(str(tmp_path / name), pixels)
        as_read = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)
        want, record = model.predict(as_read), _record(tmp_path / name)
        assert (record["label"], record["score"]) == (want.label, recorded_score(want.score)), name
        assert np.array_equal(read_image(tmp_path / name), to_uint8_gray(as_read)), name
    assert model.predict(tinted).label == "ok"


def test_paths_come_as_str_path_or_bytes_and_anything_else_is_named_in_one_line(model, tmp_path, tiny_model):
    """read_image(b"...") and load_model(b"...") (os.listdir(b".")'s names, the way to a name that is not UTF-8) were
    pathlib's TypeError; read_image(None), an open file or a file's bytes Python's "expected str, bytes or
    os.PathLike object"; the decode_image(data) an error names was not in the package; predict(None), what
    cv2.imread gives for a file it cannot read, was a bare "empty image"."""
    import edge_runtime
    from edge_runtime.errors import ImageReadError, ModelError

    sample = next((Path(edge_runtime.__file__).parent / "samples").rglob("*.jpeg"))
    odd = tmp_path / os.fsdecode(b"part\xff.jpeg")  # not UTF-8
    odd.write_bytes(sample.read_bytes())
    want = model.predict(read_image(sample)).score
    for path in (str(odd), odd, os.fsencode(odd)):
        assert model.predict(read_image(path)).score == want, path
    data = sample.read_bytes()
    wrongs = ((None, "NoneType"), (3, "int"), (data, "an image file's contents"), ("a\0b", "a path holding a NUL"))
    for wrong, named in wrongs:
        with pytest.raises(ImageReadError, match=rf"^read_image takes a file's path .*not {named}.*decode_image"):
            read_image(wrong)
    with open(sample, "rb") as f, pytest.raises(ImageReadError, match="not BufferedReader"):
        read_image(f)
    assert model.predict(edge_runtime.decode_image(data)).score == want
    with pytest.raises(ImageReadError, match=r"^image 0: empty image \(None, as cv2.imread gives .*read_image\(path\)"):
        model.predict(None)
    odd_model = tmp_path / os.fsdecode(b"m\xff.onnx")
    odd_model.write_bytes(tiny_model.read_bytes())
    assert load_model(os.fsencode(odd_model), provider="cpu").path == odd_model
    assert load_model(b"fp32").info.precision.value == "fp32"
    with pytest.raises(TypeError, match=r"^load_model takes a model file's path .*not 3 \(int\)$"):
        load_model(3)
    with pytest.raises(ModelError, match="holds no NUL character"):
        load_model("m\0.onnx")


def test_big_endian_pixels_score_as_their_native_selves(model):
    """16-bit pixels in a Motorola-order TIFF come from tifffile or PIL ("I;16B") as they are stored, dtype ">u2":
    they were refused, "unsupported pixel type >u2 (expected uint8, uint16 or float)"."""
    import edge_runtime

    gray = read_image(next((Path(edge_runtime.__file__).parent / "samples").rglob("*.jpeg")))
    twelve = gray.astype(np.uint16) << 4
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR).astype(np.uint16) * 257
    for native in (twelve, bgr, gray / 255.0):
        swapped = native.astype(native.dtype.newbyteorder(">"))
        assert model.predict(swapped).score == model.predict(native).score, native.dtype


def test_read_image_says_when_the_decoder_patched_the_picture_as_edge_infer_does(tmp_path):
    """A JPEG that libjpeg decodes only by concealing damage gets a warning in edge-infer's record (and fails
    --fail-on-defect); read_image returned the patched picture without a word, and a gate built on the API passed
    it. It gives an ImageWarning with the record's words now; a sound file none."""
    import warnings

    import edge_runtime

    sample = sorted((Path(edge_runtime.__file__).parent / "samples").rglob("*.jpeg"))[0]
    data = bytearray(sample.read_bytes())
    for i in range(len(data) * 2 // 3, len(data) * 2 // 3 + 40, 4):  # bits flipped in the scan
        data[i] ^= 0x55
    damaged = tmp_path / "damaged.jpeg"
    damaged.write_bytes(bytes(data))
    said = _record(damaged)["warning"]
    assert said and said.startswith("decoder reported damage"), said
    with pytest.warns(UserWarning) as got:
        read_image(damaged)
    assert [str(w.message) for w in got] == [f"{damaged}: {said}"]
    assert isinstance(got[0].message, edge_runtime.ImageWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(sample)


def test_nan_or_infinite_pixels_are_named_not_scored_in_silence(model, tmp_path):
    """A float image's NaN pixels (a depth or thermal camera's invalid region) were drawn black and scored without a
    word: a 60 x 60 NaN patch turned OK parts "defective" (0.47, 0.82), others stayed "ok", unlike_training None. The
    reason is on the prediction now, and in edge-infer's record warning for a float TIFF."""
    import edge_runtime

    ok = read_image(sorted((Path(edge_runtime.__file__).parent / "samples").rglob("ok_front/*.jpeg"))[0]) / 255.0
    assert model.predict(ok).unlike_training is None
    for bad in (np.nan, np.inf):
        patched = ok.copy()
        patched[100:160, 100:160] = bad
        why = model.predict(patched).unlike_training or ()
        assert "3600 of 90000 pixels (4.0%) are not numbers (NaN) or infinite: scored as black or white" in why, why
        colour = cv2.cvtColor(patched.astype(np.float32), cv2.COLOR_GRAY2BGR)
        assert model.predict_batch([ok, colour])[1].unlike_training
    patched = ok.astype(np.float32)
    patched[100:160, 100:160] = np.nan
    cv2.imwrite(str(tmp_path / "depth.tif"), patched)
    assert "are not numbers (NaN) or infinite" in (_record(tmp_path / "depth.tif")["warning"] or "")
    cv2.imwrite(str(tmp_path / "clean.tif"), ok.astype(np.float32))
    assert _record(tmp_path / "clean.tif")["warning"] is None


def test_decode_image_takes_a_files_bytes_and_names_anything_else(model):
    """decode_image, which errors point to, decoded whatever it was given as bytes: a path was "string argument
    without an encoding" (str) or "not a readable image" (Path, and 3 as three zero bytes), decoded pixels "not a
    readable image"; and damage the decoder concealed went unsaid. cv2.imencode's (N, 1) array still decodes."""
    import warnings

    import edge_runtime
    from edge_runtime import decode_image
    from edge_runtime.errors import ImageReadError

    sample = sorted((Path(edge_runtime.__file__).parent / "samples").rglob("*.jpeg"))[0]
    gray = read_image(sample)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(decode_image(cv2.imencode(".png", gray)[1]), gray)
        assert np.array_equal(decode_image(memoryview(sample.read_bytes())), gray)
    for wrong, said in ((str(sample), "not str: read a file with read_image"), (sample, "not PosixPath: read a file"),
                        (3, "not int"), (None, "not NoneType"), (gray, "not an array of shape (300, 300) (uint8): "
                        "pixels already decoded go to predict")):  # fmt: skip
        with pytest.raises(ImageReadError, match=r"^image: decode_image takes an image file's bytes, ") as got:
            decode_image(wrong)
        assert said in str(got.value)
    data = bytearray(sample.read_bytes())
    for i in range(len(data) * 2 // 3, len(data) * 2 // 3 + 40, 4):
        data[i] ^= 0x55
    with pytest.warns(UserWarning, match="^part 7: decoder reported damage"):
        decode_image(bytes(data), source="part 7")


def test_a_predictions_dict_is_edge_infers_record_of_it_and_dumps_as_json(model, tmp_path):
    """Prediction.to_dict() had label, score, defective and latency_ms only: a service logging it lost
    unlike_training ("no part found": a gate must not pass it) and the defect's box that edge-infer records."""
    import edge_runtime

    samples = sorted((Path(edge_runtime.__file__).parent / "samples").rglob("*.jpeg"))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((300, 300), np.uint8))
    boxes = []
    for path in (samples[0], samples[-1], blank):
        r = CliRunner().invoke(main, ["--source", str(path), "--json", "--heatmap", "--workers", "1"])
        record = json.loads(r.stdout)
        mine = model.predict(read_image(path), heatmap=True).to_dict()
        assert json.loads(json.dumps(mine)) == mine
        mine.pop("latency_ms")
        about_the_item = ("source", "frame", "latency_ms", "error", "warning", "time")
        assert mine == {k: v for k, v in record.items() if k not in about_the_item}, path.name
        boxes.append(mine["defect_box"])
    assert record["unlike_training"] and boxes[0] and boxes[-1] is None  # a defective part, then the blank frame


def test_a_column_of_images_or_an_empty_stack_is_a_batch(model):
    """predict_batch(df["image"].values), pandas' object array of the images themselves, and the empty end of a
    stack sliced in batches were refused: "could be one image as well as a stack (channels first? gray and alpha?)"."""
    import edge_runtime
    from edge_runtime.errors import ImageReadError

    images = [read_image(p) for p in sorted((Path(edge_runtime.__file__).parent / "samples").rglob("*.jpeg"))[:3]]
    column = np.empty(3, object)
    column[:] = [images[0], images[1][:200], cv2.cvtColor(images[2], cv2.COLOR_GRAY2BGR)]
    want = [p.score for p in model.predict_batch(list(column))]
    assert [p.score for p in model.predict_batch(column)] == want
    gray, colour = np.stack([images[0]] * 10), np.stack([column[2]] * 6)
    assert [len(model.predict_batch(gray[i : i + 5])) for i in range(0, 15, 5)] == [5, 5, 0]
    assert [len(model.predict_batch(colour[i : i + 4])) for i in range(0, 12, 4)] == [4, 2, 0]
    with pytest.raises(ImageReadError, match=r"image 1: not an image array \(got str\)"):
        model.predict_batch(np.array([images[0], "part.jpg"], dtype=object))
