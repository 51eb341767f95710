"""What ``EdgeModel.predict_batch`` accepts: as its images a list, any iterable (taken a chunk at a time), or a
stacked array whose first axis is the images, and the chunks it scores them in; as its switches True or False.

>>> [len(c) for c in image_chunks(np.zeros((4, 32, 32, 3), np.uint8), 3)]
[3, 1]
>>> [len(c) for c in image_chunks((np.zeros((8, 8)) for _ in range(5)), 2)]
[2, 2, 1]
"""

from __future__ import annotations

import itertools
import reprlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from edge_runtime.errors import ImageReadError

if TYPE_CHECKING:
    from edge_runtime.preprocess import PreprocessSpec

# Images preprocessed and scored at a time: a list of 5000 images held 6 GB of intermediate arrays at once.
CHUNK = 256


def image_chunks(
    images: Iterable[np.ndarray] | np.ndarray, size: int = CHUNK, *, what: str = "predict_batch"
) -> Iterator[list[np.ndarray]]:
    """``images`` in lists of at most ``size``; an iterable is read a chunk at a time (a generator of 600 frames
    was read whole before the first was scored). A stacked array is N x H x W x C (C 1, 3 or 4), or N x H x W
    where neither N nor W could be colour channels; anything that could as well be one image (H x W x 2 gray and
    alpha, 3 x H x W channels first, N x H x 3) is refused, not read as many one-row images. A stacked array was
    "The truth value of an array ... is ambiguous", a generator "has no len()". ``what``: the method errors name."""
    if isinstance(images, np.ndarray):
        images = _stacked(images, what)
    elif isinstance(images, (str, bytes, dict)) or not isinstance(images, Iterable):
        raise ImageReadError(f"{what} takes a list of image arrays (got {type(images).__name__})")
    it = iter(images)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def flag(value: object, name: str) -> bool:
    """``value`` when it is True or False (numpy's bool too), else a TypeError naming the argument ``name``: any
    object was taken for its truth, so ``heatmap="no"`` computed the map.

    >>> flag(np.bool_(True), "heatmap")
    True
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(
        f"{name} must be True or False, not {reprlib.repr(value)} ({type(value).__name__}); pass {name}=True or "
        f"{name}=False"
    )


def image_list(images: Iterable[np.ndarray] | np.ndarray, *, what: str) -> list[np.ndarray]:
    """``images`` as :func:`image_chunks` reads them, in one list: ``preprocess(image, spec)`` and
    ``model.prepare(image)`` given one image had read its rows as images ("image: unsupported image shape (300,)")."""
    return [im for chunk in image_chunks(images, what=what) for im in chunk]


def _stacked(images: np.ndarray, what: str) -> list[np.ndarray]:
    # pandas' df["image"].values holds the images themselves, and a stack sliced in batches ends in an empty one:
    # both were refused as "could be one image as well as a stack (channels first? gray and alpha?)"
    if images.dtype == object and images.ndim == 1:
        return list(images)
    if images.ndim in (3, 4) and len(images) == 0:
        return []
    if images.ndim == 4 and images.shape[-1] in (1, 3, 4):
        return list(images)
    if images.ndim == 3 and images.shape[0] > 4 and images.shape[-1] > 4:
        return list(images)
    if images.ndim == 2:
        raise ImageReadError(
            f"{what} takes a list of images, not one image: use predict for one image, or pass [image]"
        )
    raise ImageReadError(
        f"{what} takes a list of images, not an array of shape {images.shape}, which could be one image as "
        "well as a stack (channels first? gray and alpha?): pass a list of images (channels last), or use predict"
    )


def model_batch(batch: object, spec: PreprocessSpec, *, u8: bool) -> np.ndarray:
    """``batch`` as an array of what ``model.predict_inputs`` takes (``u8``: N stacked ``model.input_u8`` results)
    or ``model.scores`` takes (N preprocessed channels x size x size), or an :class:`ImageReadError` saying which
    shape to pass: a wrongly shaped batch had been onnxruntime's "Got invalid dimensions for input: image ...
    Please fix either the inputs/outputs or the model", or an IndexError.

    >>> from edge_runtime.preprocess import PreprocessSpec
    >>> model_batch(np.zeros((2, 64, 64), np.uint8), PreprocessSpec(size=160), u8=True)
    Traceback (most recent call last):
    ...
    edge_runtime.errors.ImageReadError: predict_inputs takes a batch of shape (N, 160, 160), as model.input_u8 makes \
it, not (2, 64, 64)
    """
    shape = (spec.size, spec.size) if u8 else (spec.channels, spec.size, spec.size)
    what, made_by = (
        ("predict_inputs", "model.input_u8") if u8 else ("scores", "preprocess(images, model.info.preprocess)")
    )
    x = np.asarray(batch)
    if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
        want = ", ".join(["N", *map(str, shape)])
        raise ImageReadError(f"{what} takes a batch of shape ({want}), as {made_by} makes it, not {x.shape}")
    return x
