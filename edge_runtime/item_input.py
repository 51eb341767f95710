"""One decoded item -> what its verdict needs: the network input, the station check's reasons and the part's square
for the symmetry look (see :meth:`edge_runtime.model.EdgeModel.input_for_verdict`, which passes the model's own
settings)."""

from __future__ import annotations

import numpy as np

from edge_runtime import symmetry
from edge_runtime.detail import softened
from edge_runtime.framing import frame_part
from edge_runtime.preprocess import CropMode, PreprocessSpec, resize_to_input
from edge_runtime.station_check import StationProfile, reasons, several_parts_reason, small_part_reason
from edge_runtime.summary import NO_PART
from edge_runtime.symmetry import PartPatch


def item_input(
    gray: np.ndarray,
    spec: PreprocessSpec,
    *,
    profile: StationProfile | None,
    sharpness_limit: float | None,
    cut_part: bool,
) -> tuple[np.ndarray, list[str], PartPatch | None]:
    """``gray`` (8-bit) -> the model input, why it looks unlike the training images (``profile``: the station check's;
    None: not checked) and the part's square where ``cut_part`` and the look may be needed: a part is found, and
    the item looks unlike the training images (or was not checked). ``sharpness_limit``: inputs sharper than it
    are softened (None: left as they are)."""
    if profile is None and not cut_part and spec.crop is not CropMode.PART:
        small = small_part_reason(min(gray.shape[:2]), spec.size)
        return resize_to_input(gray, spec), [small] if small else [], None
    framed = frame_part(gray, spec.size, spec.part_scale, with_stats=profile is not None)
    x = framed.image if spec.crop is CropMode.PART else resize_to_input(gray, spec)
    if sharpness_limit is not None:  # the station check below still names a camera sharper than training
        x = softened(x, sharpness_limit, framed.stats.get("sharpness"))
    why = reasons(framed.stats, profile) if profile is not None else []
    if profile is None and spec.crop is CropMode.PART and not framed.part.found:
        # without the station check too: a lens cap or an empty tray is not a part, and a gate must not pass it
        why = [f"{NO_PART} (the whole frame was used)"]
    if profile is None and spec.crop is CropMode.PART and framed.part.others:  # nor a part beside the one judged
        why = [several_parts_reason({"other_parts": framed.part.others, "part_x": framed.part.cx,
                                     "part_y": framed.part.cy})]  # fmt: skip
    side = framed.region[2] - framed.region[0] if spec.crop is CropMode.PART else min(gray.shape[:2])
    if small := small_part_reason(side, spec.size):  # checked always, as a part is: a gate must not pass it
        why = [*why, small]
    cut = cut_part and framed.part.found and (profile is None or bool(why))
    return x, why, symmetry.part_patch(gray, framed.region) if cut else None
