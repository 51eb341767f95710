"""What ``edge-bench`` checks before it times anything: models that load, a checkpoint that exists, thread counts
this machine has, and outputs that can be written without replacing an input of the run.

Each failure is one line and a documented exit code, before the first job, so a bad option never costs a minute
of timing first (``--threads 512`` used to time PyTorch for a minute before it was refused).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edge_runtime import integrity
from edge_runtime.errors import DataError, ModelError, OutputError
from edge_runtime.model_bytes import check_model_bytes
from edge_runtime.model_file import check_threads, json_object, read_model_bytes
from edge_runtime.model_info import METADATA_KEY, ModelInfo
from edge_runtime.output_checks import check_distinct_outputs, same_file


def check_model_file(path: Path) -> ModelInfo:
    """Read the file, its metadata and its content hash without opening a session (a model an execution provider
    cannot run is the worker's to skip). A truncated or non-ONNX file is a :class:`ModelError` (exit 4): it was
    listed under Skipped, every target "not measured", exit 0."""
    data = read_model_bytes(path)
    check_model_bytes(data, path)  # as edge-infer says it: a checkpoint, a file cut short, weights in another file
    try:
        meta = integrity.metadata_entries(data)
    except integrity.WireError as exc:
        raise ModelError(f"{path}: not an ONNX model (truncated or damaged); re-export it with export-onnx") from exc
    if METADATA_KEY not in meta:
        raise ModelError(f"{path}: has no defect-edge metadata (not an export-onnx model, or damaged); re-export it")
    integrity.verify(data, json_object(meta[METADATA_KEY]), METADATA_KEY, source=str(path))
    try:
        return ModelInfo.from_json(meta[METADATA_KEY])
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc


def check_inputs(models: tuple[Path, ...], checkpoint: Path | None, threads: tuple[int, ...]) -> None:
    for t in threads:
        check_threads(t)
    for model in models:
        check_model_file(model)
    if checkpoint is None:
        return
    if checkpoint.is_dir():
        raise ModelError(f"{checkpoint}: is a folder; pass --checkpoint the DefectNet best.pt in it")
    if not checkpoint.is_file():
        raise ModelError(f"{checkpoint}: checkpoint not found; pass --checkpoint a DefectNet best.pt from train-model")


def check_data_classes(models: tuple[Path, ...], classes: set[str], data: Path) -> None:
    """Every model must know the classes of ``--data``: the accuracy job, the last of the run, refused them after
    every row had been timed, and the run ended exit 3 with nothing reported or written."""
    for model in models:
        negative, positive = check_model_file(model).class_names
        if not classes <= {negative, positive}:
            raise DataError(
                f"{data}: its classes ({' and '.join(sorted(classes))}) are not those of {model.name} ({negative} "
                f"and {positive}); pass --data with class folders named {negative} and {positive}, or leave out --data"
            )


def _inside(path: Path, folder: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _image_folders(data: Path) -> list[Path]:
    """``data``, its class folders and those of ``data/test``: any may be a link to another disk (datasets often keep
    their splits so), so each is compared by its own real path, not only as a part of ``data``'s."""
    folders = [data]
    for top in (data, data / "test"):
        if top.is_dir():
            folders += [p for p in top.iterdir() if p.is_dir()]
    return folders


def inside_data(path: Path, data: Path) -> bool:
    """Whether ``path`` is ``data`` or lies inside it or any of its (possibly linked) class folders."""
    folders = _image_folders(data) if data.is_dir() else [data]
    return any(_inside(path, f) for f in folders)


def check_outputs(
    named: dict[str, Path], inputs: dict[str, Path | None], data: Path | None, *, option: str = "--json"
) -> None:
    """``named``: what the run writes (``--json`` and the CSV and PNG beside it); ``inputs``: the files it reads.
    None may be replaced, land among the ``data`` images, or be a folder or device; the folder must be writable."""
    from edge_runtime.atomic import temp_path_for

    check_distinct_outputs(dict(named))
    folders = _image_folders(data) if data is not None and data.is_dir() else []
    for what, path in named.items():
        for opt, source in inputs.items():
            if source is not None and same_file(path, source):
                raise OutputError(f"{path}: {what} names {opt}, an input of this run; choose another {option}")
        if any(_inside(path, f) for f in folders):
            raise OutputError(f"{path}: {what} is inside --data {data}, among its images; choose another {option}")
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            raise OutputError(
                f"{path}: {what} is not a regular file (a folder, device or FIFO); choose another {option}"
            )
    folder = next(iter(named.values())).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_path_for(folder / "bench")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write here ({exc.strerror or exc}); choose another {option}") from exc
