"""Listing folders and globs for ``edge-infer --source``: sorted, iterative (any depth), never following a link to
a folder (no loops), a folder that cannot be listed kept as an entry of its own (an item error, never a silent
skip), hidden entries that a pattern passes over named, as the shell would skip them, and a JPEG, PNG, BMP or WebP
picture without an image suffix listed by its content.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from edge_runtime.errors import UsageError
from edge_runtime.preprocess import IMAGE_SUFFIXES

# Folders that an operating system or a NAS makes inside shared folders, never a part's pictures: passed over as
# hidden entries are, and named among the files not inspected. Synology's @eaDir holds a thumbnail or three of every
# picture, named like pictures: edge-infer on such a share judged every part three to five times (and train-model
# trained on the thumbnails); a zip made on a Mac adds __MACOSX/, taken for a third class folder.
SYSTEM_FOLDERS = frozenset(
    {"@eaDir", "__MACOSX", "#recycle", "#snapshot", "@Recycle", "@Recently-Snapshot", "$RECYCLE.BIN",
     "System Volume Information", "lost+found"}
)  # fmt: skip


# A raw Motion-JPEG file begins as a JPEG picture does, but is a video: not taken for one picture.
VIDEO_LIKE = frozenset({".mjpeg", ".mjpg", ".mjp"})


def holds_picture(path: Path) -> bool:
    """Whether a regular file named unlike an image begins as a JPEG, PNG, BMP or WebP picture does: a camera or an
    upload that writes ``part_0002`` or ``part.jpg.1`` (a defective part so named was "not inspected" and the gate
    passed). TIFF is not looked for: camera raw files (.dng, .nef, .cr2) are TIFF inside, beside their JPEGs. Never
    blocks: a FIFO or device is not opened."""
    if path.suffix.lower() in VIDEO_LIKE:
        return False
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        fd = os.open(path, flags)
        try:
            head = os.read(fd, 32)
        finally:
            os.close(fd)
    except OSError:
        return False  # it stays among the files not inspected, named
    dib = int.from_bytes(head[14:18], "little")
    return (
        head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"))
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or (head[:2] == b"BM" and dib in (12, 40, 52, 56, 64, 108, 124))  # the sizes of BMP's info headers
    )


class Unreadable:
    """Marks a folder met while listing that could not be listed (permissions, I/O): it gets an item error of its
    own, so that the images it may hold are not passed over in silence."""

    def __init__(self, error: OSError) -> None:
        self.error = error


def list_entries(folder: str | Path) -> list[os.DirEntry] | Unreadable:
    """The entries of one folder, sorted by name, or :class:`Unreadable` when it cannot be listed."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        return Unreadable(exc)


def _walk(root: Path) -> Iterator[tuple[Path, os.DirEntry | Unreadable | None]]:
    """Every entry under ``root`` (not the folders themselves), sorted, never following a link to a folder; a
    folder that cannot be listed comes as itself with an :class:`Unreadable`. Iterative: a folder nested a
    thousand deep once ended the run with "RecursionError"."""
    first = list_entries(root)
    if isinstance(first, Unreadable):
        yield root, first
        return
    stack = [iter(first)]
    while stack:
        e = next(stack[-1], None)
        if e is None:
            stack.pop()
            continue
        try:
            real_dir = e.is_dir(follow_symlinks=False)
        except OSError:
            real_dir = False
        if not real_dir or e.name in SYSTEM_FOLDERS:  # a system folder: one entry, not an image (see SYSTEM_FOLDERS)
            yield Path(e.path), e
            continue
        below = list_entries(e.path)
        if isinstance(below, Unreadable):
            yield Path(e.path), below
        else:
            stack.append(iter(below))


