"""Station check: does this camera show parts the way the training images did?

A model is only as good as the likeness of what it sees to what it was trained on. Export records the range of
a few input statistics over the training images (light, background, part size and position, sharpness,
highlights, image size: :func:`edge_runtime.framing.image_stats`) in the model's metadata. The runtime measures
the same on every item and flags the ones outside that range, with the reason in words, so that a new station
is questioned before anyone trusts its verdicts.

>>> prof = profile([{"background": 150.0}, {"background": 190.0}])
>>> reasons({"background": 231.0}, prof)
['background brighter than any training image (231 > 195)']
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edge_runtime.summary import NO_PART, SEVERAL_PARTS, SMALL_PART, plural, share_text

PROFILE_VERSION = 1
UNTRUSTED_SHARE = 0.01  # --check-station: more than this share of a folder flagged says "do not trust" (exit 6)
# name -> (words, format of a value, the least slack around the training range)
STATS: dict[str, tuple[str, str, float]] = {
    "brightness": ("overall brightness", "{:.0f}", 5.0),
    "background": ("background", "{:.0f}", 5.0),
    "part_size": ("part size (flange diameter / frame)", "{:.2f}", 0.03),
    "part_offset": ("part off-centre (fraction of the frame)", "{:.2f}", 0.03),
    "sharpness": ("sharpness", "{:.2f}", 0.03),
    "highlights": ("share of saturated highlights", "{:.3f}", 0.002),
    "source_size": ("image size (px)", "{:.0f}", 0.0),
}
# Each statistic's side in words: "image size (px) outside the training range" had left the user to guess which
_MORE = {"brightness": "brighter", "background": "brighter", "part_size": "larger", "sharpness": "sharper",
         "highlights": "higher", "part_offset": "farther", "source_size": "larger"}  # fmt: skip
_LESS = {"brightness": "darker", "background": "darker", "part_size": "smaller", "sharpness": "softer",
         "highlights": "lower", "part_offset": "nearer", "source_size": "smaller"}  # fmt: skip
_OF_THE_PART = ("part_size", "part_offset")  # measured on the part found, so not told where none was
MARGIN = 0.05  # the training range is widened by this share of its width, and at least by the statistic's slack


@dataclass(frozen=True)
class StationProfile:
    """The accepted range of each statistic, from the training images."""

    ranges: dict[str, tuple[float, float]]
    images: int
    # The most a training image's flange reached past the frame's border (share of its radius); None: not recorded
    # (a model exported before it, whose limit stays FLANGE_CUT). Optional, so an older runtime reads the profile.
    flange_cut: float | None = None

    def to_dict(self) -> dict[str, Any]:
        ranges = {k: list(v) for k, v in self.ranges.items()}
        cut = {} if self.flange_cut is None else {"flange_cut_max": self.flange_cut}
        return {"version": PROFILE_VERSION, "images": self.images, "ranges": ranges, **cut}

    @property
    def flange_cut_limit(self) -> float:
        """The cut over which an item is flagged: ``FLANGE_CUT``, or past the most the training images show. A model
        fine-tuned on a station whose camera cuts the flange flagged 88% of that station's own images as "unlike the
        training images" and advised fine-tuning on them, which had been done.

        >>> StationProfile({}, 1).flange_cut_limit, StationProfile({}, 1, flange_cut=0.3).flange_cut_limit
        (0.12, 0.33)
        """
        if self.flange_cut is None:
            return FLANGE_CUT
        return max(FLANGE_CUT, round(self.flange_cut + FLANGE_CUT_SLACK, 4))

    @classmethod
    def from_dict(cls, d: Any) -> StationProfile:
        """Parse the metadata entry; raises ValueError (the caller words it) when it is malformed."""
        if not isinstance(d, dict) or d.get("version") != PROFILE_VERSION or not isinstance(d.get("ranges"), dict):
            raise ValueError("station profile is not a version-1 object with ranges")
        ranges = {}
        for name, pair in d["ranges"].items():
            if name not in STATS or not isinstance(pair, list) or len(pair) != 2:
                raise ValueError(f"station profile entry {name!r} is not a known statistic with [low, high]")
            lo, hi = (float(v) for v in pair)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"station profile entry {name!r} is not a finite [low, high] range")
            ranges[name] = (lo, hi)
        cut = d.get("flange_cut_max")
        if cut is not None and not (isinstance(cut, (int, float)) and math.isfinite(cut) and cut >= 0):
            raise ValueError("station profile entry 'flange_cut_max' is not a finite number >= 0")
        return cls(ranges=ranges, images=int(d.get("images", 0)), flange_cut=None if cut is None else float(cut))


def profile(stats: Iterable[dict[str, float]]) -> StationProfile:
    """The range of each statistic over the training images, widened by ``MARGIN``."""
    values: dict[str, list[float]] = {name: [] for name in STATS}
    cuts: list[float] = []
    n = 0
    for s in stats:
        n += 1
        for name in STATS:
            v = s.get(name, math.nan)
            if math.isfinite(v):
                values[name].append(v)
        if s.get("part_found", 1.0) >= 0.5 and math.isfinite(s.get("flange_cut", math.nan)):
            cuts.append(s["flange_cut"])
    ranges = {}
    for name, vs in values.items():
        if not vs:
            continue
        lo, hi = min(vs), max(vs)
        pad = max(MARGIN * (hi - lo), STATS[name][2])
        ranges[name] = (round(lo - pad, 4), round(hi + pad, 4))
    return StationProfile(ranges=ranges, images=n, flange_cut=round(max(cuts), 4) if cuts else None)


def several_parts_reason(stats: dict[str, float]) -> str:
    """The reason for a frame that shows more than one part, naming where the one judged lies (source pixels).

    >>> several_parts_reason({"other_parts": 1.0, "part_x": 453.2, "part_y": 151.9})
    'more than one part in the frame (2 found; the one at x=453, y=152 was judged)'
    """
    n = 1 + int(stats.get("other_parts", 0.0))
    return f"{SEVERAL_PARTS} ({n} found; the one at x={stats['part_x']:.0f}, y={stats['part_y']:.0f} was judged)"


def small_part_reason(side: float, size: int) -> str | None:
    """The reason for a part whose square (``side`` source pixels) the ``size`` px input enlarges over twice; None
    where it does not. Test parts shrunk to 80 px still scored as at 300 px (no defect missed); at 40 px, 19 of 200
    defects were missed, and at 24 px, 94. The dataset's squares are 280-330 px, a 512 px camera's larger.

    >>> small_part_reason(300.0, 160), small_part_reason(40.0, 160)
    (None, 'part too small in the image (40 px across its square, enlarged 4x to the 160 px input)')
    """
    if not side * MAX_ENLARGEMENT < size:
        return None
    times = size / max(side, 1.0)
    enlarged = f"{times:.2g}" if times < 10 else f"{times:.0f}"  # a 1x1 image was "enlarged 1.6e+02x"
    return f"{SMALL_PART} ({side:.0f} px across its square, enlarged {enlarged}x to the {size} px input)"


MAX_ENLARGEMENT = 2.0  # over this, a 2 px pinhole of the training images' scale is under a source pixel

# A flange reaching past the frame's border by more than this share of its radius is flagged. The flange is taken
# at two core radii (framing.FLANGE_RATIO), a little wide: on the casting images it reads at most 0.077 past the
# border, on a flange that just touches it 0.03-0.19 (median 0.09; 21% of them over this limit), on one cut by a
# tenth of its radius on all four sides 0.15-0.28 (all over). The shipped model's false alarms on the 262 OK test
# parts rise with the cut (FP32): none where the flange touches, 7 where a tenth is cut on all four sides, 23
# where a fifth is cut on two, 91 on all four.
FLANGE_CUT = 0.12
# A model trained on cut flanges (fine-tuned at a station whose camera cuts them) flags only a cut past the most its
# training images show, by this much (their own maximum already spans the spread of parts framed alike, above).
FLANGE_CUT_SLACK = 0.03


def flange_cut_reason(stats: dict[str, float], limit: float = FLANGE_CUT) -> str | None:
    """The reason for a part whose flange the frame cuts (the camera too close, or the part off-centre) by more than
    ``limit`` (:attr:`StationProfile.flange_cut_limit`); None where the flange lies inside the frame, or no part was
    found.

    >>> flange_cut_reason({"flange_cut": 0.2}), flange_cut_reason({"flange_cut": 0.02})
    ("flange cut by the frame's border (20% of its radius outside the picture)", None)
    >>> flange_cut_reason({"flange_cut": 0.4}, 0.33)
    "flange cut by the frame's border (40% of its radius outside the picture, the training images' up to 33%)"
    """
    cut = stats.get("flange_cut", 0.0)
    if stats.get("part_found", 1.0) < 0.5 or not cut > limit:
        return None
    trained = f", the training images' up to {limit:.0%}" if limit > FLANGE_CUT else ""
    return f"flange cut by the frame's border ({cut:.0%} of its radius outside the picture{trained})"


def reasons(stats: dict[str, float], prof: StationProfile) -> list[str]:
    """Why an item looks unlike the training images, in words; empty when it looks like them."""
    out = []
    if stats.get("part_found", 1.0) < 0.5:
        out.append(f"{NO_PART} (the whole frame was used)")
    if stats.get("other_parts", 0.0) >= 1.0:
        out.append(several_parts_reason(stats))
    if cut := flange_cut_reason(stats, prof.flange_cut_limit):  # first of the framing's reasons: what to move
        out.append(cut)
    for name, (lo, hi) in prof.ranges.items():
        if name in _OF_THE_PART and stats.get("part_found", 1.0) < 0.5:
            continue  # no part: its size and place are the whole frame's, not a part's ("part off-centre" for 1x1)
        v = stats.get(name, math.nan)
        if not math.isfinite(v) or lo <= v <= hi:
            continue
        words, fmt, _ = STATS[name]
        above = v > hi
        how = (_MORE if above else _LESS).get(name)
        limit = fmt.format(hi if above else lo)
        sign = ">" if above else "<"
        if how:
            out.append(f"{words.split(' (')[0]} {how} than any training image ({fmt.format(v)} {sign} {limit})")
        else:
            out.append(f"{words} outside the training range ({fmt.format(v)} {sign} {limit})")
    return out


def reason_kind(reason: str) -> str:
    """A reason without its figures, for counting: 'background brighter than any training image'."""
    return reason.rsplit(" (", 1)[0]


FEW_IMAGES = 20  # a --check-station folder smaller than this is said to be too small to judge a station by


def looks_alike(per_item: Sequence[list[str]], unreadable: int = 0) -> tuple[bool, int, int]:
    """Whether a folder passes ``--check-station``: at most 1% of its files flagged or unreadable (the official test
    images: 0.7%); with the count of those files and of all files.

    >>> looks_alike([[]] * 710 + [["dark"]] * 5), looks_alike([[]] * 48 + [["dark"]] * 12)
    ((True, 5, 715), (False, 12, 60))
    """
    bad, files = sum(1 for r in per_item if r) + unreadable, len(per_item) + unreadable
    return bad <= UNTRUSTED_SHARE * max(files, 1), bad, files


def report(
    per_item: Sequence[list[str]],
    prof: StationProfile,
    *,
    unreadable: Sequence[str] = (),
    stopped_of: int | None = None,
) -> list[str]:
    """The lines of ``edge-infer --check-station``: how many items look unlike training, and why; ``unreadable``
    (why each file could not be read) count against the folder in the verdict line, and the first are named.
    ``stopped_of``: the check was stopped before the last of that many files, so no verdict (part of a folder
    passes nothing), only how far it got."""
    total = len(per_item)
    flagged = sum(1 for r in per_item if r)
    counts: Counter[str] = Counter(reason_kind(r) for rs in per_item for r in rs)
    lines = [f"station check: {plural(total, 'image')}, {flagged} ({share_text(flagged, total)}) unlike the "
             f"{prof.images} training images"]  # fmt: skip
    for kind, c in counts.most_common():
        lines.append(f"  {c:>6} ({share_text(c, total):>6})  {kind}")
    lines += unreadable_lines(unreadable)
    alike, bad, files = looks_alike(per_item, len(unreadable))
    if stopped_of is not None:
        lines.append(f"  -> stopped early (interrupted) after {files} of {plural(stopped_of, 'file')}: the counts "
                     "above are theirs alone; check the whole folder before trusting this station")  # fmt: skip
        return lines
    if not alike:
        lines.append(f"  -> do not trust these verdicts yet ({bad} of {plural(files, 'file')} flagged or unreadable, "
                     f"over the {UNTRUSTED_SHARE:.0%} limit): {what_to_do(per_item, unreadable)}")  # fmt: skip
        if any(per_item):  # the report counts; which files, and each one's figures, a run's records give
            lines.append(
                "  (which files, with their figures: edge-infer --source DIR --json, the unlike_training field)"
            )
    elif files < FEW_IMAGES:  # one image "looked like the training images", exit 0: too few to say so of a camera
        these = "this image looks" if files == 1 else f"these {files} images look"  # "these 1 image look"
        lines.append(f"  -> {these} like the training images, but that is too few to judge a station by: check "
                     f"{FEW_IMAGES} or more, taken over the day's light")  # fmt: skip
    else:
        lines.append("  -> this station's images look like the training images")
    return lines


SHOWN_UNREADABLE = 3  # unreadable files named in the report; the rest are counted


def unreadable_lines(unreadable: Sequence[str]) -> list[str]:
    """The report's note of the files it could not read, the first named with why: "3 unreadable files were
    skipped" had named none, so the engineer could not find them."""
    n = len(unreadable)
    if not n:
        return []
    lines = [f"  {plural(n, 'unreadable file')} {'was' if n == 1 else 'were'} skipped:"]
    lines += [f"    {why}" for why in unreadable[:SHOWN_UNREADABLE]]
    if n > SHOWN_UNREADABLE:
        lines.append(f"    ... and {n - SHOWN_UNREADABLE} more")
    return lines


