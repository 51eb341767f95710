"""What the second look costs: the same model with and without it, interleaved in one process.

    python -m benchmarks.second_look --data ../shared/data/casting
    python -m benchmarks.second_look --data DIR --model m.onnx --threads 2 --rounds 6

On a shared machine two separate benchmark runs can differ by more than the second look costs, so the two
settings alternate round by round (ABBA order) on the same files: a whole-folder pass (``edge-infer``'s pipeline,
images/s) and file -> verdict for every file one at a time (p50, p99). It also reports the share of items that
took the second look and, where the images are labelled, the verdicts both ways. Markdown on stdout; JSON with
``--json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import numpy as np

from benchmarks.end_to_end import folder_verdicts
from edge_runtime import datasets
from edge_runtime.cli_support import debug_option, friendly_errors
from edge_runtime.errors import EXIT_CODES_HELP, DataError, OutputError
from edge_runtime.metrics import binary_metrics
from edge_runtime.model import EdgeModel, Provider, RuntimeConfig, default_model_path
from edge_runtime.preprocess import read_image


@dataclass
class Setting:
    second_look: bool
    folder_images_per_s: list[float]
    file_p50_ms: list[float]
    file_p99_ms: list[float]
    looked_twice: float  # share of items scored a second time
    missed_defects: int | None = None
    false_alarms: int | None = None


def one_by_one(model: EdgeModel, paths: list[Path]) -> tuple[float, float]:
    """file -> verdict for each file in turn (read, decode, frame, check, infer): p50 and p99 in ms."""
    times = []
    for p in paths:
        t0 = time.perf_counter()
        x, _ = model.input_and_check(read_image(p))
        model.predict_inputs(x[None])
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def measure(
    model_path: Path, paths: list[Path], labels: list[int] | None, *, threads: int, rounds: int
) -> list[Setting]:
    """Verdicts, then ``rounds`` interleaved timing rounds; returns [with the second look, one view]."""
    models = {
        look: EdgeModel(model_path, RuntimeConfig(provider=Provider.CPU, threads=threads, second_look=look))
        for look in (True, False)
    }
    out = {look: Setting(look, [], [], [], 0.0) for look in models}
    for look, m in models.items():  # warm-up, and the verdicts
        preds = folder_verdicts(m, [str(p) for p in paths])
        out[look].looked_twice = m.second_looks / len(paths)
        if labels is not None:
            kept = [(y, p.score) for y, p in zip(labels, preds, strict=True) if p is not None]
            counts = binary_metrics([y for y, _ in kept], [v for _, v in kept], m.info.threshold)
            out[look].missed_defects, out[look].false_alarms = int(counts["fn"]), int(counts["fp"])
    for r in range(rounds):
        for look in (True, False) if r % 2 == 0 else (False, True):
            m, s = models[look], out[look]
            t0 = time.perf_counter()
            folder_verdicts(m, [str(p) for p in paths])
            s.folder_images_per_s.append(len(paths) / (time.perf_counter() - t0))
            p50, p99 = one_by_one(m, paths)
            s.file_p50_ms.append(p50)
            s.file_p99_ms.append(p99)
    return [out[True], out[False]]


def markdown(model: Path, settings: list[Setting], *, n: int, threads: int, rounds: int) -> str:
    on, off = settings
    med = lambda v: float(np.median(v))  # noqa: E731
    lines = [
        f"# The second look's cost: {model.name}, {n} images, {threads} thread(s), {rounds} interleaved rounds",
        "",
        "| setting | items looked at twice | folder images/s (median) | file -> verdict p50 / p99 ms (median) "
        "| missed defects | false alarms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in settings:
        name = "second look" if s.second_look else "one view"
        missed, alarms = ("-" if v is None else v for v in (s.missed_defects, s.false_alarms))
        lines.append(
            f"| {name} | {100 * s.looked_twice:.1f}% | {med(s.folder_images_per_s):.0f} | "
            f"{med(s.file_p50_ms):.3f} / {med(s.file_p99_ms):.3f} | {missed} | {alarms} |"
        )
    lines += [
        "",
        f"Second look / one view: folder throughput x{med(on.folder_images_per_s) / med(off.folder_images_per_s):.3f}, "
        f"file -> verdict p50 x{med(on.file_p50_ms) / med(off.file_p50_ms):.3f}. Both at the model's threshold, "
        "which was chosen with the second look.",
    ]
    return "\n".join(lines)


@click.command(
    help="The second look's cost and effect: the same model with and without it, interleaved in one process.\n\n"
    + EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--data", required=True, type=click.Path(path_type=Path), help="DIR/<class>/ or DIR/test/<class>/.")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="ONNX model [default: the bundled INT8].")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--rounds", type=click.IntRange(min=2), default=4, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write JSON.")
@debug_option
@friendly_errors
def main(*, data: Path, model_path: Path | None, threads: int, rounds: int, json_path: Path | None,
         debug: bool) -> None:  # fmt: skip
    model_path = model_path or default_model_path()
    try:
        found = datasets.list_labelled(datasets.find_class_folders(data, positive="def_front"))
        paths, labels = [Path(p) for p in found.paths], list(found.labels)
    except DataError:
        paths, labels = datasets.list_images(data) if data.is_dir() else [], None
    if not paths:
        raise DataError(f"{data}: no images found; pass --data DIR with images (DIR/<class>/ for verdict counts)")
    settings = measure(model_path, paths, labels, threads=threads, rounds=rounds)
    click.echo(markdown(model_path, settings, n=len(paths), threads=threads, rounds=rounds))
    if json_path is not None:
        try:
            json_path.write_text(json.dumps([asdict(s) for s in settings], indent=1) + "\n")
        except OSError as exc:
            raise OutputError(f"{json_path}: cannot write ({exc.strerror or exc}); choose another --json path") from exc


if __name__ == "__main__":
    main()
