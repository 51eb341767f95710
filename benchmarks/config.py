"""The benchmark's configuration, its jobs (what one fresh worker process measures) and its result rows."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from enum import Enum
from pathlib import Path

from edge_runtime.model import Provider


class Section(str, Enum):
    """What a row measures."""

    INFERENCE = "inference"  # session.run on a preprocessed batch (onnxruntime or torch eager)
    FILE = "file-to-verdict"  # one JPEG file -> read, decode, preprocess, infer, verdict
    FOLDER = "folder"  # a folder of files -> verdicts, decoding in parallel, inference batched
    STAGE = "stage"  # one stage of file-to-verdict, to show where the time goes
    LIVE = "live"  # synthetic camera at a fixed FPS, newest frame only: capture-to-result latency
    ACCURACY = "accuracy"  # verdicts vs labels on --data


class JobKind(str, Enum):
    ONNX = "onnx"
    TORCH = "torch"
    END_TO_END = "e2e"
    LIVE = "live"
    ACCURACY = "accuracy"


TORCH_PROVIDER = "torch-eager"
SEED_MODEL = "seed"


@dataclass(frozen=True)
class BenchConfig:
    """Everything ``edge-bench`` measures and where it writes; built by the CLI, passed to :func:`run_benchmark`."""

    models: tuple[Path, ...]
    providers: tuple[Provider, ...] = (Provider.CPU,)
    threads: tuple[int, ...] = (1,)
    batches: tuple[int, ...] = (1, 8, 32)
    warmup: int = 50
    runs: int = 1000  # timed calls at batch 1; larger batches get runs // batch (at least min_runs)
    min_runs: int = 20
    torch: bool = True  # also time PyTorch eager when torch is importable
    torch_runs: int = 100
    torch_batches: tuple[int, ...] = (1, 8, 32)
    checkpoint: Path | None = None  # DefectNet weights for the torch rows (None: random init)
    e2e_runs: int = 500
    live_fps: tuple[int, ...] = (30, 60, 120)
    live_seconds: float = 5.0
    data: Path | None = None
    json_path: Path | None = None
    plot: bool = True
    quick: bool = False


@dataclass(frozen=True)
class Job:
    """One unit of work for a fresh worker process (one model, provider and thread count: its batches, or its
    live rates, run in turn there, each row's peak memory measured from when that configuration started)."""

    kind: JobKind
    threads: int
    model: str = ""  # ONNX file path, or arch name for torch jobs
    provider: str = Provider.CPU.value
    batches: tuple[int, ...] = (1,)
    warmup: int = 10
    runs: int = 100
    min_runs: int = 5
    images: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()  # class name of each image, accuracy jobs only
    checkpoint: str = ""
    fps: tuple[int, ...] = ()
    seconds: float = 1.0
    sha256: str = ""  # the model file's content when edge-bench began: a worker refuses a file replaced since

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        d = json.loads(text)
        tuples = {f.name for f in fields(cls) if str(f.type).startswith("tuple")}
        d = {k: tuple(v) if k in tuples else v for k, v in d.items()}
        d["kind"] = JobKind(d["kind"])
        return cls(**d)


@dataclass
class Row:
    """One line of the results; every row has every field (None where it does not apply)."""

    section: str
    model: str
    precision: str
    provider: str
    batch: int
    threads: int
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    throughput: float | None = None  # images per second
    runs: int | None = None
    vs_seed: float | None = None  # origin network's p50 / this p50, same batch and threads, same run
    model_size_mb: float | None = None
    load_ms: float | None = None
    peak_rss_mb: float | None = None
    fps_target: int | None = None
    frames_captured: int | None = None
    frames_dropped: int | None = None
    accuracy: float | None = None
    recall: float | None = None
    specificity: float | None = None
    n_images: int | None = None
    file: str = ""
    note: str = ""
    cpu: str = ""  # filled in by the runner: the machine this row was measured on
    onnxruntime: str = ""
    # The share of the machine's CPU time other processes took during the whole run, in %: the JSON and CSV are kept
    # and compared without the Markdown, whose warning line alone said that a run's figures were inflated.
    others_cpu_pct: float | None = None

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict:
        return asdict(self)
