"""The run folder (``--out``): checked before any work, removed again when a refused run made it and left it empty,
and written to with errors that say which file could not be written (exit 7), never "unexpected OSError"."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from edge_runtime.atomic import atomic_write_text
from edge_runtime.errors import OutputError
from train.config import TrainConfig

# The advice of every failed write of a run file; train.main replaces it with what continues the run (rerun, or
# --resume) once it knows whether a last.pt is there to resume from.
FREE_SPACE = "free some space or choose another --out"


def _inside(path: Path, folder: Path) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def folders_read(data: Path) -> list[Path]:
    """The folders a run reads images from: ``data``, its ``train/`` and ``test/`` and their class folders. Any of
    them may be a link to another disk (datasets often keep their splits so), so each is compared by its own real
    path, not only as a part of ``data``'s."""
    folders = [data]
    for split in (data / "train", data / "test"):
        if split.is_dir():
            folders += [split, *(p for p in split.iterdir() if p.is_dir())]
    return folders


def check_out_not_in_data(out: Path, data: Path) -> None:
    """A run folder inside --data would put the run's PNGs (misclassified test images among them) into the next
    run's training images."""
    if not Path(data).is_dir():
        return
    inside = next((f for f in folders_read(Path(data)) if _inside(out, f)), None)
    if inside is not None:
        where = "" if inside == Path(data) else f" ({inside} is {os.path.realpath(inside)})"
        raise OutputError(
            f"{out}: --out is inside --data {data}{where}; its pictures would be read as images of the next "
            "training: choose an --out outside the data folder"
        )


def _new_dirs(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, the outermost first."""
    missing = []
    for p in (path, *path.parents):
        if p.exists():
            break
        missing.append(p)
    return missing[::-1]


def setup_run_dir(cfg: TrainConfig) -> tuple[Path, list[Path]]:
    """Make and probe the run folder; refuse one that holds a run unless resuming. Returns the folder and the
    folders this call created (for :func:`removed_if_refused`)."""
    run_dir = Path(cfg.out)
    if run_dir.exists() and not run_dir.is_dir():  # it said "cannot write the run folder (File exists)"
        raise OutputError(f"{run_dir}: is a file, not a folder; pass --out the run folder to make (or resume)")
    check_out_not_in_data(run_dir, cfg.data)
    made = _new_dirs(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OutputError(
            f"{run_dir}: cannot write the run folder ({exc.strerror or exc}); choose another --out"
        ) from exc
    _hold(run_dir, resume=cfg.resume)
    # best.pt alone (a run whose last.pt was deleted, a model folder) is a model too: never trained over.
    held = [name for name in ("last.pt", "best.pt") if (run_dir / name).exists()]
    if not cfg.resume and held == ["best.pt"]:
        raise OutputError(
            f"{run_dir}: already holds a training run (best.pt) without the last.pt to resume it from; choose "
            "another --out"
        )
    if not cfg.resume and held:
        raise OutputError(
            f"{run_dir}: already holds a training run ({held[0]}); pass --resume to continue it or choose another --out"
        )
    return run_dir, made


_HELD: dict[Path, int] = {}  # the run folders this process trains into, locked until release_run_dir


def _hold(run_dir: Path, *, resume: bool = False) -> None:
    """Lock the run folder for this process (``flock`` on the folder itself): two train-model runs started together
    on one --out both passed the "already holds a run" check, both said "wrote best.pt", and one run's work was
    gone. A file system without locks trains unlocked, as before."""
    if run_dir in _HELD:
        return
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            if resume:  # "choose another --out" led a resume to a folder with nothing to resume
                wait = "let that run end (or stop it), then rerun this --resume to continue from its last.pt"
                raise OutputError(f"{run_dir}: another train-model is training into it now; {wait}") from exc
            raise OutputError(f"{run_dir}: another train-model is training into it; choose another --out") from exc
        return
    _HELD[run_dir] = fd


# The files a run writes with edge_runtime.atomic (a hidden ".NAME.PID.tmp" beside each until its rename), and
# the pattern of those temporary names.
RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl", "report.json", "curves.png", "confusion.png", "augmentations.png")
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.tmp")


def stale_temp_files(run_dir: Path) -> list[Path]:
    """The temporary files of run files left in ``run_dir`` (and its misclassified/): a train-model killed mid-write
    (SIGKILL, the OOM killer, a power cut) cannot remove its own. Only while this process holds the folder's lock, so
    that no other train-model is writing them now (none where it cannot lock), and between its own writes; whatever
    the PID in the name: a container's train-model often has the same PID on every start."""
    if Path(run_dir) not in _HELD:
        return []
    found = []
    for folder, names in ((run_dir, RUN_FILES), (run_dir / "misclassified", None)):
        with contextlib.suppress(OSError):
            for p in folder.iterdir():
                m = _TEMP.fullmatch(p.name)
                if m and (names is None or m["name"] in names) and p.is_file():
                    found.append(p)
    return sorted(found)


def remove_stale_temp_files(run_dir: Path, log: Callable[[str], None]) -> None:
    """Remove :func:`stale_temp_files` and say so: they were left for good, 3 MB a kill, hidden from ``ls``."""
    removed = []
    for p in stale_temp_files(run_dir):
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p.relative_to(run_dir).as_posix())
    if removed:
        shown = ", ".join(removed[:3]) + (f" and {len(removed) - 3} more" if len(removed) > 3 else "")
        log(f"removed {len(removed)} temporary file(s) that a killed run left in {run_dir}: {shown}")