def _classify(
    paths: Iterable[tuple[Path, os.DirEntry | Unreadable | None]],
) -> tuple[tuple[Path, ...], list[Path], int]:
    """(image-looking entries and folders that could not be listed, other files ignored, links to folders not
    followed)."""
    images, ignored, links = [], [], 0
    for p, entry in paths:
        if isinstance(entry, Unreadable):
            images.append(p)  # an item error: "cannot list the folder"
        elif entry is not None and entry.is_symlink() and os.path.isdir(p):
            links += 1
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)  # whatever it is (FIFO, dead link, device): it gets a record
        elif entry is not None and holds_picture(p):
            images.append(p)  # a picture named unlike one: judged as it is
        else:
            ignored.append(p)
    return tuple(images), ignored, links


def list_folder(folder: Path) -> tuple[tuple[Path, ...], list[str], int]:
    """Every entry under ``folder`` that looks like an image (by suffix), sorted; the other files (their paths
    below ``folder``); links to folders are counted but not followed, so a link loop cannot make the listing
    endless."""
    images, ignored, links = _classify(_walk(folder))
    # a system folder passed over is named as one: "@eaDir/"
    return (
        images,
        [p.relative_to(folder).as_posix() + ("/" if p.name in SYSTEM_FOLDERS else "") for p in ignored],
        links,
    )


# The shell's character classes inside a bracket ('[[:digit:]]*.png'), ASCII as in the C locale.
POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z", "xdigit": "0-9A-Fa-f",
    "space": " \\t\\n\\r\\f\\v", "blank": " \\t", "word": "a-zA-Z0-9_",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"), "print": " -~", "graph": "!-~",
    "cntrl": "\\x00-\\x1f\\x7f",
}  # fmt: skip


def _bracket_end(comp: str, start: int) -> int | None:
    """Where the bracket expression opened at ``comp[start]`` closes: a ``]`` first (after ``!`` or ``^``) is one of
    its characters, ``[:class:]`` is read whole; None when it never closes (the ``[`` is then a character)."""
    i = start + 1
    if i < len(comp) and comp[i] in "!^":
        i += 1
    if i < len(comp) and comp[i] == "]":
        i += 1
    while i < len(comp):
        if comp.startswith("[:", i) and (k := comp.find(":]", i + 2)) != -1:
            i = k + 2
            continue
        if comp[i] == "]":
            return i
        i += 1
    return None


def _bracket_regex(body: str, pattern: str) -> str:
    """A shell bracket expression's inside as a regular expression's set: each character escaped (``[[x]`` or
    ``[a&&b]`` were read as nested sets or set operations), ``[:class:]`` as its characters; a range written
    backwards (``[z-a]``, an internal error before) or an unknown class is a usage error naming the pattern.

    >>> _bracket_regex("!a-c[:digit:]", "x")
    '[^/a-c0-9]'
    """
    negate = body[:1] in ("!", "^")
    body = body[1:] if negate else body
    out, i = [], 0
    while i < len(body):
        if body.startswith("[:", i) and (k := body.find(":]", i + 2)) != -1:
            name = body[i + 2 : k]
            if name not in POSIX_CLASSES:
                raise UsageError(f"--source: unknown character class [:{name}:] in {pattern!r}; use one of "
                                 f"{', '.join(sorted(POSIX_CLASSES))}")  # fmt: skip
            out.append(POSIX_CLASSES[name])
            i = k + 2
            continue
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = body[i], body[i + 2]
            if lo > hi:
                raise UsageError(f"--source: the range {lo}-{hi} in {pattern!r} runs backwards; write {hi}-{lo}")
            out.append(f"{re.escape(lo)}-{re.escape(hi)}")
            i += 3
            continue
        out.append(re.escape(body[i]))  # '-' too: escaped, a character of its own
        i += 1
    return "[" + ("^/" if negate else "") + "".join(out) + "]"  # a bracket never matches '/', as in the shell


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    comps = pattern.split("/")
    for k, comp in enumerate(comps):
        if comp == "**":
            # any folders; as the last part, every file below too (``dir/**`` matched nothing)
            parts.append("(?:[^/]+/)*" + ("[^/]+/" if k == len(comps) - 1 else ""))
            continue
        rx, i = "", 0
        while i < len(comp):
            c = comp[i]
            if c == "*":
                rx += "[^/]*"
            elif c == "?":
                rx += "[^/]"
            elif c == "[" and (end := _bracket_end(comp, i)) is not None:
                rx += _bracket_regex(comp[i + 1 : end], pattern)
                i = end
            else:
                rx += re.escape(c)
            i += 1
        parts.append(rx + "/")
    return re.compile("".join(parts)[:-1] + r"\Z", re.DOTALL)


