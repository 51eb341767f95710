"""The one definition of preprocessing, shared by training, export calibration and the runtime.

The spec travels inside every checkpoint and every ONNX file (as versioned JSON), so the device never guesses.
Per-image standardisation lives inside the network itself (first layer), which makes the model indifferent
to global gain and offset changes of a second camera's lighting.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum

import cv2
import numpy as np

from edge_runtime import framing
from edge_runtime.batch_input import image_list
from edge_runtime.detail import softened
from edge_runtime.errors import ImageReadError, ImageWarning, ModelError

SPEC_VERSION = 1
# What OpenCV decodes and decoding.header_size checks before decoding: JPEG (.jpe and .jfif too: a defective part
# saved as .jfif was passed over as "not an image" and the gate passed), PNG, BMP (.dib), TIFF, WebP, PNM (.pbm
# .pgm .ppm .pnm).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".pbm", ".pgm", ".ppm", ".pnm"}
)


class ResizeMethod(str, Enum):
    AREA = "area"
    LINEAR = "linear"

    @property
    def cv2_flag(self) -> int:
        return {ResizeMethod.AREA: cv2.INTER_AREA, ResizeMethod.LINEAR: cv2.INTER_LINEAR}[self]


class CropMode(str, Enum):
    CENTER = "center"  # largest centred square, then resize: no distortion of the round part
    STRETCH = "stretch"  # resize the whole frame, aspect ratio ignored
    PART = "part"  # find the part and crop it at a fixed scale (edge_runtime.framing), whatever the framing


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes the network input (N, channels, size, size), float32.

    >>> spec = PreprocessSpec(size=128)
    >>> preprocess([np.zeros((300, 300), np.uint8)], spec).shape
    (1, 1, 128, 128)
    """

    size: int = 128
    channels: int = 1
    scale: float = 1.0 / 255.0
    mean: float = 0.0
    std: float = 1.0
    resize: ResizeMethod = ResizeMethod.AREA
    crop: CropMode = CropMode.CENTER
    part_scale: float = 2.4  # PART crop: half the input side, in radii of the part's dark core
    version: int = SPEC_VERSION
    # The runtime's, never written to a file: a loaded model's softening limit (EdgeModel.sharpness_limit), so that
    # preprocess() with model.info.preprocess softens as predict does; None: inputs are used as they are.
    sharpness_limit: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ModelError(f"preprocessing spec has channels={self.channels}; only 1 or 3 are supported")
        if not 8 <= self.size <= 4096:
            raise ModelError(f"preprocessing spec has size={self.size}; expected 8..4096 pixels")
        if self.std <= 0:
            raise ModelError(f"preprocessing spec has std={self.std}; it must be positive")
        if not 1.0 <= self.part_scale <= 10.0:
            raise ModelError(f"preprocessing spec has part_scale={self.part_scale}; expected 1..10")

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["sharpness_limit"]  # the loaded model's, not the file's
        d["resize"] = self.resize.value
        d["crop"] = self.crop.value
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessSpec:
        try:
            version = int(d.get("version", -1))
            if version != SPEC_VERSION:
                raise ModelError(
                    f"preprocessing spec version {version} is not supported by this defect-edge "
                    f"(expects {SPEC_VERSION}); upgrade defect-edge or re-export the model"
                )
            return cls(
                size=int(d["size"]),
                channels=int(d["channels"]),
                scale=float(d["scale"]),
                mean=float(d["mean"]),
                std=float(d["std"]),
                resize=ResizeMethod(d["resize"]),
                crop=CropMode(d["crop"]),
                part_scale=float(d.get("part_scale", 2.4)),
                version=version,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"preprocessing spec is invalid ({exc}); re-export the model") from exc

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"preprocessing spec is not valid JSON ({exc}); re-export the model") from exc
        if not isinstance(d, dict):
            raise ModelError("preprocessing spec is not a JSON object; re-export the model")
        return cls.from_dict(d)


def bits_used(image: np.ndarray) -> int:
    """The bit depth (8, 10, 12, 14 or 16) a 16-bit image's data uses: the least that holds every pixel but hot
    ones (:func:`bright_level`), so that hot pixels do not turn 12-bit data into 16-bit darkness, while a small
    bright part on a dark frame keeps its detail.

    >>> twelve = np.full((100, 100), 4000, np.uint16)
    >>> hot = twelve.copy(); hot[np.eye(100, dtype=bool)] = 65535   # a line of hot pixels: 1% of the frame
    >>> part = twelve.copy(); part[40:50, 40:50] = 60000             # a bright region: real 16-bit data
    >>> bits_used(twelve), bits_used(hot), bits_used(part)
    (12, 12, 16)
    """
    top = bright_level(image)
    return next((bits for bits in (8, 10, 12, 14) if top < (1 << bits)), 16)