# What to change at the station for each reason (as counted: reason_kind). The advice had been "adjust light and
# framing" whatever the reason, even where it was a part too small or two parts in the frame.
REMEDIES = {
    NO_PART: "show one whole part in each frame",
    SEVERAL_PARTS: "show one part per frame",
    SMALL_PART: "move the camera closer or zoom in",
    "flange cut by the frame's border": "frame the part with its whole flange in the picture",
    "part size larger than any training image": "move the camera back",
    "part size smaller than any training image": "move the camera closer",
    "part off-centre farther than any training image": "centre the part in the frame",
    "background brighter than any training image": "use a darker background (the training images' is mid-grey)",
    "background darker than any training image": "use a lighter background (the training images' is mid-grey)",
    "overall brightness brighter than any training image": "lower the light or the exposure",
    "overall brightness darker than any training image": "raise the light or the exposure",
    "share of saturated highlights higher than any training image": "diffuse the light to take the glints away",
    "sharpness softer than any training image": "check the focus",
}
SHOWN_REMEDIES = 3  # the changes named for the most common reasons; the rest are in the counts above


def what_to_do(per_item: Sequence[list[str]], unreadable: Sequence[str]) -> str:
    """The advice of a folder that does not pass, for what failed it: the changes for its most common reasons (a
    folder failed by its unreadable files alone had been told to "adjust light and framing", as had one whose parts
    were too small), and fine-tuning on the station's own images for the rest.

    >>> what_to_do([["part too small in the image (40 px across its square, enlarged 4x to the 160 px input)"]], [])
    'move the camera closer or zoom in; or collect labelled images from this station and fine-tune the model on \
them (train-model --init)'
    """
    todo = []
    if not looks_alike(per_item)[0]:
        counts = Counter(reason_kind(r) for rs in per_item for r in rs)
        changes = [REMEDIES[kind] for kind, _ in counts.most_common() if kind in REMEDIES]
        todo += list(dict.fromkeys(changes))[:SHOWN_REMEDIES]
        todo.append(f"{'or ' if todo else ''}collect labelled images from this station and fine-tune the model on "
                    "them (train-model --init)")  # fmt: skip
    if unreadable:
        todo.append("fix or remove the unreadable files named above, then check again")
    return "; ".join(todo)


