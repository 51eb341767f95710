"""Write a run's results: Markdown (stdout), JSON (a list of rows), CSV named after the hardware."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.config import SEED_MODEL, TORCH_PROVIDER, Row, Section
from benchmarks.onnx_bench import MAP_SUFFIX
from benchmarks.runner import BenchResult
from edge_runtime.cpu_quota import threads_for
from edge_runtime.summary import plural

Column = tuple[str, Callable[[Row], object]]
INFERENCE_TITLE = (
    "Inference (preprocessed batch in, scores out; vs seed = origin network's p50 / this p50 at the same batch "
    "and threads, same run)"
)

INFERENCE_COLUMNS: list[Column] = [
    ("model", lambda r: r.model),
    ("precision", lambda r: r.precision),
    ("provider", lambda r: r.provider),
    ("threads", lambda r: r.threads),
    ("batch", lambda r: r.batch),
    ("p50 ms", lambda r: r.p50_ms),
    ("p90 ms", lambda r: r.p90_ms),
    ("p99 ms", lambda r: r.p99_ms),
    ("mean ms", lambda r: r.mean_ms),
    ("images/s", lambda r: r.throughput),
    ("runs", lambda r: r.runs),  # --quick's p99 of 5 calls at batch 8 is their slowest, and read as a p99 of many
    ("vs seed", lambda r: f"{r.vs_seed:g}x" if r.vs_seed else None),
    ("size MiB", lambda r: r.model_size_mb),
    ("load ms", lambda r: r.load_ms),
    ("peak RSS MiB", lambda r: r.peak_rss_mb),
    ("file", lambda r: r.file),  # two INT8 models gave two identical "defectnet | int8" rows
]
E2E_COLUMNS: list[Column] = [
    ("what", lambda r: r.section),
    ("model", lambda r: r.model),
    ("precision", lambda r: r.precision),
    ("provider", lambda r: r.provider),
    ("threads", lambda r: r.threads),
    ("p50 ms/image", lambda r: r.p50_ms),
    ("p90 ms/image", lambda r: r.p90_ms),
    ("p99 ms/image", lambda r: r.p99_ms),
    ("images/s", lambda r: r.throughput),
    ("runs", lambda r: r.runs),
    ("images", lambda r: r.n_images),
    ("peak RSS MiB", lambda r: r.peak_rss_mb),
    ("file", lambda r: r.file),
]
STAGE_COLUMNS: list[Column] = [
    ("stage", lambda r: r.note),
    ("precision", lambda r: r.precision),
    ("provider", lambda r: r.provider),
    ("threads", lambda r: r.threads),
    ("p50 ms", lambda r: r.p50_ms),
    ("p99 ms", lambda r: r.p99_ms),
    ("runs", lambda r: r.runs),
    ("file", lambda r: r.file),  # two INT8 files: two "inference | int8 | cpu | 1" rows, either file's
]
LIVE_COLUMNS: list[Column] = [
    ("model", lambda r: r.model),
    ("precision", lambda r: r.precision),
    ("provider", lambda r: r.provider),
    ("threads", lambda r: r.threads),
    ("camera FPS", lambda r: r.fps_target),
    ("capture-to-result p50 ms", lambda r: r.p50_ms),
    ("p99 ms", lambda r: r.p99_ms),
    ("results/s", lambda r: r.throughput),
    ("frames captured", lambda r: r.frames_captured),
    ("frames dropped", lambda r: r.frames_dropped),
    ("file", lambda r: r.file),
]
ACCURACY_COLUMNS: list[Column] = [
    ("model", lambda r: r.model),
    ("precision", lambda r: r.precision),
    ("file", lambda r: r.file),
    ("images", lambda r: r.n_images),
    ("accuracy", lambda r: r.accuracy),
    ("defect recall", lambda r: r.recall),
    ("specificity", lambda r: r.specificity),
    ("note", lambda r: r.note),
]


def cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(rows: Sequence[Row], columns: list[Column]) -> str:
    """A Markdown table of ``rows``."""
    head = "| " + " | ".join(name for name, _ in columns) + " |"
    rule = "|" + "|".join(" --- " for _ in columns) + "|"
    body = ["| " + " | ".join(cell(get(r)) for _, get in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run


def quota_note(quota: float | None, cores: int) -> str:
    """The CPU quota where it allows fewer cores than the affinity: rows with more threads than it are throttled.

    >>> quota_note(1.0, 2)
    ' under a CPU quota of 1 core (rows with more threads are throttled; edge-infer defaults to 1)'
    >>> quota_note(None, 2), quota_note(4.0, 2)
    ('', '')
    """
    auto = threads_for(quota, cores, cores)
    if quota is None or auto is None:
        return ""
    return f" under {auto.why} (rows with more threads are throttled; edge-infer defaults to {auto.count})"


def hardware_markdown(result: BenchResult) -> str:
    hw = result.hardware
    lines = [
        f"- CPU: {hw.cpu}, {hw.cores} usable cores{quota_note(hw.cpu_quota, hw.cores)}; instruction sets: "
        f"{', '.join(hw.isa) or 'none detected'}",
        f"- OS: {hw.os}; Python {hw.python}, numpy {hw.numpy}, OpenCV {hw.opencv}",
        f"- onnxruntime {hw.onnxruntime}; providers available: {', '.join(hw.providers)}",
    ]
    return "\n".join(lines)


def to_markdown(result: BenchResult, targets: Sequence[Target] = ()) -> str:
    """The whole report as Markdown: hardware, targets, then one table per section."""
    by = {s: [r for r in result.rows if r.section == s.value] for s in Section}
    parts = [f"# edge-bench: {result.hardware.cpu}, {result.hardware.cores} cores", "", hardware_markdown(result)]
    share = result.others_cpu_share
    if share is not None:
        parts += [f"- other processes during the run: {100 * share:.0f}% of the machine's CPU time"]
    if share is not None and share > BUSY_SHARE:
        parts = [busy_line(share), "", *parts]
    if result.interrupted:  # the Targets table was scored from the partial rows ("**no**" for rows never timed)
        parts = [interrupted_line(len(result.rows)), "", *parts]
        targets = [replace(t, measured="-", met=None) for t in targets]
    if result.command:
        parts += ["", f"Command: `{result.command}` ({result.seconds:.0f} s)"]
    if targets:
        parts += ["", "## Targets", "", targets_table(targets, interrupted=result.interrupted)]
    sections = [
        (Section.INFERENCE, INFERENCE_TITLE, INFERENCE_COLUMNS),
        (Section.FILE, "End to end: file -> verdict (read, decode, preprocess, infer; per image)", E2E_COLUMNS),
        (Section.STAGE, "Where file -> verdict time goes (one image, stage by stage)", STAGE_COLUMNS),
        (Section.LIVE, "Live: synthetic camera, newest frame only", LIVE_COLUMNS),
        (Section.ACCURACY, "Accuracy on --data", ACCURACY_COLUMNS),
    ]
    for section, title, columns in sections:
        rows = by[section] + (by[Section.FOLDER] if section is Section.FILE else [])
        if rows:
            parts += ["", f"## {title}", "", table(rows, columns)]
    if result.skipped:
        parts += ["", "## Skipped", "", *[f"- {s}" for s in result.skipped]]
    return "\n".join(parts) + "\n"


BUSY_SHARE = 0.10  # other processes' share of the CPU above which a run's timings are called inflated


def busy_line(share: float) -> str:
    return (
        f"warning: other processes took {100 * share:.0f}% of the machine's CPU time during this run, so its "
        "timings are inflated; compare rows of this run only, or rerun on a quiet machine"
    )


def interrupted_line(n_rows: int) -> str:
    """The first line of an interrupted run's Markdown."""
    return f"interrupted: {plural(n_rows, 'row')} of a partial run; targets not scored"