def bright_level(image: np.ndarray) -> float:
    """The brightest level that both a region of at least 3 x 3 pixels inside the frame reaches and more than 1 in
    1,000 pixels do (of the brightest channel; a frame over a million pixels is sampled): hot pixels, thin lines of
    them, a small cluster or one in a corner do not count, a small bright part does. By share alone, 0.2% hot pixels
    had blackened a frame, and by region alone a 2 x 2 hot corner had; a bright part on 0.8% of a dark frame had
    gone flat white."""
    return _level(image, bright=True)


def _dark_level(image: np.ndarray) -> float:
    """The darkest level reached in the same sense (of the darkest channel): see :func:`bright_level`."""
    return _level(image, bright=False)


def _level(image: np.ndarray, *, bright: bool) -> float:
    step = max(1, math.ceil(math.sqrt(image.shape[0] * image.shape[1] / 1e6)))
    sub = image[::step, ::step]
    pick = np.maximum if bright else np.minimum
    c = pick(pick(sub[:, :, 0], sub[:, :, 1]), sub[:, :, 2]) if sub.ndim == 3 else sub
    if bright and c.dtype == np.uint16:  # pixels stuck at 65535 (a dead column, hot clusters) set no depth: a 3-px
        c = np.where(c == 65535, 0, c)  # wide one had made 12-bit data 16-bit, the part black and "ok"
    c = c.astype(np.float64 if c.dtype == np.float64 else np.float32)  # a copy: the caller's pixels stay as they are
    c[~np.isfinite(c)] = 0
    share = float(np.percentile(c, 99.9 if bright else 0.1))
    if min(c.shape) < 5:
        return share
    kernel = np.ones((3, 3), np.uint8)
    region = (cv2.erode if bright else cv2.dilate)(c, kernel)[1:-1, 1:-1]  # the frame's edge ring left out
    return min(share, float(region.max())) if bright else max(share, float(region.min()))


def to_uint8_gray(image: np.ndarray, *, source: str = "image") -> np.ndarray:
    """Bring any decoded image (gray, BGR, BGRA; 8/16-bit or float) to 8-bit single-channel gray."""
    if image is not None and not isinstance(image, np.ndarray):  # a path or bytes: AttributeError 'str' ... 'size'
        raise ImageReadError(f"{source}: not an image array (got {type(image).__name__}); read a file with "
                             "read_image(path), decode bytes with decode_image(data)")  # fmt: skip
    if image is None:  # cv2.imread's answer for a file it cannot read: "empty image" alone did not say so
        raise ImageReadError(f"{source}: empty image (None, as cv2.imread gives for a file it cannot read); read "
                             "files with read_image(path), which says why one cannot be read")  # fmt: skip
    if image.size == 0:
        raise ImageReadError(f"{source}: empty image")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ImageReadError(f"{source}: unsupported image shape {image.shape}: expected H x W (gray) or H x W x "
                             "3 or 4 (BGR, BGRA: channels last); a stack of images goes to predict_batch")  # fmt: skip
    if not image.dtype.isnative:  # a Motorola-order TIFF's pixels, as tifffile and PIL ("I;16B") give them: ">u2"
        image = image.astype(image.dtype.newbyteorder("="))  # had been "unsupported pixel type >u2 (... uint16 ...)"
    # Depth first, channels second: OpenCV's colour conversion takes only 8/16-bit and float32 pixels. The scale is
    # read from the colour channels alone: an opaque alpha (65535, or 255.0 in a float image) made the picture black.
    colour = image[:, :, :3] if image.ndim == 3 else image
    if image.dtype == np.uint16:
        # by the bits the data uses: a 10- or 12-bit camera's pixels in a 16-bit file are not 16-bit dark pixels
        bits = bits_used(colour)
        image = (np.minimum(image, (1 << bits) - 1) >> (bits - 8)).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        image = _float_to_uint8(image, colour)
    elif image.dtype != np.uint8:
        raise ImageReadError(f"{source}: unsupported pixel type {image.dtype} (expected uint8, uint16 or float)")
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_BGR2GRAY)
    return image