def item_stats(gray: Any, spec: Any) -> dict[str, float]:
    """The statistics of one decoded 8-bit gray image, as the station check measures them."""
    from edge_runtime.framing import frame_part

    return frame_part(gray, spec.size, spec.part_scale, with_stats=True).stats


def run_reasons(gray: Any, model: Any, prof: StationProfile) -> list[str]:
    """The reasons ``edge-infer`` puts on the item's record (:func:`edge_runtime.item_input.item_input`), for
    ``--check-station`` to count the same: on the statistics alone a part too small in the image, which a run
    names, went unsaid (a camera too far away was told only of its image size)."""
    from edge_runtime.item_input import item_input

    spec = model.info.preprocess
    return item_input(gray, spec, profile=prof, sharpness_limit=None, cut_part=False)[1]


def profile_images(paths: Sequence[Any], spec: Any) -> StationProfile:
    """The station profile of a set of image files (the training images, at export); unreadable ones skipped."""
    from edge_runtime.errors import ImageReadError
    from edge_runtime.preprocess import read_image

    def stats() -> Iterable[dict[str, float]]:
        for p in paths:
            try:
                yield item_stats(read_image(p), spec)
            except ImageReadError:
                continue

    return profile(stats())


class CheckStopped(KeyboardInterrupt):
    """``--check-station`` stopped (Ctrl-C, SIGTERM) after some images: ``lines`` report those, and say so."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("the station check stopped early")
        self.lines = lines


def check_folder(model: Any, paths: Sequence[Any]) -> tuple[list[str], bool]:
    """``edge-infer --check-station DIR``: the report for a folder of unlabelled images from a new camera, and
    whether the folder passes (:func:`looks_alike`; edge-infer exits 6 when not, so a script can gate on it).

    ``model`` is a loaded :class:`edge_runtime.model.EdgeModel`; unreadable files are counted, not fatal. A stop
    after some images raises :class:`CheckStopped` with the report of those (a KeyboardInterrupt: exit 130).
    """
    from edge_runtime.errors import DataError, DefectEdgeError, ModelError
    from edge_runtime.preprocess import read_image

    prof = model.station_profile
    if prof is None:  # the model's lack, not the folder's (it was exit 3, bad data)
        raise ModelError(
            f"{model.path.name} carries no station profile (exported before the station check, or without the "
            "training images); re-export it with export-onnx where the training images are"
        )
    per_item: list[list[str]] = []
    unreadable: list[str] = []
    unlisted: list[str] = []
    try:
        for p in paths:
            if os.path.isdir(p):  # a folder the listing could not open: its images were never seen
                unlisted.append(str(p))
                continue
            try:
                per_item.append(run_reasons(read_image(p), model, prof))
            except (DefectEdgeError, OSError, ValueError) as e:
                unreadable.append(str(e) if str(p) in str(e) else f"{p}: {e}")
    except KeyboardInterrupt:  # Ctrl-C at image 4000 of 5000 had printed no report at all: the one seen so far
        if not per_item:
            raise
        raise CheckStopped(report(per_item, prof, unreadable=unreadable, stopped_of=len(paths))) from None
    if not per_item:  # why the first could not be read: a huge image's "1 unreadable" had said nothing more
        n = len(unreadable)
        why = f" ({unreadable[0] if n == 1 else f'{n} unreadable files, the first: {unreadable[0]}'})" if n else ""
        raise DataError(f"no readable images to check{why}; pass a folder of camera images")
    lines = report(per_item, prof, unreadable=unreadable)
    if unlisted:
        # it counted as one unreadable file, and a folder of 150 images passed with its sub-folder unchecked
        shown = ", ".join(unlisted[:3]) + (" ..." if len(unlisted) > 3 else "")
        lines.append(f"  do not trust this check: {plural(len(unlisted), 'folder')} could not be listed and "
                     f"{'its' if len(unlisted) == 1 else 'their'} images were not checked ({shown}); fix the "
                     "permissions and check again")  # fmt: skip
    # An unreadable file counts against the folder: 1 good image among 52 unreadable files passed.
    return lines, looks_alike(per_item, len(unreadable))[0] and not unlisted
