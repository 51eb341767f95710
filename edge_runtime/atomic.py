"""The one way defect-edge writes a whole file: to a temporary name beside it, then an atomic rename.

A crash, a full disk or a SIGKILL leaves either the old file or the complete new one, never half of one.

>>> atomic_write_text(Path("summary.json"), "{}\\n")       # doctest: +SKIP
>>> with atomic_path(Path("model.onnx")) as tmp:           # doctest: +SKIP
...     onnx.save(proto, str(tmp))                         # renamed onto model.onnx when the block succeeds
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def temp_path_for(dst: Path) -> Path:
    """A hidden temporary name beside ``dst`` (same file system, so the final rename is atomic); a short one
    where ``dst``'s own name is near the file system's 255-byte limit (a legal name was refused as too long)."""
    name = f".{dst.name}.{os.getpid()}.tmp"
    if len(os.fsencode(name)) > 255:
        digest = hashlib.sha1(os.fsencode(dst.name)).hexdigest()[:16]
        name = f".defect-edge-{digest}.{os.getpid()}.tmp"
    return dst.with_name(name)


def write_all(fd: int, data: bytes) -> None:
    """Every byte of ``data`` to ``fd`` (``os.write`` may write fewer); raises ``OSError``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_back_path(path: Path) -> Path:
    """Where the records of a file deleted during the run go back: its own name, or beside it when another run
    made a new file there meanwhile (left alone).

    >>> write_back_path(Path("no-such-dir/v.jsonl"))
    PosixPath('no-such-dir/v.jsonl')
    """
    if not os.path.lexists(path):
        return path
    return path.with_name(f"{path.stem}.recovered-{os.getpid()}{path.suffix}")


def write_back(held_fd: int, path: Path) -> Path:
    """The content of a deleted file still held open as ``held_fd`` (read anew through ``/proc``, whatever the
    descriptor's mode), written to :func:`write_back_path` of ``path``, never over another file; returns where.
    A folder deleted with it (``rm -rf out/``) is made again: the records had been lost with "No such file or
    directory". Raises ``OSError``."""
    where = write_back_path(path)
    where.parent.mkdir(parents=True, exist_ok=True)
    with open(f"/proc/self/fd/{held_fd}", "rb") as held, open(where, "xb") as back:
        shutil.copyfileobj(held, back)
    return where


def missing_folders(folder: Path) -> list[Path]:
    """The folders writing into ``folder`` will make (``folder`` first, then its missing parents), to remove
    again with :func:`remove_empty` when nothing was written there.

    >>> missing_folders(Path("/"))
    []
    """
    made = []
    while not _exists(folder) and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    return made


def _exists(path: Path) -> bool:
    """``path.exists()``, False where the name cannot even be looked up: a name over 255 bytes raised
    ``OSError`` (File name too long) out of ``--save``'s set-up, "unexpected OSError", exit 1. Taken for a folder
    to make, its writing then fails with the command's own line (exit 7)."""
    try:
        return path.exists()
    except OSError:
        return False


def remove_empty(made: list[Path]) -> None:
    """Remove the folders of :func:`missing_folders`, deepest first, up to the first one not empty."""
    for folder in made:
        try:
            folder.rmdir()  # only when empty
        except OSError:
            break


def disk_room(folder: Path) -> int | None:
    """Bytes this process may still write on the disk that holds ``folder`` (None where it cannot tell): root may
    also write into the blocks a file system keeps back for it.

    >>> disk_room(Path("/")) is not None
    True
    """
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return (st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def locked_by_another(path: Path) -> bool:
    """Whether another process holds ``path`` locked (``flock``), as a running edge-infer holds its ``--output``
    and ``--save`` video: a rename onto it would take the file from under that run, whose later records would go
    to a file no longer in any folder.

    >>> locked_by_another(Path("no-such-file"))
    False
    """
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without locks
        return False
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def probe_writable(probe: Path) -> None:
    """Make ``probe``'s folder and write and remove an empty ``probe`` there: an output that cannot be written is
    found before the run, not after its work. Raises ``OSError``."""
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(b"")
    probe.unlink()


@contextlib.contextmanager
def atomic_path(dst: Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is synced (``durable``) and renamed onto ``dst``, else
    removed. A ``dst`` that is a symbolic link is written through: the link stays, its target gets the new
    content. Without ``durable`` a crash may lose the file, but never leaves half of it under its name."""
    dst = Path(os.path.realpath(dst))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(dst)
    try:
        yield tmp
        if durable:
            with contextlib.suppress(OSError), open(tmp, "rb+") as f:  # durability is best effort (FAT, tmpfs)
                os.fsync(f.fileno())
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_bytes(dst: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``dst`` atomically; raises ``OSError`` when it cannot be written."""
    with atomic_path(dst, durable=durable) as tmp:
        tmp.write_bytes(data)


def atomic_write_at(dir_fd: int, name: str, data: bytes) -> None:
    """Write ``data`` atomically as ``name`` in the folder open as ``dir_fd``, wherever that folder is now: a
    ``--save`` folder renamed during a run kept only the pictures before the rename, the later ones went to a new
    folder made under the old name (3256 and 3377 of 6633, exit 0). Not synced (as ``durable=False``). Raises
    ``OSError``; ``ENOENT`` when the folder was deleted."""
    tmp = temp_path_for(Path(name)).name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)
    try:
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def atomic_write_all(files: dict[Path, bytes], *, durable: bool = True) -> None:
    """Write a set of files that belong together (a benchmark's JSON, CSV and plot) all or none: every one goes to
    its temporary name first, and only when all are written are they renamed. A full disk or a file-size limit on
    the last one replaced the first ones and left the set mixed. Raises ``OSError`` (naming the file in
    ``filename``) with every old file kept."""
    with contextlib.ExitStack() as stack:
        for dst, data in files.items():
            tmp = stack.enter_context(atomic_path(dst, durable=durable))
            try:
                tmp.write_bytes(data)
            except OSError as exc:
                exc.filename = str(dst)
                raise


def atomic_write_text(dst: Path, text: str) -> None:
    atomic_write_bytes(dst, text.encode("utf-8"))