def release_run_dir(run_dir: Path) -> None:
    """Unlock a run folder :func:`setup_run_dir` locked (the run has ended, well or not)."""
    fd = _HELD.pop(Path(run_dir), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def removed_if_refused(made: list[Path]) -> Iterator[None]:
    """A run refused before it wrote anything (bad data, a bad resume) leaves no empty --out folder behind."""
    try:
        yield
    except BaseException:
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()  # only while empty
        raise


# The same advice where a file-size limit (ulimit -f), not the disk, stopped the write: freeing space cannot help.
RAISE_LIMIT = "raise the file-size limit (ulimit -f) or choose another --out"
MAKE_WRITABLE = "make the folder writable for this user or choose another --out"


def file_size_limit() -> int | None:
    """This process's file-size limit in bytes (``ulimit -f``), None when there is none."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


def write_failure(exc: BaseException, *, size: int | None = None, folder: Path | None = None) -> tuple[str, str]:
    """Why a write of a run file failed, and the advice: (``why``, :data:`FREE_SPACE`, :data:`RAISE_LIMIT` or
    :data:`MAKE_WRITABLE`).

    The file-size limit is blamed only when it stopped the write: the write failed with EFBIG, or (torch's zip
    writer reports no errno) the file, ``size`` bytes, is larger than the limit while the disk under ``folder``
    has room for more than the limit (the failed file is gone by now: with less room, the disk filled first).
    A full disk under a generous limit is still a full disk."""
    limit = file_size_limit()
    by_size = limit is not None and size is not None and size > limit and _room(folder) > limit
    if limit is not None and (getattr(exc, "errno", None) == errno.EFBIG or by_size):
        return f"over this process's file-size limit, ulimit -f: {limit} bytes", RAISE_LIMIT
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return str(exc.strerror or exc), MAKE_WRITABLE
    if isinstance(exc, OSError):
        return str(exc.strerror or exc), FREE_SPACE
    # torch's zip writer says no errno: a folder made read-only mid-run was "is the disk full?", "free some space"
    if folder is not None and folder.is_dir() and not os.access(folder, os.W_OK):
        return f"{folder} is not writable (permission denied)", MAKE_WRITABLE
    return "the write stopped short: is the disk full?", FREE_SPACE


def _room(folder: Path | None) -> int:
    try:
        return shutil.disk_usage(folder or ".").free
    except OSError:
        return 0


@contextlib.contextmanager
def rerun_advice(run_dir: Path) -> Iterator[None]:
    """A failed write of a run file (a full disk) advises what continues the run: the same command while nothing
    is kept to resume from, --resume once last.pt holds an epoch (the same command is then refused)."""
    try:
        yield
    except KeyboardInterrupt:
        # Ctrl-C or a kill said "error: interrupted" alone: that the run can go on, and how, was the README's
        if (run_dir / "last.pt").exists():
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"{run_dir}/last.pt keeps the epochs trained so far: rerun the command with "
                                 "--resume to continue the run (the epochs left, then its report and localisation "
                                 "head)\n")  # fmt: skip
        raise
    except OutputError as exc:
        message = str(exc)
        tail = next((t for t in (FREE_SPACE, RAISE_LIMIT, MAKE_WRITABLE) if message.endswith(t)), None)
        if tail is None:
            raise
        space = {FREE_SPACE: "free some space", RAISE_LIMIT: "raise the file-size limit (ulimit -f)",
                 MAKE_WRITABLE: "make the folder writable for this user"}[tail]  # fmt: skip
        if (run_dir / "last.pt").exists():
            advice = f"{space}, then rerun the command with --resume: it continues from last.pt"
        else:
            advice = f"{space}, then rerun the same command (no epoch was kept to resume from)"
        raise OutputError(f"{message[: -len(tail)]}{advice}; or choose another --out") from exc


def write_run_text(path: Path, text: str) -> None:
    """Write one file of the run atomically; a full disk or a lost permission is exit 7 naming the file."""
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        why, advice = write_failure(exc)
        raise OutputError(f"{path}: cannot write ({why}); {advice}") from exc


def make_folder(path: Path) -> Path:
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot make the folder ({exc.strerror or exc}); check --out") from exc
    return path
