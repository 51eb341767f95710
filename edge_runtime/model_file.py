"""Finding and reading a model file (``--model``: a path, or ``int8`` / ``fp32`` for a shipped one) and the
inference-thread setting, checked before onnxruntime sees either.

>>> read_model_bytes(Path("m.onnx"))        # doctest: +SKIP
>>> check_threads(512)                      # doctest: +SKIP
UsageError: --threads 512 is out of range; use 1..2 (this machine's CPU cores)
"""

from __future__ import annotations

import errno
import json
import numbers
import os
import stat
from pathlib import Path

from edge_runtime.errors import ModelError, UsageError
from edge_runtime.model_info import Precision

MAX_MODEL_BYTES = 1 << 30  # a defect-edge model is well under 100 MB; a larger file is not one of ours

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL_FILES = {Precision.INT8: "defectnet_int8.onnx", Precision.FP32: "defectnet_fp32.onnx"}


def default_model_path(precision: Precision = Precision.INT8) -> Path:
    """Path of a model shipped inside the package."""
    return MODELS_DIR / DEFAULT_MODEL_FILES[precision]


def model_path(name: str | bytes | os.PathLike[str] | None) -> Path:
    """``--model``: a file, or ``int8`` / ``fp32`` for the model of that precision shipped in the package (where a
    pip install put it; the README's ``edge_runtime/models/...`` paths exist only in a checkout). A file of that
    name in the working folder wins. Only the bare name as typed (a ``str`` or bytes) is a shortcut: ``./fp32`` and a
    ``Path`` always name a file (``Path("./fp32")`` reads ``fp32``, so a missing ``./fp32`` had run the bundled model).

    >>> model_path("fp32") == default_model_path(Precision.FP32), model_path("m.onnx")
    (True, PosixPath('m.onnx'))
    """
    if name is None:
        return default_model_path()
    if isinstance(name, bytes):  # a name from os.listdir(b"."): Path(b"m.onnx") was pathlib's TypeError
        name = os.fsdecode(name)
    if not isinstance(name, (str, os.PathLike)):  # load_model(3) was "expected str, bytes or os.PathLike object"
        raise TypeError(f'load_model takes a model file\'s path (str, Path or bytes), "int8" or "fp32", or None for '
                        f"the bundled INT8 model, not {name!r} ({type(name).__name__})")  # fmt: skip
    if "\0" in str(name):  # os.open's ValueError "embedded null byte" had come out of load_model
        raise ModelError(f"{name!r}: a path holds no NUL character; name a model file, or none for the bundled INT8 "
                         "model")  # fmt: skip
    if not str(name).strip():  # Path("") is ".": the message had been ".: not a regular file"
        raise ModelError("the model's path is empty (an unset shell variable?); name a model file, or none for the "
                         "bundled INT8 model")  # fmt: skip
    path = Path(name)
    shipped = {p.value: p for p in DEFAULT_MODEL_FILES}
    # a folder or a broken link of that name does not win
    if isinstance(name, str) and name.lower() in shipped and not path.is_file():
        return default_model_path(shipped[name.lower()])
    return path


def check_threads(threads: int | None, *, what: str = "--threads") -> int | None:
    """``threads`` if it is 1..CPU cores; otherwise a :class:`UsageError` (exit 2) that names the bound."""
    cores = os.cpu_count() or 1
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):  # threads="2" was "out of range"
        raise UsageError(f"{what} {threads!r} is not a whole number; use 1..{cores} (this machine's CPU cores)")
    threads = int(threads)  # a numpy integer too
    if not 1 <= threads <= cores:
        raise UsageError(f"{what} {threads!r} is out of range; use 1..{cores} (this machine's CPU cores)")
    return threads


def threads_from_env() -> int | None:
    """``DEFECT_EDGE_THREADS`` as a checked thread count, or None when unset/empty."""
    text = os.environ.get("DEFECT_EDGE_THREADS", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(
            f"DEFECT_EDGE_THREADS={text[:20]!r} is not a whole number; unset it or use 1..{os.cpu_count() or 1}"
        ) from None
    return check_threads(value, what="DEFECT_EDGE_THREADS")


def _not_a_model_file(path: Path, problem: str, *, bundled: bool) -> ModelError:
    """``path`` names no model file: the remedy as the caller gives it, load_model's argument or edge-infer's
    --model (a Python caller had been told to "pass --model PATH", an option it has not got)."""
    bare = path.name.lower() if path.name.lower() in ("int8", "fp32") else None  # ./fp32: a path, not the name

    def say(how: str, quote: str) -> str:
        names = (
            f"the bare name {quote}{bare}{quote}, without a path,"
            if bare
            else f"{quote}int8{quote} / {quote}fp32{quote}"
        )
        also = f" (or {names} for the bundled models)" if bundled else ""
        return f"{path}: {problem}; pass {how} to an .onnx from export-onnx{also}"

    return ModelError(say("load_model the path", '"'), cli=say("--model PATH", ""))


def read_model_bytes(path: Path) -> bytes:
    """The model file's bytes: a regular file under :data:`MAX_MODEL_BYTES`, else a :class:`ModelError`."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise _not_a_model_file(path, "model file not found", bundled=True) from exc
        raise ModelError(f"{path}: cannot read the model ({exc.strerror or exc})") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_a_model_file(path, "not a regular file", bundled=False)
        if st.st_size > MAX_MODEL_BYTES:
            raise ModelError(f"{path}: {st.st_size >> 20} MiB is far too large for a defect-edge model")
        # In chunks: one read(MAX_MODEL_BYTES + 1) reserved 1 GiB up front, so every run failed "out of memory"
        # under a small edge box's address-space limit (ulimit -v 1000000) for a 420 KB model.
        chunks, total = [], 0
        while total <= MAX_MODEL_BYTES and (chunk := os.read(fd, min(1 << 20, MAX_MODEL_BYTES + 1 - total))):
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)


def json_object(text: str) -> dict:
    """``text`` parsed as a JSON object, or ``{}`` when it is not one (never raises)."""
    try:
        d = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return d if isinstance(d, dict) else {}
