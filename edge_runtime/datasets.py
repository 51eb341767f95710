"""The one reader of class-folder datasets: ``DIR/<class>/`` or ``DIR/test/<class>/`` (and ``DIR/train/``).

Training, export (calibration and the accuracy gate) and the benchmarks all read labelled images through it,
with the same rules:

- class folders are the non-hidden sub-folders; there must be exactly two;
- the positive (defective) one is ``positive`` when given, else found from the known names
  (:data:`~edge_runtime.model_info.KNOWN_CLASS_FOLDERS`: ``def_front``/``ok_front``, ``defective``/``ok``);
- images are found by suffix (:data:`~edge_runtime.preprocess.IMAGE_SUFFIXES`), recursively, sorted; hidden
  files are skipped; links to folders are not followed (they are listed, for the caller to report); a folder that
  cannot be listed (no read permission) is a :class:`DataError`;
- anything else (a stray ``notes.txt`` beside or inside the class folders) is ignored and reported, never fatal.

>>> classes = find_class_folders(Path("../shared/data/casting"))        # doctest: +SKIP
>>> labelled = list_labelled(classes)                                   # doctest: +SKIP
>>> labelled.files[0].label, classes.class_names                       # doctest: +SKIP
(0, ('ok', 'defective'))
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.errors import DataError
from edge_runtime.listing import SYSTEM_FOLDERS
from edge_runtime.model_info import KNOWN_CLASS_FOLDERS
from edge_runtime.preprocess import IMAGE_SUFFIXES


@dataclass(frozen=True)
class ClassFolders:
    """The two class folders of a split: ``root/negative`` and ``root/positive`` (folder names)."""

    root: Path
    negative: str
    positive: str

    @property
    def class_names(self) -> tuple[str, str]:
        """(negative, positive) as the models report them (``ok_front`` -> ``ok``)."""
        return (
            KNOWN_CLASS_FOLDERS.get(self.negative, self.negative),
            KNOWN_CLASS_FOLDERS.get(self.positive, self.positive),
        )

    @property
    def dirs(self) -> tuple[Path, Path]:
        return (self.root / self.negative, self.root / self.positive)


@dataclass(frozen=True)
class LabelledFile:
    path: Path
    label: int  # 1: the positive (defective) class

    def relative_to(self, root: Path) -> str:
        return self.path.relative_to(root).as_posix()


@dataclass
class Labelled:
    """Every image of both class folders, labelled, plus the files that were not images."""

    classes: ClassFolders
    files: list[LabelledFile] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    links: list[Path] = field(default_factory=list)  # links to folders met, not followed: their images are not here

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]

    @property
    def labels(self) -> list[int]:
        return [f.label for f in self.files]


def _entries(folder: Path, links: list[Path] | None = None) -> Iterator[Path]:
    """Files under ``folder``, recursively and sorted, not hidden, never through a link to a folder (each one met is
    added to ``links``). A folder that cannot be listed is a :class:`DataError`: one without read permission was
    passed over in silence, and train-model trained without its images (or said "no images" of a class folder).
    Iterative: a folder nested a thousand deep ended train-model with "unexpected RecursionError"."""
    stack = [iter(_listed(folder))]
    while stack:
        e = next(stack[-1], None)
        if e is None:
            stack.pop()
        elif e.name.startswith("."):
            continue
        elif e.name in SYSTEM_FOLDERS:  # a NAS's thumbnails (@eaDir), a Mac's __MACOSX: listed as one file not read
            yield Path(e.path)
        elif e.is_dir(follow_symlinks=False):
            stack.append(iter(_listed(Path(e.path))))
        elif not _links_to_folder(e):
            yield Path(e.path)
        elif links is not None:
            links.append(Path(e.path))


def _listed(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder``, sorted by name (none where it is gone); see :func:`_entries`."""
    try:
        return sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the folder ({exc.strerror or exc}), so its images cannot be read; "
                        "make it readable for this user, or move it out of the data folder") from exc  # fmt: skip