def targets_table(targets: Sequence[Target], *, interrupted: bool = False) -> str:
    lines = ["| target | goal | measured | met |", "| --- | --- | --- | --- |"]
    verdict = {True: "yes", False: "**no**", None: "not measured (run interrupted)" if interrupted else "not measured"}
    lines += [f"| {t.name} | {t.goal} | {t.measured} | {verdict[t.met]} |" for t in targets]
    return "\n".join(lines)


def _best(rows: Sequence[Row], section: Section, *, batch: int | None = None, key: str = "p50_ms") -> Row | None:
    """The INT8 ONNX row of a section with the best value of ``key`` over thread counts."""
    cands = [
        r
        for r in rows
        if r.section == section.value
        and r.precision == "int8"
        and r.provider != TORCH_PROVIDER
        and not r.model.endswith(MAP_SUFFIX)
        and (batch is None or r.batch == batch)
        and getattr(r, key) is not None
    ]
    if not cands:
        return None
    return max(cands, key=lambda r: r.throughput) if key == "throughput" else min(cands, key=lambda r: r.p50_ms)


def _where(r: Row, *, with_file: bool = False) -> str:
    """Where a target's figure was timed: the best over providers (and files) was named by its thread count alone,
    so a CUDA or another INT8 file's figure read as the CPU's, of the shipped model."""
    where = f"{r.provider}, {r.threads} thread{'s' if r.threads > 1 else ''}"
    return f"{where}, {r.file}" if with_file and r.file else where


def _int8_files(rows: Sequence[Row]) -> set[str]:
    return {r.file for r in rows if r.precision == "int8" and r.provider != TORCH_PROVIDER}


def is_origin(r: Row) -> bool:
    """The origin notebook's measurement: the seed network in PyTorch eager. An ONNX export of the seed network
    (onnxruntime) filled the "origin (seed, torch eager)" target with a figure of another runtime."""
    return r.model == SEED_MODEL and r.provider == TORCH_PROVIDER and r.section == Section.INFERENCE.value