def _float_to_uint8(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """A float image to 8 bits, its range read from the levels its regions reach (:func:`bright_level`), not from
    its extreme pixels: a 0..1 image resized with cubic interpolation (overshoot to 1.002), or with one pixel at
    1.001, was read as 0..255 and came out black, and a defective part "ok".

    0..1, 0..255, or the range of a 10- to 16-bit camera's values, pixels beyond it clipped; data with dark regions
    below 0 as -1..1 where it fits, else (a normalised image) by its own range, which the network's own
    standardisation makes no difference to (a normalised image had become flat grey, every OK part "defective").
    Rounded, not truncated (0.99999 of a level had lost it)."""
    top, bottom = bright_level(colour), _dark_level(colour)
    pixels = image.astype(np.float64 if image.dtype == np.float64 else np.float32)
    with np.errstate(all="ignore"):  # values near the float's own limits: inf or nan, and below, 255 or 0
        if bottom < -0.1 * max(top, 1e-12):  # dark regions well below 0 (a resize's undershoot is no sign)
            if bottom >= -1.25 and top <= 1.25:  # -1..1
                bottom, top = -1.0, 1.0
            pixels = (pixels - bottom) * (255.0 / (top - bottom)) if top > bottom else np.zeros_like(pixels)
        else:
            hi = 1.0 if top <= 1.25 else 255.0 if top <= 255 * 1.25 else float((1 << _bits_for(top)) - 1)
            pixels *= 255.0 / hi
    # in place (nan_to_num's copies and masks had made a 10000 x 10000 float image 6 s and 1.8 GB): infinities clip
    np.clip(np.rint(pixels, out=pixels), 0, 255, out=pixels)  # to 255 or 0, NaN (no level at all) is black
    pixels[np.isnan(pixels)] = 0
    return pixels.astype(np.uint8)


def not_finite_note(image: np.ndarray) -> str | None:
    """Why a float image's verdict is not to be trusted: its pixels that are NaN or infinite (a depth or thermal
    camera's invalid region, a division by zero), which no camera saw, are scored as black or white; None when every
    pixel is a number (or the image is not float). A 60 x 60 NaN patch on an OK part had made it "defective" (0.82)
    without a word.

    >>> x = np.ones((10, 10), np.float32); x[0, :5] = np.nan
    >>> not_finite_note(x)
    '5 of 100 pixels (5.0%) are not numbers (NaN) or infinite: scored as black or white'
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or not np.issubdtype(image.dtype, np.floating):
        return None
    finite = np.isfinite(image[:, :, :3]).all(axis=2) if image.ndim == 3 else np.isfinite(image)
    bad = finite.size - int(np.count_nonzero(finite))
    if not bad:
        return None
    share = f"{bad / finite.size:.1%}" if bad / finite.size >= 0.001 else "under 0.1%"
    return f"{bad} of {finite.size} pixels ({share}) are not numbers (NaN) or infinite: scored as black or white"


def _bits_for(top: float) -> int:
    """The least camera bit depth (10, 12, 14, 16) whose range holds ``top`` (0..4095 floats went white)."""
    return next((b for b in (10, 12, 14) if top < (1 << b)), 16)


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, *, source: str = "image") -> np.ndarray:
    """Decode an image file's bytes (bytes, bytearray, memoryview, or a uint8 array of them as ``cv2.imencode`` and
    ``np.frombuffer`` give) to 8-bit gray; raises :class:`ImageReadError` if they are not an image, or not a file's
    bytes (a path, or pixels already decoded, had been decoded as bytes: "not a readable image", or a TypeError).
    Damage the decoder concealed gives an :class:`~edge_runtime.errors.ImageWarning`, as in :func:`read_image`.

    The checks (header size before decoding, decoder warnings) live in :mod:`edge_runtime.decoding`.
    """
    from edge_runtime.decoding import decode

    # Decoding straight to 8-bit gray is 2-3x faster than decoding colour and converting (the JPEG decoder
    # skips the chroma planes), and it handles 16-bit and alpha images in the same call.
    decoded = decode(_file_bytes(data, source), source=source)
    if decoded.warning:
        warnings.warn(ImageWarning(f"{source}: {decoded.warning}"), stacklevel=2)
    return decoded.image


def _file_bytes(data: object, source: str) -> bytes:
    """``data`` as the bytes of an image file, or the :class:`ImageReadError` that says what was passed instead."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.squeeze().ndim <= 1:
        return data.tobytes()
    if isinstance(data, np.ndarray):
        what = f"an array of shape {data.shape} ({data.dtype}): pixels already decoded go to predict as they are"
    else:
        what = f"{type(data).__name__}: read a file with read_image(path)"
    raise ImageReadError(f"{source}: decode_image takes an image file's bytes, not {what}")


