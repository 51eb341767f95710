"""Which images calibrate and evaluate an export: found from the checkpoint's data record or given folders.

Labels come from class folders; the leakage-free subset drops eval images whose bytes equal a recorded
training image (hash), so a copied-over train image cannot inflate the accuracy.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_runtime import datasets
from edge_runtime.datasets import list_images
from edge_runtime.decoding import read_image_checked
from edge_runtime.errors import DataError, ImageReadError, OutputError, printable
from edge_runtime.summary import plural
from export.config import MIN_CALIB_IMAGES
from train.checkpoint import recorded_root, recorded_train_files

if TYPE_CHECKING:
    from train.checkpoint import Checkpoint

Log = Callable[[str], None]
KAGGLE_DIRS = ("ok_front", "def_front")  # (negative, positive) folder names of the casting dataset


@dataclass
class LabelledImages:
    """Decoded 8-bit gray images with labels (1 = positive class) and a leakage flag per image."""

    root: Path
    files: list[str]  # relative to root
    images: list[np.ndarray]
    labels: np.ndarray
    leaked: np.ndarray | None  # True: byte-identical to a training image; None: unknown

    def __len__(self) -> int:
        return len(self.files)


def _decode(paths: list[Path]) -> tuple[list[Path], list[np.ndarray], list[str]]:
    """Read every image with the runtime's reader: the readable ones, their pixels, and why the others failed."""
    kept, images, skipped = [], [], []
    for p in paths:
        try:
            images.append(read_image_checked(p).image)  # quiet, as before ImageWarning: no line per file
            kept.append(p)
        except ImageReadError as exc:
            skipped.append(str(exc))
    return kept, images, skipped


def _tell_skipped(skipped: list[str], tried: int, what: str, log: Log, *, by_class: str = "") -> None:
    """One warning for all the unreadable images (a folder 40% damaged gave a line per file, 120 of them),
    naming the first three (escaped: a newline in a name broke the line).

    >>> _tell_skipped(["a.png: cannot decode", "b.png: empty file"], 10, "calibration", print)
    warning: skipped 2 unreadable calibration images of 10 read (20%): a.png: cannot decode; b.png: empty file
    """
    if not skipped:
        return
    named = "; ".join(printable(why) for why in skipped[:3]) + (
        f"; +{len(skipped) - 3} more" if len(skipped) > 3 else ""
    )
    log(f"warning: skipped {len(skipped)} unreadable {what} image{'s' if len(skipped) != 1 else ''} of {tried} "
        f"read ({share(len(skipped), tried)}{by_class}): {named}")  # fmt: skip


def share(part: int, whole: int) -> str:
    """``part`` of ``whole`` in per cent, never rounded to 0% or 100% when it is neither (1 of 301 said 0%).

    >>> share(1, 301), share(2000, 2010), share(40, 100), share(0, 5)
    ('<1%', '>99%', '40%', '0%')
    """
    pct = 100.0 * part / whole if whole else 0.0
    return "<1%" if 0 < pct < 1 else ">99%" if 99 < pct < 100 else f"{pct:.0f}%"


def calibration_images(
    ckpt: Checkpoint, folder: Path | None, *, count: int, seed: int, log: Log
) -> tuple[list[Path], list[np.ndarray]]:
    """Up to ``count`` readable images, a seeded sample of ``folder`` or else of the checkpoint's training images,
    decoded. An unreadable pick is replaced by another image of the pool (in a seeded order): the sample was
    picked before it was read, so 12 readable images among 42 gave "only 1 readable calibration image".

    >>> paths, decoded = calibration_images(ckpt, None, count=300, seed=0, log=print)  # doctest: +SKIP
    """
    pool = calibration_pool(ckpt, folder)
    order = np.arange(len(pool))
    if len(pool) > count:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(pool), size=count, replace=False))
        rest = np.setdiff1d(order, chosen)
        order = np.concatenate([chosen, rest[rng.permutation(len(rest))]])
    kept, decoded, skipped = _decode([pool[i] for i in order[:count]])
    tried = min(count, len(order))
    for i in order[count:]:
        if len(decoded) >= count:
            break
        more, images, lost = _decode([pool[i]])
        kept, decoded, skipped, tried = kept + more, decoded + images, skipped + lost, tried + 1
    _tell_skipped(skipped, tried, "calibration", log)
    return kept, decoded