def issue_targets(rows: Sequence[Row]) -> list[Target]:
    """The goals of issue 5 for the INT8 model, each at its best provider and thread count (named in "measured", with
    the file where the run timed several INT8 files)."""
    inf = _best(rows, Section.INFERENCE, batch=1)
    f2v = _best(rows, Section.FILE)
    folder = _best(rows, Section.FOLDER, key="throughput")
    seed = next((r for r in rows if inf and is_origin(r) and r.batch == 1 and r.threads == inf.threads), None)
    several = len(_int8_files(rows)) > 1

    def where(r: Row) -> str:
        return _where(r, with_file=several)

    targets = [
        Target("INT8 inference, batch 1, p50", "<= 0.5 ms", "-", None),
        Target("file -> verdict (INT8), p50", "<= 1.5 ms", "-", None),
        Target("folder throughput (INT8)", ">= 1000 images/s", "-", None),
        Target("origin (seed, torch eager) p50 / INT8 p50, batch 1", ">= 60x", "-", None),
    ]
    if inf:
        targets[0] = replace(targets[0], measured=f"{inf.p50_ms:.3f} ms ({where(inf)})", met=inf.p50_ms <= 0.5)
    if f2v:
        targets[1] = replace(targets[1], measured=f"{f2v.p50_ms:.3f} ms ({where(f2v)})", met=f2v.p50_ms <= 1.5)
    if folder:
        measured = f"{folder.throughput:.0f} images/s ({where(folder)})"
        targets[2] = replace(targets[2], measured=measured, met=folder.throughput >= 1000)
    if inf and seed:
        ratio = seed.p50_ms / inf.p50_ms
        measured = f"{ratio:.0f}x ({seed.p50_ms:.1f} ms / {inf.p50_ms:.3f} ms, {where(inf)})"
        targets[3] = replace(targets[3], measured=measured, met=ratio >= 60)
    return targets + map_cost_targets(rows)


def map_cost_targets(rows: Sequence[Row]) -> list[Target]:
    """Issue 10: the localisation map adds at most 20% to INT8 batch-1 latency (p50), per thread count: the
    ``+map`` rows (both outputs fetched) against the single-output INT8 model of the same run."""
    out, several = [], len(_int8_files(rows)) > 1
    for m in (r for r in rows if r.model.endswith(MAP_SUFFIX) and r.precision == "int8" and r.batch == 1):
        lean = [
            r
            for r in rows
            if r.section == m.section and r.precision == "int8" and r.batch == 1 and r.threads == m.threads
            and r.provider == m.provider and r.file == m.file and not r.model.endswith(MAP_SUFFIX)
            and "defect_map" not in r.note
        ]  # fmt: skip
        if not lean or m.p50_ms is None or lean[0].p50_ms is None:
            continue
        ratio = m.p50_ms / lean[0].p50_ms
        measured = (
            f"{100 * (ratio - 1):+.0f}% ({m.p50_ms:.3f} / {lean[0].p50_ms:.3f} ms, {_where(m, with_file=several)})"
        )
        out.append(Target("localisation map cost, INT8 batch 1, p50", "<= +20%", measured, ratio <= 1.2))
    return out


def interrupted_path(path: Path) -> Path:
    """Where an interrupted run writes what would have gone to ``path``: ``x.json`` -> ``x.interrupted.json``.
    A partial run wrote over the last complete JSON, CSV and PNG (with no row at all: ``[]``)."""
    return path.with_name(f"{path.stem}.interrupted{path.suffix}")


def json_text(rows: Sequence[Row], *, interrupted: bool = False) -> str:
    """A JSON list of rows, every row with every field. ``interrupted``: an object instead, ``{"interrupted": true,
    "note": ..., "rows": [...]}``, so that no reader takes the partial rows for a complete run."""
    data: object = [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.to_dict().items()} for r in rows
    ]
    if interrupted:
        data = {"interrupted": True, "note": interrupted_line(len(rows)), "rows": data}
    return json.dumps(data, indent=1, allow_nan=False) + "\n"


def csv_path(json_path: Path, slug: str) -> Path:
    """The CSV beside the JSON, named after it and the hardware: ``bench-amd-epyc-2c.csv`` for ``bench.json``. Two
    result sets in one folder (``fp32.json``, ``int8.json``) keep a CSV each: the second replaced the first's.

    >>> csv_path(Path("results/int8.json"), "amd-epyc-2c").name
    'int8-amd-epyc-2c.csv'
    """
    return json_path.parent / f"{json_path.stem}-{slug}.csv"


def csv_text(rows: Sequence[Row], *, interrupted: bool = False) -> str:
    """One line per row; ``interrupted``: with a last column ``interrupted``, ``true`` on every row."""
    buf = io.StringIO(newline="")
    extra = {"interrupted": "true"} if interrupted else {}
    writer = csv.DictWriter(buf, fieldnames=[*Row.keys(), *extra])
    writer.writeheader()
    writer.writerows(r.to_dict() | extra for r in rows)
    return buf.getvalue()