def _links_to_folder(entry: os.DirEntry) -> bool:
    """A link to a folder is not followed; a link loop (ELOOP) is listed as a file, and reported as unreadable where
    it is read: it stopped train-model and export-onnx with "unexpected OSError", exit 1."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (by suffix, recursively), sorted; hidden files and links to folders skipped."""
    return [p for p in _entries(folder) if p.suffix.lower() in IMAGE_SUFFIXES]


def class_dirs(split_dir: Path) -> list[Path]:
    """The non-hidden sub-folders of ``split_dir``; a missing or folder-less split is a :class:`DataError`."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: folder not found; expected DIR/<class>/ with one folder per class")
    dirs = sorted(
        p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in SYSTEM_FOLDERS
    )
    if not dirs:
        raise DataError(
            f"{split_dir}: no class folders inside; expected one folder per class (e.g. def_front, ok_front)"
        )
    return dirs


def resolve_classes(
    split_dir: Path, positive: str | None = None, *, unknown_hint: str = "pass --positive-class NAME"
) -> ClassFolders:
    """Which of the exactly two class folders in ``split_dir`` is the positive (defective) one; ``unknown_hint``:
    what to do when the names do not tell (a command without --positive-class says its own)."""
    names = [d.name for d in class_dirs(split_dir)]
    if len(names) == 1:
        raise DataError(f"{split_dir}: only one class folder ({names[0]}); two are needed (defective and OK)")
    if len(names) > 2:
        raise DataError(f"{split_dir}: {len(names)} class folders ({', '.join(names)}); defect-edge needs exactly two")
    if positive is None:
        known = [KNOWN_CLASS_FOLDERS.get(n) for n in names]
        if sorted(k or "" for k in known) != ["defective", "ok"]:
            raise DataError(
                f"{split_dir}: cannot tell which of {names[0]!r} and {names[1]!r} is defective; {unknown_hint}"
            )
        positive = names[known.index("defective")]
    elif positive not in names:
        raise DataError(f"--positive-class {positive!r} is not one of the class folders {names}")
    elif KNOWN_CLASS_FOLDERS.get(positive) == "ok":
        # the model learnt to call the OK parts defective, and the runtime printed "label": "ok", "defective": true
        defective = next(n for n in names if n != positive)
        raise DataError(f"--positive-class {positive!r} names the OK parts' folder; the defective class is "
                        f"{defective!r} (pass --positive-class {defective})")  # fmt: skip
    return ClassFolders(split_dir, next(n for n in names if n != positive), positive)


def find_class_folders(
    folder: Path,
    *,
    positive: str | None = None,
    candidates: Sequence[tuple[str, str]] = (),
    unknown_hint: str = "pass --positive-class NAME",
) -> ClassFolders:
    """The class folders in ``folder`` or, when it has a ``test/``, in ``folder/test``.

    ``candidates`` ((negative, positive) folder-name pairs, e.g. a checkpoint's) are tried first, so a folder with
    extra sub-folders still works when the wanted pair is there.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; expected DIR/<class>/ or DIR/test/<class>/ with images")
    bases = [folder / "test", folder] if (folder / "test").is_dir() else [folder]
    for base in bases:
        for neg, pos in candidates:
            if (base / neg).is_dir() and (base / pos).is_dir():
                return ClassFolders(base, neg, pos)
    return resolve_classes(bases[0], positive, unknown_hint=unknown_hint)


def list_labelled(classes: ClassFolders, *, limit_per_class: int | None = None) -> Labelled:
    """Every image of both class folders (negative first), labelled; a class without images is a DataError."""
    out = Labelled(classes)
    for folder, label in ((classes.negative, 0), (classes.positive, 1)):
        d = classes.root / folder
        if not d.is_dir():
            raise DataError(
                f"{d}: class folder missing; every split needs both {classes.negative} and {classes.positive}"
            )
        entries = list(_entries(d, out.links))
        images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        out.ignored += [p for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES]
        if not images:
            raise DataError(f"{d}: no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        out.files += [LabelledFile(p, label) for p in images[:limit_per_class]]
    return out
