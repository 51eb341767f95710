"""What ``EdgeModel.predict_batch`` accepts as its images: a list, any iterable, or a stacked array whose first
axis is the images; and the chunks it scores them in.

>>> len(image_list(np.zeros((4, 32, 32, 3), np.uint8))), len(image_list(iter([np.zeros((8, 8))] * 3)))
(4, 3)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from edge_runtime.errors import ImageReadError

# Images preprocessed and scored at a time: a list of 5000 images held 6 GB of intermediate arrays at once.
CHUNK = 256


def image_list(images: Iterable[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """``images`` as a list of images. A stacked array (N, H, W, C) is N images; (N, H, W) is N gray images
    unless its last axis could be colour channels (3 or 4, or 1), when it could as well be one colour image,
    and is refused. A stacked array was "The truth value of an array ... is ambiguous", a generator "has no
    len()", and one image (H, W) is refused rather than read as H images of one row each."""
    if isinstance(images, np.ndarray):
        if images.ndim == 4 or (images.ndim == 3 and images.shape[-1] not in (1, 3, 4)):
            return list(images)
        if images.ndim == 2:
            raise ImageReadError("predict_batch takes a list of images, not one image: use predict for one image")
        raise ImageReadError(
            f"predict_batch takes a list of images, not an array of shape {images.shape}: one colour image, or "
            f"{images.shape[0]} gray ones? pass a list of images, or use predict for one image"
        )
    if isinstance(images, (str, bytes)):
        raise ImageReadError(f"predict_batch takes a list of image arrays, not a {type(images).__name__}")
    return list(images)
