"""``export_onnx(checkpoint, out, cfg)``: checkpoint -> checked, self-describing ONNX file (FP32, INT8 or FP16)."""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch", as train's modules give
require_extra("onnx", "train")

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime.atomic import missing_folders, remove_empty
from edge_runtime.errors import DataError, GateError, OutputError, printable
from edge_runtime.metrics import json_safe
from edge_runtime.model import EdgeModel, Provider, RuntimeConfig
from edge_runtime.model_info import ModelInfo, Precision, SecondLook, SymmetryLook
from edge_runtime.preprocess import CropMode, PreprocessSpec, normalize
from edge_runtime.stopping import StopSignals
from edge_runtime.summary import plural
from export import cam, graph, images, quantize
from export.checks import Measured, check_dynamic_batch, cpu_name, measure, torch_scores
from export.config import FEW_CALIB_IMAGES, MIN_CALIB_IMAGES, MIN_PARITY_IMAGES, PARITY_TOLERANCE, ExportConfig
from export.out_lock import held_output
from export.preflight import check_before_work, unfinished_training
from export.report import apply_gate, fp16_note, onnx_metrics, summary_table

if TYPE_CHECKING:
    from train.checkpoint import Checkpoint

Log = Callable[[str], None]


def default_checkpoint() -> Path:
    """The committed default model, ``train/default_model/best.pt``."""
    import train

    return Path(train.__file__).resolve().parent / "default_model" / "best.pt"


def default_output(checkpoint: Path, precision: Precision) -> Path:
    """Beside the checkpoint, named by precision: ``runs/x/best.pt`` -> ``runs/x/best_int8.onnx``; for a checkpoint
    inside an installed package (the committed default model of a non-editable install), the current folder: the
    model was written into site-packages, where nobody looks for it and the next install removes it.

    >>> default_output(Path("runs/x/best.pt"), Precision.INT8).as_posix()
    'runs/x/best_int8.onnx'
    >>> default_output(Path("/v/lib/python3.11/site-packages/train/default_model/best.pt"), Precision.FP32).as_posix()
    'best_fp32.onnx'
    """
    name = f"{checkpoint.stem}_{precision.value}.onnx"
    installed = any(part in ("site-packages", "dist-packages") for part in checkpoint.parts)
    return Path(name) if installed else checkpoint.with_name(name)


def model_info(ckpt: Checkpoint, precision: Precision, cfg: ExportConfig) -> ModelInfo:
    """The metadata entry: preprocessing, labels, threshold and provenance, all from the checkpoint."""
    import onnx
    import onnxruntime
    import torch

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    producer = {
        "defect_edge": version("defect-edge"),
        "exporter": f"torch.onnx.export (TorchScript), opset {cfg.opset}",
        "torch": str(torch.__version__),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "checkpoint_epoch": str(ckpt.epoch if ckpt.epoch is not None else ""),
    }
    return ModelInfo(
        preprocess=ckpt.preprocess,
        class_names=ckpt.class_names,
        threshold=ckpt.threshold,
        positive_class=ckpt.positive_class,
        precision=precision,
        arch=ckpt.arch,
        model_version=graph.weights_version(ckpt),
        data_fingerprint=ckpt.data_fingerprint,
        metrics=json_safe(dict(ckpt.metrics)),
        producer=producer,
        second_look=SecondLook.from_dict(ckpt.second_look) if ckpt.second_look else None,
        symmetry_look=SymmetryLook() if cfg.symmetry_look and ckpt.preprocess.crop is CropMode.PART else None,
    )


def train_folder(ckpt: Any) -> str:
    """The recorded training images' folder, for the lines that say what calibration and the station profile were
    made of: after ``train-model --init`` it went unsaid whether they were the station's images or those of the model
    it started from (they are the fine-tuning run's own)."""
    root = images.recorded_root(ckpt)
    return printable(str(root / "train")) if root is not None else "the recorded dataset"


def station_profile(ckpt: dict[str, Any], spec: PreprocessSpec, log: Log) -> dict[str, Any]:
    """The training images' input statistics, for the runtime's station check (empty when they are not here)."""
    from edge_runtime.station_check import profile_images

    paths = images.recorded_train_files(ckpt)
    if not paths:
        # a warning, not a note: edge-infer cannot then flag a camera unlike the training images (every record
        # read "unlike_training": null, as if each item looked like them)
        # where they were and how to point at them: a moved dataset was told only "export where they are"
        log(
            f"warning: station check: the training images this checkpoint lists are not here (recorded under "
            f"{printable(str(ckpt.data.root or '?'))}), so the model carries no station profile and edge-infer cannot "
            "flag a camera unlike them; set DEFECT_EDGE_DATA to their dataset folder, or export where they are"
        )
        return {}
    prof = profile_images(paths, spec)
    log(f"station check: input statistics of {prof.images} training images in {train_folder(ckpt)} recorded in the "
        "metadata")  # fmt: skip
    return prof.to_dict()


