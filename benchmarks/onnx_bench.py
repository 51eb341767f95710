"""onnxruntime timings of a model file: session load, latency per batch size, size and peak memory."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence

import numpy as np

from benchmarks import timing
from benchmarks.config import Job, Row, Section
from benchmarks.timing import measure, peak_rss_mb, runs_for_batch
from edge_runtime.errors import ImageReadError, ModelError
from edge_runtime.model import EdgeModel, Provider, RuntimeConfig
from edge_runtime.preprocess import normalize, read_image, resize_to_input
from edge_runtime.providers import ORT_PROVIDER

MIB = 1024.0 * 1024.0
SHORT_PROVIDER = {name: p.value for p, name in ORT_PROVIDER.items()}
MAP_SUFFIX = "+map"  # model name of the rows that fetch the localisation map too


def short_provider(model: EdgeModel) -> str:
    """The provider that really runs the model (``cpu`` after a fallback), as ``--provider`` spells it."""
    return SHORT_PROVIDER.get(model.providers[0], model.providers[0])


def load_edge_model(job: Job, *, second_look: bool = True) -> tuple[EdgeModel, float]:
    """Open the session in this fresh process; returns the model and the load time in ms. ``second_look`` False:
    the network alone (the inference rows), without the runtime's second look near the threshold."""
    t0 = time.perf_counter()
    cfg = RuntimeConfig(provider=Provider(job.provider), threads=job.threads, second_look=second_look)
    model = EdgeModel(job.model, cfg)
    if job.sha256 and model.sha256 != job.sha256:
        model.close()
        raise ModelError(f"{job.model}: the model file changed while edge-bench ran (re-exported or replaced); "
                         "its later rows are not timed: rerun edge-bench once the file stays as it is")  # fmt: skip
    return model, (time.perf_counter() - t0) * 1000.0


def base_row(model: EdgeModel, section: Section, *, batch: int, threads: int, load_ms: float | None = None) -> Row:
    """The fields every row of this model shares."""
    changed = model.fell_back or bool(model.provider_note)
    note = f"asked for {model.cfg.provider.value}, ran on {model.providers[0]}" if changed else ""
    return Row(
        section=section.value,
        model=model.info.arch or model.path.stem,
        precision=model.info.precision.value,
        provider=short_provider(model),
        batch=batch,
        threads=threads,
        model_size_mb=round(model.path.stat().st_size / MIB, 3),
        load_ms=None if load_ms is None else round(load_ms, 2),
        file=model.path.name,
        note=note,
    )


def fill(row: Row, stats) -> Row:  # noqa: ANN001 - benchmarks.timing.Stats
    """Copy latency figures into a row (rounded: microseconds are the resolution that matters)."""
    row.p50_ms, row.p90_ms, row.p99_ms = round(stats.p50_ms, 4), round(stats.p90_ms, 4), round(stats.p99_ms, 4)
    row.mean_ms, row.throughput, row.runs = round(stats.mean_ms, 4), round(stats.throughput, 1), stats.runs
    row.peak_rss_mb = round(peak_rss_mb(), 1)
    if not timing.PEAK_PER_ROW:  # no /proc/self/clear_refs here (another OS, a locked-down container)
        row.note = ", ".join(filter(None, [row.note, "peak RSS since the worker started"]))
    return row


def resized_samples(paths: Sequence[str], model: EdgeModel, *, count: int | None = None) -> np.ndarray:
    """The sample images decoded and resized once: (N, size, size) uint8 (unreadable files are skipped); with
    ``count``, only the first ``count`` readable ones (the batches cycle through them: decoding all 715 of ``--data``
    for a batch of at most 32 put 35 MiB of unused pictures into every row's peak memory)."""
    out: list[np.ndarray] = []
    for p in paths:
        if count is not None and len(out) >= count:
            break
        try:
            out.append(resize_to_input(read_image(p), model.info.preprocess))
        except ImageReadError:
            continue
    if not out:
        out = [np.full((model.info.preprocess.size,) * 2, 128, np.uint8)]
    return np.stack(out)


def input_batch(resized: np.ndarray, batch: int, model: EdgeModel) -> np.ndarray:
    """A preprocessed batch of real images, cycling through the samples."""
    idx = np.arange(batch) % len(resized)
    return normalize(resized[idx], model.info.preprocess)


def onnx_inference_rows(job: Job) -> Iterator[Row]:
    """One row per batch size, ascending, each yielded once timed; each row's peak RSS is its own
    (benchmarks.timing.measure)."""
    model, load_ms = load_edge_model(job, second_look=False)  # the network alone; the look counts end to end
    resized = resized_samples(job.images, model, count=max(job.batches, default=1))
    for batch in sorted(job.batches):
        x = input_batch(resized, batch, model)
        stats = measure(
            lambda x=x: model.scores(x),
            warmup=job.warmup,
            runs=runs_for_batch(batch, runs=job.runs, min_runs=job.min_runs),
            items=batch,
        )
        row = base_row(model, Section.INFERENCE, batch=batch, threads=job.threads, load_ms=load_ms)
        if model.has_map:
            row.note = ", ".join(filter(None, [row.note, "has defect_map, P(defective) only fetched"]))
        row.note = ", ".join(filter(None, [row.note, fixed_batch_note(model, batch)]))
        yield fill(row, stats)
    if model.has_map:
        yield from map_rows(model, job, resized, load_ms)


def fixed_batch_note(model: EdgeModel, batch: int) -> str:
    """A model with a fixed batch runs a larger batch as several calls (EdgeModel splits it): say so on the row."""
    if model.max_batch is None or batch <= model.max_batch:
        return ""
    return f"fixed batch {model.max_batch}: run as {math.ceil(batch / model.max_batch)} calls"


def map_rows(model: EdgeModel, job: Job, resized: np.ndarray, load_ms: float) -> Iterator[Row]:
    """The cost of the localisation map: P(defective) and ``defect_map`` fetched together (``edge-infer
    --heatmap``), one row per batch size, model named ``<arch>+map``."""
    for batch in sorted(job.batches):
        x = input_batch(resized, batch, model)
        stats = measure(
            lambda x=x: model.run(x),
            warmup=job.warmup,
            runs=runs_for_batch(batch, runs=job.runs, min_runs=job.min_runs),
            items=batch,
        )
        row = base_row(model, Section.INFERENCE, batch=batch, threads=job.threads, load_ms=load_ms)
        row.model = f"{row.model}{MAP_SUFFIX}"
        row.note = ", ".join(filter(None, ["P(defective) and defect_map fetched", fixed_batch_note(model, batch)]))
        yield fill(row, stats)