def check_data_folder(folder: Path, option: str) -> None:
    """``--calib-data`` / ``--eval-data`` must be a folder: a file given there was called "folder not found"."""
    what = {"--calib-data": "calibration", "--eval-data": "eval"}[option]
    wants = "DIR with images" if option == "--calib-data" else "DIR with DIR/<class>/ images"
    try:
        is_dir = folder.is_dir()  # raises for a name over the file system's limit (unexpected OSError, exit 1)
    except OSError as exc:
        raise DataError(
            f"{folder}: cannot read the {what} folder ({exc.strerror or exc}); pass {option} {wants}"
        ) from exc
    if is_dir:
        if option == "--calib-data":  # found after the FP32 export and the evaluation
            files = list_images(folder)
            readable = _readable_count(files, MIN_CALIB_IMAGES)  # 10 files with 2 unreadable passed this check
            if readable < MIN_CALIB_IMAGES:
                # "only 1 readable images": the noun follows the count
                found = "no readable images" if files else "no images"
                found = f"only {plural(readable, 'readable image')}" if readable else found
                unreadable = f" ({len(files) - readable} of {len(files)} unreadable)" if len(files) > readable else ""
                raise DataError(
                    f"{folder}: {found} in the calibration folder{unreadable} (need at least "
                    f"{MIN_CALIB_IMAGES}, better 100+); pass --calib-data {wants}"
                )
        return
    if folder.exists():
        raise DataError(f"{folder}: {option} is a file, not a folder; pass {option} {wants}")
    raise DataError(f"{folder}: {what} folder not found; pass {option} {wants}")


def _readable_count(files: list[Path], enough: int) -> int:
    """How many of ``files`` decode, counted up to ``enough`` (a large folder costs ``enough`` decodes)."""
    readable = 0
    for path in files:
        try:
            read_image_checked(path)
        except ImageReadError:
            continue
        readable += 1
        if readable >= enough:
            break
    return readable


def calibration_pool(ckpt: Checkpoint, folder: Path | None) -> list[Path]:
    """The images calibration draws from: ``folder``'s, else the checkpoint's training images (a DataError when
    they are not here)."""
    if folder is not None:
        check_data_folder(folder, "--calib-data")
        return list_images(folder)
    pool = sorted(set(recorded_train_files(ckpt, with_val=False)))
    if not pool:
        root = ckpt.data.root or "?"
        raise DataError(
            f"the training images recorded in the checkpoint are not reachable (under {root}); set "
            "DEFECT_EDGE_DATA to the dataset folder or pass --calib-data DIR with a few hundred camera images"
        )
    return pool