def calibration_batch(
    fp32: EdgeModel, ckpt: dict[str, Any], cfg: ExportConfig, log: Log, evals: images.LabelledImages | None = None
) -> np.ndarray:
    """Decoded and preprocessed exactly as on the device; too few images is an error, few a warning, images of
    ``evals`` among them a warning."""
    paths, decoded = images.calibration_images(ckpt, cfg.calib_data, count=cfg.calib_count, seed=cfg.seed, log=log)
    where = cfg.calib_data or f"the checkpoint's training images in {train_folder(ckpt)}"
    if len(decoded) < MIN_CALIB_IMAGES:
        raise DataError(
            f"{where}: only {plural(len(decoded), 'readable calibration image')} (need at least {MIN_CALIB_IMAGES}, "
            f"better {FEW_CALIB_IMAGES}+); pass --calib-data DIR with more images"
        )
    if len(decoded) < FEW_CALIB_IMAGES and cfg.precision is Precision.INT8:
        log(f"warning: only {len(decoded)} calibration images; {FEW_CALIB_IMAGES}+ give steadier INT8 ranges")
    log(f"calibration: {len(decoded)} images from {where}")
    if evals is not None and cfg.calib_data is not None:
        images.warn_if_calibrated_on_evals(cfg.calib_data, paths, evals, log)
    return fp32.prepare(decoded)


def eval_images(ckpt: dict[str, Any], cfg: ExportConfig, log: Log) -> images.LabelledImages | None:
    """The labelled images of the accuracy check (``--eval-data``, else the recorded test split)."""
    folder = cfg.eval_data or images.default_eval_folder(ckpt)
    if folder is None:
        return None
    evals = images.load_eval_images(folder, ckpt, log)
    leaked = "unknown" if evals.leaked is None else str(int(evals.leaked.sum()))
    log(f"evaluation: {len(evals)} labelled images from {printable(str(evals.root))} ({leaked} byte-identical to "
        "training images)")  # fmt: skip
    if evals.leaked is not None and len(evals) and int(evals.leaked.sum()) * 2 > len(evals):
        # --eval-data DIR/train: the gate "passed" on the images the model learnt, without a word
        log(f"warning: {printable(str(evals.root))}: {int(evals.leaked.sum())} of the {len(evals)} eval images are "
            "training images of this checkpoint; the accuracy check is no test there: pass --eval-data with images "
            "it was not trained on")  # fmt: skip
    for label, name in enumerate(ckpt.class_names):
        if not (evals.labels == label).any():  # the gate passed on OK images alone, missed defects unmeasured
            log(
                f"warning: {printable(str(evals.root))}: no {name} images among the {len(evals)} eval images; the "
                f"accuracy check cannot see {'a missed defect' if label else 'a false alarm'}: pass --eval-data with "
                "both classes"
            )
    return evals


def _leaked(evals: images.LabelledImages) -> int | None:
    """How many eval images are byte-identical to training images (None: unknown, no training file list)."""
    return None if evals.leaked is None else int(evals.leaked.sum())


def warn_once(log: Log) -> Log:
    """``log`` that says each warning once: the Grad-CAM map and the INT8 calibration draw the same images, and an
    unreadable one was named twice.

    >>> said = []; say = warn_once(said.append); say("warning: x"); say("warning: x"); say("ok"); say("ok"); said
    ['warning: x', 'ok', 'ok']
    """
    seen: set[str] = set()

    def once(msg: str) -> None:
        if msg.startswith("warning: "):
            if msg in seen:
                return
            seen.add(msg)
        log(msg)

    return once


