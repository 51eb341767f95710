"""The run folder (``--out``): checked before any work, removed again when a refused run made it and left it empty,
and written to with errors that say which file could not be written (exit 7), never "unexpected OSError"."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from edge_runtime.atomic import atomic_write_text
from edge_runtime.errors import OutputError
from train.config import TrainConfig


def _inside(path: Path, folder: Path) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def check_out_not_in_data(out: Path, data: Path) -> None:
    """A run folder inside --data would put the run's PNGs (misclassified test images among them) into the next
    run's training images."""
    if Path(data).is_dir() and _inside(out, data):
        raise OutputError(
            f"{out}: --out is inside --data {data}; its pictures would be read as images of the next training: "
            "choose an --out outside the data folder"
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


def write_run_text(path: Path, text: str) -> None:
    """Write one file of the run atomically; a full disk or a lost permission is exit 7 naming the file."""
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        why = exc.strerror or exc
        raise OutputError(f"{path}: cannot write ({why}); free some space or choose another --out") from exc


def make_folder(path: Path) -> Path:
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot make the folder ({exc.strerror or exc}); check --out") from exc
    return path