def class_folders(folder: Path, ckpt: Checkpoint) -> tuple[Path, Path]:
    """(negative, positive) class folders in ``folder`` or ``folder/test``, by the checkpoint's names."""
    candidates = [tuple(ckpt.data.class_dirs)] if len(ckpt.data.class_dirs) == 2 else []
    candidates += [KAGGLE_DIRS, tuple(ckpt.class_names)]
    try:
        found = datasets.find_class_folders(folder, candidates=candidates)
    except DataError as exc:
        # one class only (a folder of defects): evaluated, with the warning that the gate cannot see the other
        base = folder / "test" if (folder / "test").is_dir() else folder
        for neg, pos in candidates:
            if (base / neg).is_dir() or (base / pos).is_dir():
                return base / neg, base / pos
        names = " or ".join("/".join(c) for c in dict.fromkeys(candidates))
        held = [d.name for d in sorted(base.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        if "train" in held:  # a dataset without test/: it was told to rename its train/ folder
            raise DataError(
                f"{folder}: holds train/ but no test/ (--eval-data takes DIR/<class>/ or DIR/test/<class>/); pass "
                "--eval-data DIR with labelled images the model was not trained on"
            ) from exc
        if held:  # good/ and bad/: it said "no class subfolders" beside two of them
            raise DataError(
                f"{folder}: its folders ({', '.join(held[:4])}) are not the model's classes ({names}); rename them, "
                "or pass --eval-data DIR/<class>/ with those names"
            ) from exc
        raise DataError(
            f"{folder}: no class subfolders ({names}) in it or in its test/; pass --eval-data DIR/<class>/"
        ) from exc
    return found.dirs


def check_eval_folder(folder: Path, ckpt: Checkpoint) -> None:
    """``--eval-data`` must hold class folders with a readable image: empty ones were found only after the FP32
    export, the station profile and the map (half a minute for the default model)."""
    neg_dir, pos_dir = class_folders(folder, ckpt)
    files = [p for d in (neg_dir, pos_dir) if d.is_dir() for p in list_images(d)]
    if not _readable_count(files, 1):
        raise DataError(f"{folder}: no readable images in {neg_dir.name}/ and {pos_dir.name}/")


def default_eval_folder(ckpt: Checkpoint) -> Path | None:
    """The test split beside the training images recorded in the checkpoint, when it exists here."""
    root = recorded_root(ckpt)
    return root / "test" if root is not None and (root / "test").is_dir() else None


def load_eval_images(folder: Path, ckpt: Checkpoint, log: Log) -> LabelledImages:
    """Decode the labelled eval images and flag those byte-identical to a recorded training image."""
    check_data_folder(folder, "--eval-data")
    neg_dir, pos_dir = class_folders(folder, ckpt)
    paths = [(p, label) for d, label in ((neg_dir, 0), (pos_dir, 1)) if d.is_dir() for p in list_images(d)]
    kept, images, skipped = _decode([p for p, _ in paths])
    label_of = dict(paths)
    listed = np.bincount([lb for _, lb in paths], minlength=2)
    read = np.bincount([label_of[p] for p in kept], minlength=2)
    classes = ((neg_dir, 0), (pos_dir, 1))
    by_class = ", ".join(
        f"{d.name}/ {listed[lb] - read[lb]} of {listed[lb]}" for d, lb in classes if listed[lb] > read[lb]
    )
    _tell_skipped(skipped, len(paths), "eval", log, by_class=f"; {by_class}")
    for d, lb in classes:
        if 0 < read[lb] * 2 < listed[lb]:  # 2 of 100 defective images read: the gate passed, the defects unchecked
            log(f"warning: {printable(str(d))}: only {read[lb]} of its {listed[lb]} eval images could be read; the "
                "accuracy check sees too few of them to be trusted: mend or replace the others")  # fmt: skip
    if not kept:
        raise DataError(f"{folder}: no readable images in {neg_dir.name}/ and {pos_dir.name}/")
    root = neg_dir.parent
    files = [p.relative_to(root).as_posix() for p in kept]
    return LabelledImages(
        root=root,
        files=files,
        images=images,
        labels=np.array([label_of[p] for p in kept], dtype=np.int64),
        leaked=leakage_flags(kept, files, root, ckpt, log),
    )


def leakage_flags(paths: list[Path], files: list[str], root: Path, ckpt: Checkpoint, log: Log) -> np.ndarray | None:
    """True for eval images byte-identical to a recorded training image; None when that cannot be known.

    Hashing against the training files works for any eval folder; without them, the checkpoint's own list of
    test duplicates serves when the eval folder is the recorded test split.
    """
    train = recorded_train_files(ckpt)
    if train:
        train_hashes = {_sha256(p) for p in train}
        return np.array([_sha256(p) in train_hashes for p in paths])
    data = ckpt.data
    if data.test_duplicates is not None and root.resolve() == (Path(data.root) / "test").resolve():
        dup = set(data.test_duplicates)
        return np.array([f in dup for f in files])
    log(f"warning: the recorded training images are not reachable (under {printable(str(data.root or '?'))}): "
        "leakage-free accuracy is not measured; set DEFECT_EDGE_DATA to their dataset folder")  # fmt: skip
    return None


def check_out_not_among_inputs(out: Path, ckpt: Checkpoint, *, calib_data: Path | None, eval_data: Path | None) -> None:
    """``--out`` inside a folder of images this export reads (``--out data/test/ok/x.jpeg`` replaced an eval
    image with a model) is refused before any work (exit 7)."""
    root = recorded_root(ckpt)
    folders = {
        "--eval-data": eval_data,
        "--calib-data": calib_data,
        "the checkpoint's training images": None if root is None else root / "train",
        "the checkpoint's test images": None if root is None else root / "test",
    }
    real = os.path.realpath(out)
    for what, folder in folders.items():
        if folder is None or not folder.is_dir():
            continue
        top = os.path.realpath(folder)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            raise OutputError(
                f"{out}: --out is inside {what} ({folder}), among the images this export reads; pass --out "
                "FILE.onnx outside it"
            )


def warn_if_calibrated_on_evals(calib: Path, paths: list[Path], evals: LabelledImages, log: Log) -> None:
    """INT8 calibrated on the very images its accuracy gate scores (``--calib-data`` the test split, or a copy of
    some of its images in another folder, found by their bytes): the gate "passed" on ranges fitted to them."""
    a, b = os.path.realpath(calib), os.path.realpath(evals.root)
    if a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(a.rstrip(os.sep) + os.sep):
        log(f"warning: --calib-data {printable(str(calib))} holds the accuracy check's images "
            f"({printable(str(evals.root))}); the INT8 gate is then optimistic: calibrate on other images of the "
            "camera")  # fmt: skip
        return
    eval_hashes = {_sha256(evals.root / f) for f in evals.files}
    shared = sum(_sha256(p) in eval_hashes for p in paths)
    if shared:
        log(f"warning: --calib-data {printable(str(calib))}: {shared} of its {len(paths)} calibration images are "
            f"copies of the accuracy check's images (in {printable(str(evals.root))}); the INT8 gate is then "
            "optimistic: calibrate on other images of the camera")  # fmt: skip


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