def export_onnx(
    checkpoint: str | os.PathLike[str] | None,
    out: str | os.PathLike[str] | None,
    cfg: ExportConfig,
    *,
    log: Log = print,
    given: frozenset[str] = frozenset(),
) -> Path:
    """Export, check and (for INT8/FP16) convert a checkpoint; returns the written ONNX path. ``given``: the
    options typed on the command line; one this export would ignore is a usage error.

    >>> export_onnx(None, None, ExportConfig(precision=Precision.INT8))  # doctest: +SKIP
    PosixPath('.../train/default_model/best_int8.onnx')
    """
    # str paths from a script: "'str' object has no attribute 'is_dir'"
    checkpoint = None if checkpoint is None else Path(checkpoint)
    out = None if out is None else Path(out)
    # SIGTERM ends the export like Ctrl-C: the temporary folder is removed and nothing half-written is left;
    # a second SIGTERM does not cut that clean-up short.
    # the folders made for --out (``--out new/m.onnx``), removed again when the export fails or is stopped: a
    # failed gate "wrote nothing" but left them, empty
    try:
        made = missing_folders(out.parent) if out is not None else []
    except OSError:  # a name too long to look up: ensure_writable says so, exit 7
        made = []
    with StopSignals() as stop:
        try:
            return _export(checkpoint, out, cfg, log=warn_once(log), given=given, stop=stop)
        except BaseException:
            stop.closing = True
            remove_empty([f for f in made if os.path.lexists(f)])  # those it could make
            raise
        finally:
            stop.closing = True


def _export(
    checkpoint: Path | None, out: Path | None, cfg: ExportConfig, *, log: Log, given: frozenset[str], stop: StopSignals
) -> Path:
    from train.checkpoint import load_checkpoint, model_from_checkpoint

    graph.check_opset(cfg.opset)
    checkpoint = checkpoint or default_checkpoint()
    ckpt = load_checkpoint(checkpoint)
    net = model_from_checkpoint(ckpt)
    out = out or default_output(checkpoint, cfg.precision)
    check_before_work(checkpoint, ckpt, net, out, cfg, given)
    if unfinished := unfinished_training(checkpoint, ckpt):
        log(f"warning: {unfinished}")
    runtime = RuntimeConfig(provider=Provider.CPU, threads=cfg.threads)
    try:
        with held_output(out), _work_folder(stop) as work:
            written = _export_in(work, ckpt, net, out, cfg, runtime, log=log)
            stop.closing = True  # the model is in place: a stop now only counts (it said "interrupted", exit 130)
        return written
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        raise OutputError(
            f"{_temp_folder()}: cannot write the export's working files ({exc.strerror or exc}); free space "
            "there, raise the file-size limit (ulimit -f), or point TMPDIR at another disk"
        ) from exc


def _temp_folder() -> str:
    """The temporary folder, for a message: ``tempfile.gettempdir()`` raises itself when none is usable."""
    try:
        return tempfile.gettempdir()
    except OSError:
        return os.environ.get("TMPDIR") or "the temporary folder (TMPDIR, /tmp, /var/tmp)"


@contextlib.contextmanager
def _work_folder(stop: StopSignals) -> Iterator[Path]:
    """The export's working folder, made and removed where a stop signal cannot cut in (a SIGTERM during its
    removal at the end of an export left it behind in the temporary folder, half removed)."""
    folder = None
    try:
        with stop.atomic():  # a stop while it is made is raised at the block's end, with the folder to remove
            try:
                folder = tempfile.TemporaryDirectory(prefix="defect-edge-export-")
            except OSError as exc:
                raise OutputError(
                    f"{_temp_folder()}: cannot make the export's working folder ({exc.strerror or exc}); point "
                    "TMPDIR at a writable disk"
                ) from exc
        yield Path(folder.name)
    finally:
        if folder is not None:
            with stop.atomic():
                folder.cleanup()


def _export_in(
    work: Path,
    ckpt: Any,
    net: Any,
    out: Path,
    cfg: ExportConfig,
    runtime: RuntimeConfig,
    *,
    log: Log,
) -> Path:
    fp32_info, map_head = _fp32_info(net, ckpt, cfg, log)
    spec = fp32_info.preprocess
    graph.export_graph(net, spec, work / "raw.onnx", opset=cfg.opset, map_head=map_head)
    graph.write_with_metadata(work / "raw.onnx", work / "fp32.onnx", fp32_info)
    fp32 = EdgeModel(work / "fp32.onnx", runtime)
    evals = eval_images(ckpt, cfg, log)  # None for INT8/FP16 only with --force (preflight.check_data_reachable)
    # the symmetry look needs each image's part at its own resolution (the model input is too small for it),
    # cut as edge-infer cuts it, only for the images the station check flags: framed once with the inputs
    eval_batch, parts = None, None
    if evals is not None:
        inputs, parts = fp32.inputs_and_parts(evals.images)
        eval_batch = normalize(inputs, spec)
    needs_calib = cfg.precision is Precision.INT8 or eval_batch is None
    calib = calibration_batch(fp32, ckpt, cfg, log, evals) if needs_calib else None
    parity = eval_batch if eval_batch is not None else calib
    check_dynamic_batch(fp32, parity, tol=1e-5)
    ref = torch_scores(net, parity)
    common = {
        "parity_batch": parity,
        "torch_ref": ref,
        "evals": evals,
        "eval_batch": eval_batch,
        "eval_parts": parts,
    }
    rows = [measure(fp32, latency_runs=cfg.latency_runs, **common)]
    check_parity(rows[0], cfg, log)
    if map_head is not None:  # the map must match torch too
        ref_maps = cam.torch_maps(cam.map_wrapper(net, map_head), parity)
        cam.check_map_parity(cam.onnx_maps(fp32, parity), ref_maps, force=cfg.force, log=log)
    final, info = work / "fp32.onnx", fp32_info
    if cfg.quantized:
        final, info = convert(work, fp32_info, cfg, calib)
        rows.append(measure(EdgeModel(final, runtime), latency_runs=cfg.latency_runs, **common))
    _report_and_gate(rows, cfg, log)
    # which images "official" names: --eval-data DIR/train stored training accuracy under that word
    scored = {} if evals is None else {"eval_data": str(evals.root), "eval_leaked": json_safe(_leaked(evals))}
    metrics = {**info.metrics, "onnx": {**onnx_metrics(rows[-1]), **scored}}
    graph.write_with_metadata(final, out, replace(info, metrics=metrics))
    return out


