"""Checks of a run's outputs before any work: no two outputs on one file, none on an input, the model or a
device, and no JSON or log under an image or video name (a later run over the folder would judge it as a part).
Each refusal is one line and a usage or output error."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from pathlib import Path

from edge_runtime.errors import OutputError, UsageError, printable
from edge_runtime.inputs import SourceKind, SourceSpec


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one regular file: the same inode when both exist, else the same resolved path
    (two outputs to ``/dev/null`` are fine)."""
    try:
        return os.path.samefile(a, b) and stat.S_ISREG(os.stat(a).st_mode)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_distinct_outputs(named: dict[str, Path | None]) -> None:
    """Refuse, before any work, two options naming one file (``--output r.jsonl --summary r.jsonl``): the
    summary, the log or the video would replace or corrupt the records written by the other.

    >>> check_distinct_outputs({"--output": Path("r.jsonl"), "--summary": Path("./r.jsonl")})
    Traceback (most recent call last):
    edge_runtime.errors.OutputError: r.jsonl: --output and --summary name the same file; give each its own file
    """
    given = [(opt, path) for opt, path in named.items() if path is not None]
    for i, (opt_a, a) in enumerate(given):
        for opt_b, b in given[i + 1 :]:
            if same_file(a, b):
                raise OutputError(f"{a}: {opt_a} and {opt_b} name the same file; give each its own file")


def check_not_a_std_stream(named: dict[str, Path | None]) -> None:
    """Refuse, before any work, an output that is the file stdout or stderr is redirected to (``--output v.csv >
    v.csv``, ``--output r.jsonl 2> r.jsonl``): the run's lines were written over the records (a CSV lost its header
    and the defective part's record with it), exit 0.

    >>> check_not_a_std_stream({"--output": None})
    """
    streams: dict[tuple[int, int], str] = {}
    for fd, name in ((1, "stdout"), (2, "stderr")):
        with contextlib.suppress(OSError):
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                streams.setdefault((st.st_dev, st.st_ino), name)
    if not streams:
        return
    for opt, path in named.items():
        with contextlib.suppress(OSError, ValueError):
            if path is not None and (name := streams.get(((st := os.stat(path)).st_dev, st.st_ino))) is not None:
                raise OutputError(f"{path}: {opt} names the file {name} is redirected to, which would mix the run's "
                                  f"lines into it; redirect {name} elsewhere or choose another {opt}")  # fmt: skip


def check_not_an_input(spec: SourceSpec, named: dict[str, Path | None], *, save_folder: Path | None = None) -> None:
    """Refuse, before any work, an output that is one of the run's inputs (``--save line3.avi --source
    line3.avi``, ``--summary part.png``): edge-infer never overwrites what it inspects. ``save_folder``
    (``--save DIR``) may not hold inputs either: annotated pictures would land among them."""
    if spec.kind.live:
        return
    inputs = (Path(spec.name),) if spec.kind is SourceKind.VIDEO else spec.paths
    targets: dict[tuple[int, int], tuple[str, Path]] = {}
    for opt, path in named.items():
        with contextlib.suppress(OSError, ValueError):
            if path is not None:
                st = os.stat(path)
                targets[(st.st_dev, st.st_ino)] = (opt, path)
    folder = None if save_folder is None else os.path.realpath(save_folder)
    if folder is not None and spec.kind is SourceKind.IMAGES and (source_root := _source_folder(spec.name)):
        root = os.path.realpath(source_root).rstrip(os.sep) + os.sep
        if folder.startswith(root):
            raise OutputError(f"{save_folder}: --save names a folder inside the folder being inspected; the next run "
                              "on it would judge the annotated pictures as parts: choose another --save")  # fmt: skip
    if not targets and folder is None:  # nothing named exists yet: no input can be among them
        return
    parents: dict[Path, bool] = {}
    for p in inputs:
        if targets:
            with contextlib.suppress(OSError, ValueError):
                st = os.stat(p)
                if (hit := targets.get((st.st_dev, st.st_ino))) is not None:
                    raise OutputError(f"{hit[1]}: {hit[0]} names an input of this run; choose another {hit[0]} "
                                      "(edge-infer never overwrites what it inspects)")  # fmt: skip
        if folder is not None:
            if p.parent not in parents:
                real = os.path.realpath(p.parent)
                parents[p.parent] = real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)
            if parents[p.parent]:
                raise OutputError(f"{save_folder}: --save names a folder that holds input images ({p}); choose "
                                  "another --save, outside the inputs")  # fmt: skip


def _source_folder(name: str) -> str | None:
    """The folder a source of images is listed from: the folder itself, or a pattern's starting folder."""
    import glob

    from edge_runtime.listing import glob_root

    if os.path.isdir(name):
        return name
    return glob_root(name)[0] if glob.has_magic(name) and not os.path.lexists(name) else None


def check_save_target(target: Path) -> None:
    """``--save`` must be a folder or a regular file (a FIFO would block the video writer forever), a video name
    one OpenCV can write (``out.mov`` would silently become a folder) and not an existing folder."""
    from edge_runtime.annotate import VIDEO_SAVE_SUFFIXES

    suffix = target.suffix.lower()
    if suffix in VIDEO_SAVE_SUFFIXES and target.is_dir():
        raise OutputError(f"{target}: is a folder, not a video file; choose another --save")
    # Any suffix that names a kind of file (letters first: "runs.2026.11" stays a folder) other than a video the
    # saver writes: out.onnx, out.log, out.html ... each became a folder of JPEGs.
    file_like = re.fullmatch(r"\.[a-z][a-z0-9]*", suffix) is not None
    if file_like and suffix not in VIDEO_SAVE_SUFFIXES and not target.is_dir():
        raise UsageError(
            f"--save {target}: cannot save a {suffix} file; name a video ({', '.join(VIDEO_SAVE_SUFFIXES)}) or a "
            "folder for annotated JPEGs"
        )
    try:
        st = os.stat(target)
    except OSError:
        return  # does not exist yet: created by the saver
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise OutputError(f"{target}: not a regular file or folder (a FIFO or device); choose another --save")