def read_image(path: str | bytes | os.PathLike[str]) -> np.ndarray:
    """Read an image file as 8-bit gray (HxW uint8). Non-ASCII paths work (bytes too); errors name the file.

    Only regular files of at most 64 MiB are read (see :mod:`edge_runtime.decoding`).

    A file the decoder could read only by concealing damage (a corrupt JPEG: edge-infer's record has a ``warning``
    and ``--fail-on-defect`` fails it) gives an :class:`~edge_runtime.errors.ImageWarning` with those words: the
    patched picture had been returned without a word.

    >>> read_image("missing.png")  # doctest: +SKIP
    ImageReadError: missing.png: cannot read file (No such file or directory)
    """
    from edge_runtime.decoding import image_path, read_image_checked

    decoded = read_image_checked(path)
    if decoded.warning:
        warnings.warn(ImageWarning(f"{image_path(path)}: {decoded.warning}"), stacklevel=2)
    return decoded.image


def input_region(gray: np.ndarray, spec: PreprocessSpec) -> tuple[float, float, float, float]:
    """The source-pixel rectangle (x0, y0, x1, y1) that the network input covers (it may pass the border).

    Maps anything computed on the input (a localisation map, a box) back to the source image.

    >>> input_region(np.zeros((300, 400), np.uint8), PreprocessSpec(size=128))
    (50.0, 0.0, 350.0, 300.0)
    """
    h, w = gray.shape[:2]
    if spec.crop is CropMode.PART:
        return framing.region_for(framing.find_part(gray, spec.part_scale), spec.part_scale)
    if spec.crop is CropMode.CENTER:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return (float(left), float(top), float(left + side), float(top + side))
    return (0.0, 0.0, float(w), float(h))


def resize_to_input(gray: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Crop (per ``spec.crop``) and resize an 8-bit gray image to ``spec.size`` square, still uint8."""
    if spec.crop is CropMode.PART:
        return framing.frame_part(gray, spec.size, spec.part_scale).image
    h, w = gray.shape[:2]
    if spec.crop is CropMode.CENTER and h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        gray = gray[top : top + side, left : left + side]
    if gray.shape[0] == spec.size and gray.shape[1] == spec.size:
        return np.ascontiguousarray(gray)
    # INTER_AREA is only meaningful when shrinking; enlarging uses linear interpolation either way.
    flag = spec.resize.cv2_flag if gray.shape[0] >= spec.size else cv2.INTER_LINEAR
    return cv2.resize(gray, (spec.size, spec.size), interpolation=flag)


def stacked(inputs: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """:func:`resize_to_input` results as one (N, size, size) uint8 array; no inputs are an empty batch (it had been
    numpy's "need at least one array to stack" from ``preprocess([], spec)`` and ``model.prepare([])``)."""
    return np.stack(inputs) if len(inputs) else np.zeros((0, spec.size, spec.size), np.uint8)


def normalize(batch_u8: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Turn (N, size, size) uint8 into the float32 network input (N, channels, size, size)."""
    x = batch_u8.astype(np.float32)
    x *= spec.scale / spec.std
    if spec.mean:
        x -= spec.mean / spec.std
    x = x[:, None, :, :]
    if spec.channels == 3:
        x = np.repeat(x, 3, axis=1)
    return x


def preprocess(images: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Full preprocessing of decoded images (any channels/depth) into one float32 NCHW batch, what
    ``model.scores`` takes. With a loaded model's spec, ``model.info.preprocess``, an input sharper than any
    training image is softened (``spec.sharpness_limit``) as ``predict`` softens it: the two steps had skipped it,
    and 5 of the 715 test images scored otherwise than in ``predict``.

    >>> x = preprocess([read_image("part.jpg")], model.info.preprocess)   # doctest: +SKIP
    >>> model.scores(x)                                                    # doctest: +SKIP
    """
    resized = [resize_to_input(to_uint8_gray(im), spec) for im in image_list(images, what="preprocess")]
    if spec.sharpness_limit is not None:
        resized = [softened(x, spec.sharpness_limit) for x in resized]
    return normalize(stacked(resized, spec), spec)