def _fp32_info(net: Any, ckpt: Checkpoint, cfg: ExportConfig, log: Log) -> tuple[ModelInfo, Any]:
    """The FP32 model's metadata, with its map (a trained head or a Grad-CAM) and station profile, and the map."""
    with_map = cam.wants_map(net, cfg.with_map, arch=ckpt.arch, log=log)
    info = replace(model_info(ckpt, Precision.FP32, cfg), outputs=cam.outputs_for(with_map=with_map))
    map_head = cam.map_head_for(net, ckpt, cfg, info.preprocess, log) if with_map else None
    if map_head is not None:
        info = replace(
            info,
            producer={**info.producer, "defect_map": map_head.describe()},
            map_full_scale=getattr(map_head, "full_scale", None),
        )
    return replace(info, station=station_profile(ckpt, info.preprocess, log)), map_head


def _report_and_gate(rows: list[Measured], cfg: ExportConfig, log: Log) -> None:
    """The summary table and latency line; for INT8/FP16 the accuracy gate (a GateError unless --force)."""
    log(summary_table(rows))
    threads = f"{cfg.threads} CPU thread(s)" if cfg.threads else "onnxruntime's default threads"
    log(f"latency: median of {cfg.latency_runs} batch-1 runs, {threads}, {cpu_name()}, inference only")
    if cfg.precision is Precision.FP16:
        log(fp16_note(rows[0], rows[1]))
    if cfg.quantized:
        apply_gate(rows[0], rows[1], max_drop_pp=cfg.max_drop_pp, force=cfg.force, log=log)


def check_parity(row: Measured, cfg: ExportConfig, log: Log) -> None:
    """FP32 must match torch to ``PARITY_TOLERANCE`` on real images."""
    if row.n_parity < MIN_PARITY_IMAGES:
        log(f"warning: parity checked on only {row.n_parity} images (want {MIN_PARITY_IMAGES}+)")
    if row.max_diff <= PARITY_TOLERANCE:
        return
    msg = f"fp32 ONNX differs from torch by {row.max_diff:.2e} in P(defective) (limit {PARITY_TOLERANCE})"
    if not cfg.force:
        raise GateError(f"{msg}; report this, or pass --force to write it anyway")
    log(f"warning: {msg}; written anyway because of --force")


def convert(work: Path, fp32_info: ModelInfo, cfg: ExportConfig, calib: np.ndarray | None) -> tuple[Path, ModelInfo]:
    """INT8 or FP16 from the checked FP32 file, with the metadata entry naming the new precision."""
    info = replace(fp32_info, precision=cfg.precision)
    if cfg.precision is Precision.INT8:
        assert calib is not None
        how = f"static QDQ, per-channel weights, {cfg.scheme.value}, MinMax calibration on {len(calib)} images"
        n = cfg.float_convs_for(info.arch)
        how += f", first {n} convolution{'s' if n > 1 else ''} in float" if n else ""
        info = replace(info, producer={**info.producer, "quantization": how})
        raw = quantize.quantize_int8(
            work / "fp32.onnx", work / "q.onnx", calib, scheme=cfg.scheme, work=work, float_convs=n
        )
    else:
        raw = quantize.convert_fp16(work / "fp32.onnx", work / "q.onnx")
    dst = work / f"{cfg.precision.value}.onnx"
    graph.write_with_metadata(raw, dst, info)
    return dst, info
