"""Writing checkpoints so that a crash, a full disk or a stop never leaves a half-written one (see
:mod:`train.checkpoint` for what they hold)."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from edge_runtime.errors import OutputError
from train.checkpoint import CHECKPOINT_FORMAT, HASH_KEY, Checkpoint, checkpoint_digest
from train.run_dir import write_failure


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file, then rename: a crash never leaves a half-written checkpoint.

    A model checkpoint (``format`` set) is stamped with :func:`checkpoint_digest` first, so a damaged file is
    refused by :func:`load_checkpoint` instead of exported.
    """
    with staged_torch_save(obj, path):
        pass


@contextlib.contextmanager
def staged_torch_save(obj: Any, path: Path) -> Iterator[None]:
    """Write ``obj`` beside ``path`` now; it replaces ``path`` only when the ``with`` block succeeds, else it is
    removed. Two files that must change together are written so, the second inside the first's block: an
    epoch's best.pt without its last.pt looked like a finished model that neither a rerun nor --resume could
    continue.

    >>> with staged_torch_save(best, run / "best.pt"):       # doctest: +SKIP
    ...     atomic_torch_save(state, run / "last.pt")        # best.pt is replaced only once last.pt is written
    """
    from edge_runtime.atomic import atomic_path

    if isinstance(obj, Checkpoint):
        obj = obj.to_dict()
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT and "state_dict" in obj:
        obj = {**{k: v for k, v in obj.items() if k != HASH_KEY}, HASH_KEY: checkpoint_digest(obj)}
    in_block = False  # an error of the caller's block is its own, not a failed write of this file
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
            in_block = True
            yield
            in_block = False  # the rename onto path follows
    except OSError as exc:
        if in_block:
            raise
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            why, advice = write_failure(exc)
            raise OutputError(f"{path}: cannot write checkpoint ({why}); {advice}") from exc
        raise OutputError(f"{path}: cannot write checkpoint ({exc.strerror or exc}); check the folder") from exc
    except RuntimeError as exc:
        if in_block:
            raise
        # torch's zip writer reports a short write (a full disk, a file-size limit) as RuntimeError
        # "[enforce fail at inline_container.cc] ... unexpected pos", not as OSError: the size it would have had
        # tells the two apart.
        why, advice = write_failure(exc, size=_saved_size(obj), folder=path.parent)
        raise OutputError(f"{path}: cannot write checkpoint ({why}); {advice}") from exc


def _saved_size(obj: Any) -> int | None:
    """How many bytes ``torch.save(obj)`` writes (only after a failed write: it serialises once more)."""
    import io

    buf = io.BytesIO()
    try:
        torch.save(obj, buf)
    except Exception:  # noqa: BLE001 - only a hint for the message
        return None
    return buf.tell()
