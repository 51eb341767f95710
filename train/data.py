"""Finding, decoding, caching, de-duplicating and splitting the labelled images.

Each image is read once, decoded once and resized once to the network input size; epochs then cost only
compute. Exact duplicates (same bytes) are found by content hash, kept on one side of the train/validation
split, and reported between the splits.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.errors import DataError, ImageReadError
from edge_runtime.model_info import KNOWN_CLASS_FOLDERS
from edge_runtime.preprocess import IMAGE_SUFFIXES, PreprocessSpec, decode_image, resize_to_input


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


def class_dirs(split_dir: Path) -> list[Path]:
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: folder not found; expected DIR/train/<class>/ with one folder per class")
    dirs = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise DataError(
            f"{split_dir}: no class folders inside; expected one folder per class (e.g. def_front, ok_front)"
        )
    return dirs


def resolve_classes(train_dir: Path, positive_class: str | None) -> ClassMap:
    """Decide which of the two class folders is the defective one."""
    names = [d.name for d in class_dirs(train_dir)]
    if len(names) == 1:
        raise DataError(f"{train_dir}: only one class folder ({names[0]}); training needs two (defective and OK)")
    if len(names) > 2:
        raise DataError(
            f"{train_dir}: {len(names)} class folders ({', '.join(names)}); defect-edge trains on exactly two"
        )
    if positive_class is None:
        known = [KNOWN_CLASS_FOLDERS.get(n) for n in names]
        if sorted(k or "" for k in known) != ["defective", "ok"]:
            raise DataError(
                f"{train_dir}: cannot tell which of {names[0]!r} and {names[1]!r} is defective; "
                "pass --positive-class NAME"
            )
        pos = names[known.index("defective")]
    elif positive_class in names:
        pos = positive_class
    else:
        raise DataError(f"--positive-class {positive_class!r} is not one of the class folders {names}")
    neg = next(n for n in names if n != pos)
    return ClassMap(
        negative_dir=neg,
        positive_dir=pos,
        negative_name=KNOWN_CLASS_FOLDERS.get(neg, neg),
        positive_name=KNOWN_CLASS_FOLDERS.get(pos, pos),
    )


def _list_files(split_dir: Path, classes: ClassMap, limit: int | None) -> tuple[list[str], list[int], list[str]]:
    files, labels, ignored = [], [], []
    for folder, label in ((classes.negative_dir, 0), (classes.positive_dir, 1)):
        d = split_dir / folder
        if not d.is_dir():
            raise DataError(
                f"{d}: class folder missing; every split needs both {classes.negative_dir} and {classes.positive_dir}"
            )
        entries = sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        ignored += [str(p.relative_to(split_dir)) for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES]
        if not images:
            raise DataError(f"{d}: no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        if limit is not None:
            images = images[:limit]
        files += [str(p.relative_to(split_dir)) for p in images]
        labels += [label] * len(images)
    return files, labels, ignored


def _load_one(path: Path, spec: PreprocessSpec) -> tuple[np.ndarray | None, str, str | None]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, "", f"cannot read file ({exc.strerror or exc})"
    digest = hashlib.sha256(data).hexdigest()
    try:
        return resize_to_input(decode_image(data, source=path.name), spec), digest, None
    except ImageReadError as exc:
        return None, digest, str(exc).split(": ", 1)[-1]


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
    files, labels, ignored = _list_files(split_dir, classes, limit_per_class)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda f: _load_one(split_dir / f, spec), files))
    keep = [i for i, r in enumerate(results) if r[0] is not None]
    bad = [(files[i], r[2] or "unreadable") for i, r in enumerate(results) if r[0] is None]
    if len(bad) > max_bad_fraction * len(files):
        raise DataError(
            f"{split_dir}: {len(bad)} of {len(files)} images are unreadable (first: {bad[0][0]}: {bad[0][1]}); "
            f"more than {max_bad_fraction:.0%} bad, fix or remove them"
        )
    split = Split(
        name=name,
        root=split_dir,
        files=[files[i] for i in keep],
        images=np.stack([results[i][0] for i in keep]),
        labels=np.asarray([labels[i] for i in keep], dtype=np.int64),
        hashes=[results[i][1] for i in keep],
        bad=bad,
        ignored=ignored,
    )
    if len(set(split.labels.tolist())) < 2:
        raise DataError(f"{split_dir}: after skipping unreadable images only one class is left")
    return split


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
        target = round(val_fraction * sum(len(g) for g in members))
        taken = 0
        for k in order:
            group = members[k]
            if taken < target:
                val_idx += group
                taken += len(group)
            else:
                train_idx += group
    if not val_idx or len(set(labels[val_idx].tolist())) < 2:
        raise DataError("validation split has fewer than two classes; add images or raise --val-fraction")
    return np.asarray(sorted(train_idx)), np.asarray(sorted(val_idx))


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
        for f, digest, label in sorted(zip(s.files, s.hashes, s.labels.tolist(), strict=True)):
            h.update(f"{s.name}\0{f}\0{digest}\0{label}\n".encode())
    return h.hexdigest()[:16]


def label_counts(split: Split, class_names: tuple[str, str]) -> dict[str, int]:
    c = Counter(split.labels.tolist())
    return {class_names[0]: c.get(0, 0), class_names[1]: c.get(1, 0)}
