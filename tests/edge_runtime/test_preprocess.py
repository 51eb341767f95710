from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.errors import ImageReadError, ModelError
from edge_runtime.preprocess import CropMode, PreprocessSpec, preprocess, read_image


@pytest.mark.parametrize(
    ("image", "name"),
    [
        (np.full((40, 60), 128, np.uint8), "gray.png"),
        (np.full((40, 60, 3), 128, np.uint8), "rgb.png"),
        (np.full((40, 60, 4), 128, np.uint8), "rgba.png"),
        (np.full((40, 60), 128 * 256, np.uint16), "gray16.png"),
        (np.full((40, 60), 128, np.uint8), "gray.jpg"),
    ],
)
def test_every_common_image_kind_reads_as_8bit_gray(tmp_path: Path, image: np.ndarray, name: str):
    p = tmp_path / name
    assert cv2.imwrite(str(p), image)
    gray = read_image(p)
    assert gray.dtype == np.uint8 and gray.shape == (40, 60)
    assert abs(int(gray.mean()) - 128) <= 2


def test_corrupt_and_non_image_files_raise_a_named_error(tmp_path: Path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="cannot read file"):
        read_image(tmp_path / "missing.png")


def test_preprocess_shape_scale_and_centre_crop():
    spec = PreprocessSpec(size=32)
    wide = np.zeros((100, 300), np.uint8)
    wide[:, 100:200] = 255  # the centred square is all white
    x = preprocess([wide], spec)
    assert x.shape == (1, 1, 32, 32) and x.dtype == np.float32
    assert x.min() == pytest.approx(1.0)
    stretched = preprocess([wide], PreprocessSpec(size=32, crop=CropMode.STRETCH))
    assert stretched.min() == pytest.approx(0.0)


def test_spec_round_trips_and_rejects_unknown_versions():
    spec = PreprocessSpec(size=96, channels=3)
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    d = spec.to_dict() | {"version": 99}
    with pytest.raises(ModelError, match="version 99"):
        PreprocessSpec.from_dict(d)
    with pytest.raises(ModelError, match="not valid JSON"):
        PreprocessSpec.from_json("__import__('os')")