def glob_root(pattern: str) -> tuple[str, list[str]]:
    """The folder a glob starts from (its leading parts without wildcards) and the parts below it.

    >>> glob_root("lot3/**/*.png")
    ('lot3', ['**', '*.png'])
    """
    comps = pattern.split("/")
    fixed = 0
    while fixed < len(comps) - 1 and not glob.has_magic(comps[fixed]):
        fixed += 1
    root = "/".join(comps[:fixed]) or ("/" if pattern.startswith("/") else ".")
    if pattern.startswith("/") and fixed == 1:
        root = "/"
    return root, comps[fixed:]


def _hidden_to_the_shell(part: str, depth: int, below: list[str], *, last: bool) -> bool:
    """Whether the shell's pattern would pass over ``part`` at ``depth``: a hidden name, unless the pattern's own
    part there starts with a dot (``'lots/.*'`` names hidden files, as the shell reads it; ``last``: the part the
    pattern's last part matched, also after a ``**``, as in ``'lots/**/.*'``)."""
    if not part.startswith("."):
        return False
    fixed = depth < len(below) and "**" not in below[: depth + 1]
    return not ((fixed and below[depth].startswith(".")) or (last and below and below[-1].startswith(".")))


def _matched_folder(rx: re.Pattern[str], parts: list[str]) -> int:
    """How many leading parts of a path name a folder the pattern matches (0: none): ``'lots/*'`` names the
    folders in ``lots`` as the shell would, and each is inspected as ``--source FOLDER`` is (their parts were passed
    over in silence, and the gate passed).

    >>> rx = _pattern_regex("line*")
    >>> _matched_folder(rx, ["line2", "a", "part.png"]), _matched_folder(rx, ["other", "part.png"])
    (1, 0)
    """
    return next((k for k in range(1, len(parts)) if rx.match("/".join(parts[:k]))), 0)


def match_glob(pattern: str) -> tuple[tuple[Path, ...], list[str], int]:
    """Files matching a glob (``**`` = any folders), listed without following links to folders; a folder the
    pattern matches counts with every file below it, as ``--source FOLDER`` does."""
    folders_only = len(pattern) > 1 and pattern.endswith("/")
    if folders_only:
        pattern = pattern.rstrip("/")  # 'lots/*/' names the folders in lots (not its files), as the shell reads it
    root, below = glob_root(pattern)
    if not os.path.isdir(root):
        return (), [], 0
    rx = _pattern_regex("/".join(below))
    base = Path(root)
    found, hidden = [], []
    for p, entry in _walk(base):
        rel = p.relative_to(base).as_posix()
        parts = rel.split("/")
        k = len(parts) if rx.match(rel) and not folders_only else _matched_folder(rx, parts)
        # Hidden names where the pattern itself reaches are skipped, as the shell does (named, not passed over);
        # below a folder it matched, everything counts, as --source FOLDER has it.
        upto = k or len(parts)
        if any(_hidden_to_the_shell(part, i, below, last=i == upto - 1) for i, part in enumerate(parts[:upto])):
            if k and not isinstance(entry, Unreadable):
                hidden.append(rel)
            continue
        # an unreadable folder the pattern reaches into (``**``, or fewer levels deep than the pattern) may hold
        # matches
        reaches = "**" in below or (rel != "." and rel.count("/") + 1 < len(below))
        if k or (isinstance(entry, Unreadable) and reaches):
            found.append((p, entry))
    images, ignored, links = _classify(found)
    return images, hidden + [p.relative_to(base).as_posix() for p in ignored], links