def holds_other_than_a_summary(target: Path) -> str | None:
    """What ``target`` holds when it is neither missing, empty nor a summary of an earlier run: a summary renamed
    over a running station's ``--log`` (SQLite keeps no ``flock``) replaced its database and the station's records
    with it, and one renamed over a finished ``--output`` (JSON lines, as ``--json > verdicts.jsonl`` writes) its
    records."""
    try:
        with open(target, "rb") as f:
            data = f.read(MAX_SUMMARY_BYTES + 1)
    except OSError:
        return None
    if data.startswith(b"SQLite format 3\0"):
        return "an SQLite database (an inspection log?)"
    text = data.removeprefix(b"\xef\xbb\xbf").strip()  # a BOM, as a Windows editor leaves it
    if not text:
        return None
    try:
        summary = json.loads(text) if len(data) <= MAX_SUMMARY_BYTES else None
    except (ValueError, UnicodeDecodeError):
        summary = None
    if isinstance(summary, dict) and {"items", "source"} <= summary.keys():
        return None
    return "something that is not an edge-infer summary (records, another program's data)"


MAX_SUMMARY_BYTES = 1 << 20  # a summary is a few kB; a file larger than this is some other data


def check_summary_replaceable(target: Path) -> None:
    """Refuse to rename ``--summary`` over another run's file or data (:class:`OutputError`): checked before the
    run (:func:`check_summary_target`) and again when it is written, should the file have changed meanwhile."""
    from edge_runtime.atomic import locked_by_another

    if locked_by_another(target):
        why = "another process is writing this file (it is locked: another run's --output or --save)"
    elif (held := holds_other_than_a_summary(target)) is not None:
        why = f"holds {held}"
    else:
        return
    raise OutputError(f"{target}: {why}; --summary would replace it: choose another --summary")


def check_summary_target(target: Path) -> None:
    """``--summary`` is written whole at the end, by a rename onto its name: a device (``/dev/null``, ``/dev/full``)
    or FIFO there would be replaced by a regular file, for the whole machine when run as root. Checked now, with
    its folder's writability, so that a run is not done only to lose its summary."""
    from edge_runtime.atomic import probe_writable, temp_path_for
    from edge_runtime.inputs import VIDEO_SUFFIXES
    from edge_runtime.preprocess import IMAGE_SUFFIXES

    if target.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:  # the next run over its folder read it as a part
        raise UsageError(f"--summary {target}: JSON under an image or video name; name it .json")
    target = Path(os.path.realpath(target))  # a link is written through: its target gets the summary
    with contextlib.suppress(OSError):
        st = os.stat(target)
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{target}: is a folder; pass --summary FILE.json")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(
                f"{target}: not a regular file (a device, FIFO or socket); --summary writes a file: choose another"
            )
        check_summary_replaceable(target)
    try:
        probe_writable(temp_path_for(target))
    except OSError as exc:
        why = exc.strerror or exc
        raise OutputError(f"{target}: cannot write the summary here ({why}); choose another --summary") from exc


def check_not_the_model(model: Path, named: dict[str, Path | None]) -> None:
    """An output on the run's model file (a slip of tab completion) would destroy the station's model."""
    for opt, path in named.items():
        if path is not None and same_file(path, model):
            raise OutputError(f"{path}: {opt} names the model of this run; choose another {opt}")


def check_outputs(
    spec: SourceSpec, *, output: Path | None, summary: Path | None, save: Path | None, model: Path | None = None
) -> None:
    """Before any work: no two outputs on one file, none on an input or the ``model``, a ``--summary`` and a
    ``--save`` that can be written."""
    from edge_runtime.annotate import VIDEO_SAVE_SUFFIXES

    save_video = save is not None and save.suffix.lower() in VIDEO_SAVE_SUFFIXES
    named = {"--output": output, "--summary": summary, "--save": save if save_video else None}
    check_distinct_outputs(named)
    check_not_an_input(spec, named, save_folder=None if save_video else save)
    if model is not None:
        check_not_the_model(model, named)
    if summary is not None:
        check_summary_target(summary)
    if save is not None:
        check_save_target(save)
        if not save_video:
            check_save_folder_holds_no_parts(save)


def check_save_folder_holds_no_parts(folder: Path) -> None:
    """Refuse a ``--save`` folder that holds images other than annotated pictures (``--source line/p7.png --save
    ok_parts/``): the annotated pictures landed among the parts, and the next run over that folder judged them as
    parts (a defective part's red-framed picture, "defective 0.99996", in the folder of good ones), exit 0.
    Pictures an earlier run saved (``000012_part.jpg``) may stay: the run says so and numbers its own beside them."""
    from edge_runtime.annotate import SAVED_NAME
    from edge_runtime.preprocess import IMAGE_SUFFIXES

    try:
        with os.scandir(folder) as it:
            part = next((e.name for e in it if not e.name.startswith(".") and not SAVED_NAME.fullmatch(e.name)
                         and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES), None)  # fmt: skip
    except OSError:
        return  # not there yet (made by the saver), or not a folder (check_save_target says so)
    if part is not None:
        raise OutputError(f"{folder}: --save names a folder that holds images of parts ({printable(part)}), not "
                          "annotated pictures; the next run over it would judge the annotated pictures as parts: "
                          "choose an empty folder for --save")  # fmt: skip
