"""Finding, decoding, caching, de-duplicating and splitting the labelled images.

Each image is read once, decoded once and resized once to the network input size; epochs then cost only
compute. Exact duplicates (same bytes) are found by content hash, kept on one side of the train/validation
split, and reported between the splits.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from edge_runtime import datasets
from edge_runtime.decoding import decode, read_bytes
from edge_runtime.errors import DataError, ImageReadError, printable
from edge_runtime.preprocess import PreprocessSpec, resize_to_input

# A re-encoded copy: the whole frame at 32 x 32 px differs by under NEAR_RMS gray levels (RMS) and NEAR_MAX at most.
# Measured: JPEG quality 30 to 95, PNG / BMP, half or double the size stay under 0.9 RMS and 6 at most; the closest
# defective / OK pair of the 6,633 casting training images is 2.8 RMS, 13 at most; a pit a few pixels wide moves
# its 32 px cell by more than NEAR_MAX, so a defect pasted onto its own OK picture is not called a copy.
THUMB = 32
NEAR_RMS = 1.5
NEAR_MAX = 8


@dataclass
class Split:
    """Images of one split, decoded and resized: (N, size, size) uint8, labels 1 = defective."""

    name: str
    root: Path
    files: list[str]  # relative to root
    images: np.ndarray
    labels: np.ndarray
    hashes: list[str]
    bad: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    ignored: list[str] = field(default_factory=list)  # non-image files
    links: list[str] = field(default_factory=list)  # links to folders, not followed
    # Trained on, but worth a look: damage the decoder concealed, or a picture far smaller than the input.
    warned: list[tuple[str, str]] = field(default_factory=list)  # (relative path, warning)
    thumbs: np.ndarray | None = None  # (N, THUMB, THUMB) uint8: the whole frame, small, to find re-encoded copies

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, name: str, idx: np.ndarray) -> Split:
        return Split(
            name=name,
            root=self.root,
            files=[self.files[i] for i in idx],
            images=self.images[idx],
            labels=self.labels[idx],
            hashes=[self.hashes[i] for i in idx],
        )


@dataclass(frozen=True)
class ClassMap:
    """Folder name of the negative and positive class, and the names the model reports."""

    negative_dir: str
    positive_dir: str
    negative_name: str
    positive_name: str

    @property
    def class_names(self) -> tuple[str, str]:
        return (self.negative_name, self.positive_name)


def resolve_classes(train_dir: Path, positive_class: str | None) -> ClassMap:
    """Decide which of the two class folders is the defective one (the rules of :mod:`edge_runtime.datasets`)."""
    found = datasets.resolve_classes(train_dir, positive_class)
    neg, pos = found.class_names
    return ClassMap(negative_dir=found.negative, positive_dir=found.positive, negative_name=neg, positive_name=pos)


def _list_files(
    split_dir: Path, classes: ClassMap, limit: int | None
) -> tuple[list[str], list[int], datasets.Labelled]:
    listing = datasets.list_labelled(
        datasets.ClassFolders(split_dir, classes.negative_dir, classes.positive_dir), limit_per_class=limit
    )
    files = [f.relative_to(split_dir) for f in listing.files]
    return files, listing.labels, listing


def listed_names(root: Path, classes: ClassMap, limit: int | None) -> dict[str, list[str]]:
    """The image names (``class/file``, so the label too) that :func:`load_split` would read from ``root/train`` and
    ``root/test``, from the folders alone: what a resume compares before any image is decoded."""
    return {
        split: sorted(_list_files(root / split, classes, limit)[0])
        for split in ("train", "test")
        if split == "train" or (root / split).is_dir()
    }


def split_names(*splits: Split | None) -> list[str]:
    """The names a split was listed with: the images read and those that could not be."""
    return sorted(f for s in splits if s is not None for f in [*s.files, *(name for name, _ in s.bad)])


def content_digest(*splits: Split | None) -> str:
    """A hash of the bytes of every image read, by split folder and name: :func:`listed_content` of the same
    folders gives the same value while no image was changed (a finished run's --resume is then a no-op)."""
    read = [(s.root.name, f, d) for s in splits if s is not None for f, d in zip(s.files, s.hashes, strict=True)]
    return _pairs_digest((f"{split}/{f}", digest) for split, f, digest in read)


def _pairs_digest(pairs: Iterable[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for name, digest in sorted(pairs):
        h.update(f"{name}\0{digest}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def listed_content(root: Path, names: dict[str, list[str]]) -> str | None:
    """:func:`content_digest` of the images ``names`` lists (:func:`listed_names`), from their bytes, without
    decoding; None when one cannot be read."""
    pairs = []
    for split, files in names.items():
        for f in files:
            try:
                pairs.append((f"{split}/{f}", hashlib.sha256(read_bytes(root / split / f)).hexdigest()))
            except (ImageReadError, OSError):
                return None
    return _pairs_digest(pairs)


def check_train_folder(root: Path) -> None:
    """``--data`` holding its class folders directly was told "ROOT/train: folder not found; expected DIR/<class>/",
    the layout it already had: say where the folders go."""
    if (root / "train").is_dir():
        return
    held = [d.name for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    lower = {d.lower(): d for d in held}
    if root.name == "train" or "train" in lower:  # --data ds/train, or ds/Train
        where = f"pass --data {root.parent}" if root.name == "train" else f"rename {lower['train']} to train"
        raise DataError(f"{root}: no train/ folder here; {where} (train-model reads DIR/train/<class>/)")
    held = [d for d in held if d.lower() not in ("test", "val")]
    if held and any(datasets.list_images(root / d) for d in held):
        raise DataError(
            f"{root}: holds class folders directly ({', '.join(held[:4])}); train-model needs them in "
            f"{root / 'train'}/<class>/ (and optionally {root / 'test'}/<class>/): move them there"
        )


class _Loaded(NamedTuple):
    image: np.ndarray | None  # resized to the input; None: skipped
    digest: str  # sha256 of the file's bytes ("" when it could not be read)
    thumb: np.ndarray | None  # the whole frame at THUMB x THUMB
    skipped: str | None  # why it was skipped
    warning: str | None  # a warning about an image trained on


def tell_unread_folders(root: Path, classes: ClassMap, log: Callable[[str], None]) -> None:
    """Name the folders beside train/ that hold its class folders but are never read: ``valid/`` (a Roboflow export),
    ``val/`` or ``Test/`` had their images passed over without a word, and the run's own validation figures (a share
    of train/) looked like theirs."""
    wanted = {classes.negative_dir, classes.positive_dir}
    for d in sorted(root.iterdir()):
        if d.name in ("train", "test") or d.name.startswith(".") or not d.is_dir():
            continue
        held = sorted(n for n in wanted if (d / n).is_dir())
        if not held:
            continue
        test = root / "test"
        todo = ("move its images into those folders to use them" if test.is_dir()
                else f"rename {d.name} to test to have its images tested")  # fmt: skip
        log(f"warning: {printable(str(d))}: holds class folders ({', '.join(held)}) but is not read: train-model "
            f"validates on a share of train/ and tests {printable(str(test))}/<class>/; {todo}")  # fmt: skip


def _load_one(path: Path, spec: PreprocessSpec) -> _Loaded:
    """Read as the runtime reads (:func:`edge_runtime.decoding.read_bytes`): a FIFO named like an image hung training
    for good, deaf to Ctrl-C and SIGTERM, and a link loop or a device is skipped as unreadable."""
    try:
        data = read_bytes(path)
    except ImageReadError as exc:
        return _Loaded(None, "", None, str(exc).split(": ", 1)[-1], None)
    digest = hashlib.sha256(data).hexdigest()
    try:
        decoded = decode(data, source=path.name)
    except ImageReadError as exc:
        return _Loaded(None, digest, None, str(exc).split(": ", 1)[-1], None)
    h, w = decoded.image.shape[:2]
    small = f"only {w}x{h} px, stretched to the {spec.size} px input" if min(h, w) < spec.size // 4 else None
    thumb = cv2.resize(decoded.image, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return _Loaded(resize_to_input(decoded.image, spec), digest, thumb, None, decoded.warning or small)


def load_split(
    name: str,
    split_dir: Path,
    classes: ClassMap,
    spec: PreprocessSpec,
    *,
    max_bad_fraction: float,
    limit_per_class: int | None = None,
    workers: int = 2,
) -> Split:
    """Decode and resize every image of one split once (OpenCV releases the GIL, so threads help)."""
    files, labels, listing = _list_files(split_dir, classes, limit_per_class)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda f: _load_one(split_dir / f, spec), files))
    keep = [i for i, r in enumerate(results) if r.image is not None]
    bad = [(files[i], r.skipped or "unreadable") for i, r in enumerate(results) if r.image is None]
    warned = [(files[i], r.warning) for i, r in enumerate(results) if r.image is not None and r.warning]
    if len(bad) > max_bad_fraction * len(files):
        raise DataError(
            f"{split_dir}: {len(bad)} of {len(files)} images are unreadable (first: {bad[0][0]}: {bad[0][1]}); "
            f"more than {max_bad_fraction:.0%} bad, fix or remove them"
        )
    split = Split(
        name=name,
        root=split_dir,
        files=[files[i] for i in keep],
        images=np.stack([results[i].image for i in keep]),
        labels=np.asarray([labels[i] for i in keep], dtype=np.int64),
        hashes=[results[i].digest for i in keep],
        bad=bad,
        ignored=[p.relative_to(split_dir).as_posix() for p in listing.ignored],
        links=[p.relative_to(split_dir).as_posix() for p in listing.links],
        warned=warned,
        thumbs=np.stack([results[i].thumb for i in keep]),
    )
    if len(set(split.labels.tolist())) < 2:
        raise DataError(f"{split_dir}: after skipping unreadable images only one class is left")
    split.warned += [(split.files[p], f"nearly the same picture as {split.files[n]} in the other class folder (a "
                      "re-encoded copy?); one of the two labels is wrong: remove or relabel one")
                     for n, p in near_copies_across_classes(split)]  # fmt: skip
    return split


# Images named one line each; the rest counted in one line (20,000 unreadable files under --max-bad-fraction 1 printed
# 20,000 lines, the run's own lines lost among them); report.json lists them all.
TOLD_EACH = 20


def tell_listing(split: Split, log: Callable[[str], None]) -> None:
    """One line for each image skipped or used with a warning, and for what the listing passed over. Names are shown
    escaped: a newline or a terminal escape in a file name had split the line or been obeyed by the terminal."""
    for f, reason in split.bad[:TOLD_EACH]:
        log(f"skipped unreadable image {printable(str(split.root / f))}: {printable(reason)}")
    if len(split.bad) > TOLD_EACH:
        log(f"skipped {len(split.bad) - TOLD_EACH} more unreadable images in {printable(str(split.root))} (all "
            "of them in report.json: data.unreadable)")  # fmt: skip
    for f, why in split.warned[:TOLD_EACH]:  # used as they are: listed in report.json ("used_with_warnings")
        log(f"warning: {'trained' if split.name == 'train' else 'tested'} on {printable(str(split.root / f))}: "
            f"{printable(why)}")  # fmt: skip
    if len(split.warned) > TOLD_EACH:
        log(f"warning: {len(split.warned) - TOLD_EACH} more images in {printable(str(split.root))} used with a "
            "warning (all of them in report.json: data.used_with_warnings)")  # fmt: skip
    if split.ignored:
        log(f"ignored {len(split.ignored)} non-image files in {printable(str(split.root))} "
            f"(first: {printable(str(split.ignored[0]))})")  # fmt: skip
    if split.links:  # a folder of images linked in (from another disk) was passed over without a word
        shown = printable(", ".join(split.links[:3]) + (", ..." if len(split.links) > 3 else ""))
        used = "trained on" if split.name == "train" else "tested"
        log(f"warning: {printable(str(split.root))}: links to folders are not followed ({shown}); the images in them "
            f"are not {used}: copy them in, or link each image file instead")  # fmt: skip


def stratified_group_split(
    labels: np.ndarray, hashes: list[str], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified train/validation indices; identical images always land on the same side."""
    if not 0.0 < val_fraction < 0.9:
        raise DataError(f"--val-fraction {val_fraction} is out of range; use a value between 0 and 0.9 (e.g. 0.15)")
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        groups.setdefault(h, []).append(i)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for label in (0, 1):
        members = [g for g in groups.values() if labels[g[0]] == label]
        order = rng.permutation(len(members))
        # at least one: 15% of a class of two or three images rounded to none, and the run was refused although
        # one could go each way (a class of one different image is refused below)
        target = max(1, round(val_fraction * sum(len(g) for g in members)))
        taken = 0
        for k in order:
            group = members[k]
            if taken < target:
                val_idx += group
                taken += len(group)
            else:
                train_idx += group
    for label in (0, 1):
        if sum(1 for g in groups.values() if labels[g[0]] == label) < 2:
            # one image of a class cannot be on both sides: "raise --val-fraction" then trained a model that had
            # never seen a defect, exit 0
            raise DataError(f"the {'defective' if label else 'OK'} class has fewer than two different images; "
                            "training needs some for training and some for validation: add images")  # fmt: skip
    if not val_idx or len(set(labels[val_idx].tolist())) < 2:
        raise DataError("validation split has fewer than two classes; add images or raise --val-fraction")
    if len(set(labels[train_idx].tolist())) < 2:
        raise DataError("training split has fewer than two classes; add images or lower --val-fraction")
    return np.asarray(sorted(train_idx)), np.asarray(sorted(val_idx))


def check_label_conflicts(*splits: Split | None) -> None:
    """Refuse byte-identical images under both classes: validation then held the same picture labelled both ways, and
    the recall-first threshold was forced into false alarms (4 of 4 OK images), with no word of why. In test/ the
    figures counted one copy wrong whatever the model said."""
    for split in splits:
        if split is not None:
            _check_one_split_labels(split)


def _check_one_split_labels(split: Split) -> None:
    first: dict[str, tuple[str, int]] = {}
    pairs: list[tuple[str, str]] = []
    for f, h, label in zip(split.files, split.hashes, split.labels.tolist(), strict=True):
        seen = first.setdefault(h, (f, label))
        if seen[1] != label:
            pairs.append((seen[0], f))
    if pairs:
        shown = "; ".join(f"{a} = {b}" for a, b in pairs[:3])
        raise DataError(f"{split.root}: {len(pairs)} image(s) are byte-identical copies under both classes ({shown}"
                        f"{'; ...' if len(pairs) > 3 else ''}); remove or relabel them")  # fmt: skip


def near_copies_across_classes(split: Split, *, chunk: int = 256) -> list[tuple[int, int]]:
    """(OK index, defective index) of the pictures that are nearly the same frame under both classes, byte-identical
    ones left out (:func:`check_label_conflicts` refuses those). Distances by one matrix product per ``chunk`` OK
    images: the 6,633 casting training images take under a second."""
    if split.thumbs is None:
        return []
    flat = split.thumbs.reshape(len(split), -1).astype(np.float32) - 128.0  # centred: float32 keeps the sums exact
    neg, pos = np.flatnonzero(split.labels == 0), np.flatnonzero(split.labels == 1)
    b = flat[pos]
    b2 = (b * b).sum(1)
    limit = NEAR_RMS**2 * flat.shape[1]
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(neg), chunk):
        a = flat[neg[start : start + chunk]]
        d2 = (a * a).sum(1)[:, None] + b2[None, :] - 2.0 * (a @ b.T)
        for i, j in zip(*np.nonzero(d2 <= limit), strict=True):
            n, p = int(neg[start + i]), int(pos[j])
            if split.hashes[n] != split.hashes[p] and np.abs(flat[n] - flat[p]).max() <= NEAR_MAX:
                pairs.append((n, p))
    return pairs


def duplicates_between(a: Split, b: Split) -> list[tuple[str, str]]:
    """Pairs (file in b, file in a) whose bytes are identical."""
    first: dict[str, str] = {}
    for f, h in zip(a.files, a.hashes, strict=True):
        first.setdefault(h, f)
    return [(f, first[h]) for f, h in zip(b.files, b.hashes, strict=True) if h in first]


def fingerprint(splits: list[Split]) -> str:
    """A short hash of which images (by content) and labels a model was trained and evaluated on."""
    h = hashlib.sha256()
    for s in splits:
        # A name that is not UTF-8 (a Windows share's Latin-1) keeps its bytes: strict encoding stopped the run after
        # decoding every image (exit 1); UTF-8 names hash as before, so older runs still resume.
        for f, digest, label in sorted(zip(s.files, s.hashes, s.labels.tolist(), strict=True)):
            h.update(f"{s.name}\0{f}\0{digest}\0{label}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def label_counts(split: Split, class_names: tuple[str, str]) -> dict[str, int]:
    c = Counter(split.labels.tolist())
    return {class_names[0]: c.get(0, 0), class_names[1]: c.get(1, 0)}


def leakage_report(train: Split, val: Split, test: Split | None) -> dict[str, Any]:
    """Exact (byte-identical) duplicates between the splits: counts and the pairs."""
    out: dict[str, Any] = {"train_val": len(duplicates_between(train, val))}
    if test is not None:
        test_train = duplicates_between(train, test)
        test_val = duplicates_between(val, test)
        out.update(
            test_train=len(test_train),
            test_val=len(test_val),
            test_duplicates=sorted({f for f, _ in test_train + test_val}),
            pairs=[{"test": f, "train": g} for f, g in test_train] + [{"test": f, "val": g} for f, g in test_val],
        )
    return out
