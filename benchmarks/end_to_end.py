"""File -> verdict: one image at a time, a whole folder, the stages in between, and accuracy on labels."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from benchmarks.config import Job, Row, Section
from benchmarks.onnx_bench import base_row, fill, load_edge_model
from benchmarks.timing import measure
from edge_runtime import symmetry
from edge_runtime.detail import SOFTEN_SIGMAS, sharpness, softened
from edge_runtime.errors import DataError
from edge_runtime.infer import InferConfig
from edge_runtime.inputs import iter_files
from edge_runtime.metrics import binary_metrics
from edge_runtime.model import EdgeModel, Prediction
from edge_runtime.preprocess import decode_image, normalize, read_image, resize_to_input
from edge_runtime.summary import plural
from edge_runtime.verdicts import batches, predict_items

FOLDER_BATCH = InferConfig.batch_size
DECODE_WORKERS = InferConfig.workers


def folder_verdicts(model: EdgeModel, paths: Sequence[str]) -> list[Prediction | None]:
    """What ``edge-infer FOLDER`` does, minus its outputs: decode on worker threads, infer in batches.

    Unreadable files give ``None``. OpenCV releases the GIL while decoding and resizing, so the decoding
    threads really run beside inference.
    """
    # As edge-infer runs by default: the station check is measured on every item, and the part's square cut
    # for the symmetry look.
    prepare = model.input_for_verdict
    items = iter_files([Path(p) for p in paths], prepare, keep_original=False, workers=DECODE_WORKERS)
    out: list[Prediction | None] = []
    for batch in batches(items, FOLDER_BATCH):
        out += predict_items(model, batch)
    return out


def file_rows(model: EdgeModel, job: Job, load_ms: float) -> list[Row]:
    """Read, decode, preprocess (with the station check, as edge-infer runs by default) and infer one file at a
    time, cycling through the images in a seeded random order: in their listed order (one class after the other) a
    run shorter than the folder timed all of the first class and part of the second."""
    order = np.random.default_rng(0).permutation(len(job.images))
    paths = itertools.cycle([job.images[i] for i in order])

    def one() -> object:
        x, _, part = model.input_for_verdict(read_image(next(paths)))
        return model.predict_inputs(x[None], parts=[part])

    model.second_looks = model.symmetry_looks = 0
    stats = measure(one, warmup=job.warmup, runs=job.runs)
    row = fill(base_row(model, Section.FILE, batch=1, threads=job.threads, load_ms=load_ms), stats)
    row.n_images = min(len(job.images), job.runs)  # the distinct images among the timed calls
    looked = second_look_note(model, job.warmup + job.runs)
    row.note = f"{row.n_images} of {len(job.images)} images timed" + (f"; {looked}" if looked else "")
    return [row]


def second_look_note(model: EdgeModel, items: int) -> str:
    """How many of the items scored took the model's second look (a second inference, mirrored), and how many
    its symmetry look (the part's asymmetry measured)."""
    notes = []
    if model.info.second_look is not None and model.cfg.second_look and items > 0:
        notes.append(f"second look taken for {100.0 * model.second_looks / items:.1f}% of items")
    if model.looks_at_symmetry and items > 0:
        notes.append(f"symmetry look for {100.0 * model.symmetry_looks / items:.1f}%")
    return ", ".join(notes)


def stage_rows(model: EdgeModel, job: Job) -> Iterator[Row]:
    """The stages of file -> verdict timed one by one on the same image, to show where the time goes (each row
    yielded once timed)."""
    spec = model.info.preprocess
    path = Path(job.images[0])
    data = path.read_bytes()
    gray = decode_image(data)
    small = resize_to_input(gray, spec)
    x = normalize(small[None], spec)
    score = float(model.scores(x)[0])
    stages = {
        "read file": lambda: path.read_bytes(),
        "decode JPEG to gray": lambda: decode_image(data),
        "crop + resize": lambda: resize_to_input(gray, spec),
        "crop + resize + station check": lambda: model.input_and_check(gray),
        "... + part square (what edge-infer prepares)": lambda: model.input_for_verdict(gray),
        "normalize": lambda: normalize(small[None], spec),
        "inference": lambda: model.network_scores(x),
        "verdict": lambda: model.verdict(score, 0.0),
    }
    if model.info.second_look is not None and model.cfg.second_look:
        # Paid only by the items scored near the threshold: the mirrored inference and the averaging.
        near = np.array([model.info.threshold])
        stages["second look (items near the threshold)"] = lambda: model.second_look(x, near)
    if model.sharpness_limit is not None:
        # Paid only by the inputs sharper than any training image: a limit just under the mildest blur's sharpness
        # times the one blur and the one measure such an input takes (its own sharpness the station check has).
        once = sharpness(cv2.GaussianBlur(small, (0, 0), SOFTEN_SIGMAS[0]))
        stages["softening (inputs sharper than the training images)"] = lambda: softened(small, once, math.inf)
    part = model.input_for_verdict(gray, check=False)[2]
    if part is not None:
        # Paid only by the items just below the threshold: the part's asymmetry at the source's resolution.
        stages["symmetry look (items just below the threshold)"] = lambda: symmetry.peak(part)
    for name, fn in stages.items():
        row = fill(base_row(model, Section.STAGE, batch=1, threads=job.threads), measure(fn, warmup=5, runs=job.runs))
        row.note = name
        yield row


def folder_rows(model: EdgeModel, job: Job) -> list[Row]:
    """Whole-folder passes; latency columns are per image (pass time / images), throughput is images/s."""
    # A folder of fewer files than two batches timed the decoding pool's start-up, not throughput (702 images/s for
    # 3 files against 1769 for 715): such a folder is timed as its files repeated up to two batches.
    files = list(itertools.islice(itertools.cycle(job.images), max(len(job.images), 2 * FOLDER_BATCH)))
    passes = max(3, job.runs // len(files))
    model.second_looks = model.symmetry_looks = 0
    stats = measure(lambda: folder_verdicts(model, files), warmup=1, runs=passes, items=len(files))
    looked = second_look_note(model, (passes + 1) * len(files))
    row = fill(base_row(model, Section.FOLDER, batch=FOLDER_BATCH, threads=job.threads), stats)
    n = len(files)
    row.p50_ms, row.p90_ms, row.p99_ms = (round(v / n, 4) for v in (stats.p50_ms, stats.p90_ms, stats.p99_ms))
    row.mean_ms = round(stats.mean_ms / n, 4)
    row.n_images = n
    distinct = f" ({len(job.images)} distinct, repeated)" if n > len(job.images) else ""
    row.note = f"{passes} passes over {n} files{distinct}, batches of {FOLDER_BATCH}, {DECODE_WORKERS} decoding threads"
    row.note += f"; {looked}" if looked else ""
    return [row]


def end_to_end_rows(job: Job) -> Iterator[Row]:
    """File -> verdict, its stages and the folder pass, each row yielded once timed."""
    model, load_ms = load_edge_model(job)
    yield from file_rows(model, job, load_ms)
    yield from stage_rows(model, job)
    yield from folder_rows(model, job)


def accuracy_rows(job: Job) -> list[Row]:
    """Accuracy, defect recall and specificity at the model's own threshold on the labelled images."""
    model, load_ms = load_edge_model(job)
    known = set(model.info.class_names)
    unknown = sorted({c for c in job.classes if c not in known})
    if unknown:
        raise DataError(
            f"class folders {unknown} are neither of the model's classes {list(known)}; rename them or drop --data"
        )
    preds = folder_verdicts(model, job.images)
    kept = [(c, p) for c, p in zip(job.classes, preds, strict=True) if p is not None]
    labels = [int(c == model.info.positive_class) for c, _ in kept]
    m = binary_metrics(labels, [p.score for _, p in kept], model.info.threshold)
    row = base_row(model, Section.ACCURACY, batch=FOLDER_BATCH, threads=job.threads, load_ms=load_ms)
    row.accuracy, row.recall, row.specificity = (round(m[k], 4) for k in ("accuracy", "recall", "specificity"))
    row.n_images = m["n"]
    unreadable = len(preds) - len(kept)
    found = f"{plural(m['fn'], 'defect')} missed, {plural(m['fp'], 'false alarm')}"  # "1 false alarms"
    row.note = f"{found} at threshold {model.info.threshold:.4g}" + (
        f"; {unreadable} unreadable files skipped" if unreadable else ""
    )
    return [row]
