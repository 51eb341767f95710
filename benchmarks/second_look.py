"""What the looks near the threshold cost: the same model with both (as ``edge-infer`` runs), with the second look
only, and with one view, interleaved in one process.

    python -m benchmarks.second_look --data ../shared/data/casting
    python -m benchmarks.second_look --data DIR --model m.onnx --threads 2 --rounds 6

On a shared machine two separate benchmark runs can differ by more than a look costs, so the settings alternate
round by round (in turn, then in reverse) on the same files: a whole-folder pass (``edge-infer``'s pipeline,
images/s) and file -> verdict for every file one at a time (p50, p99). It also reports the share of items that
took the second look (a mirrored inference) and the symmetry look (the part's asymmetry measured) and, where the
images are labelled, the verdicts of each setting. Markdown on stdout; JSON with
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
from edge_runtime.cli_support import Command, GivenPath, debug_option, echo_first, friendly_errors, version_option
from edge_runtime.errors import DataError, OutputError, exit_codes_help
from edge_runtime.metrics import binary_metrics, nearest_rank
from edge_runtime.model import EdgeModel, Provider, RuntimeConfig
from edge_runtime.model import model_path as model_file
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
    symmetry_look: bool = False
    symmetry_measured: float = 0.0  # share of items whose part symmetry was measured

    @property
    def name(self) -> str:
        if self.symmetry_look:
            return "second look + symmetry look" if self.second_look else "symmetry look"
        return "second look" if self.second_look else "one view"


# (second look, symmetry look): as edge-infer runs, without the symmetry look, one view
SETTINGS = ((True, True), (True, False), (False, False))


def one_by_one(model: EdgeModel, paths: list[Path]) -> tuple[float, float]:
    """file -> verdict for each file in turn (read, decode, frame, check, infer): p50 and p99 in ms."""
    times = []
    for p in paths:
        t0 = time.perf_counter()
        x, _, part = model.input_for_verdict(read_image(p))
        model.predict_inputs(x[None], parts=[part])
        times.append(time.perf_counter() - t0)
    return nearest_rank(times, 50) * 1000, nearest_rank(times, 99) * 1000  # as edge-infer reports them


def measure(
    model_path: Path, paths: list[Path], labels: list[int] | None, *, threads: int, rounds: int
) -> list[Setting]:
    """Verdicts, then ``rounds`` interleaved timing rounds; one :class:`Setting` per entry of :data:`SETTINGS`."""
    models = {
        key: EdgeModel(
            model_path,
            RuntimeConfig(provider=Provider.CPU, threads=threads, second_look=key[0], symmetry_look=key[1]),
        )
        for key in SETTINGS
    }
    out = {key: Setting(key[0], [], [], [], 0.0, symmetry_look=key[1]) for key in models}
    for key, m in models.items():  # warm-up, and the verdicts
        preds = folder_verdicts(m, [str(p) for p in paths])
        out[key].looked_twice = m.second_looks / len(paths)
        out[key].symmetry_measured = m.symmetry_looks / len(paths)
        if labels is not None:
            kept = [(y, p.score) for y, p in zip(labels, preds, strict=True) if p is not None]
            counts = binary_metrics([y for y, _ in kept], [v for _, v in kept], m.info.threshold)
            out[key].missed_defects, out[key].false_alarms = int(counts["fn"]), int(counts["fp"])
    for r in range(rounds):
        for key in SETTINGS if r % 2 == 0 else SETTINGS[::-1]:
            m, s = models[key], out[key]
            t0 = time.perf_counter()
            folder_verdicts(m, [str(p) for p in paths])
            s.folder_images_per_s.append(len(paths) / (time.perf_counter() - t0))
            p50, p99 = one_by_one(m, paths)
            s.file_p50_ms.append(p50)
            s.file_p99_ms.append(p99)
    return [out[key] for key in SETTINGS]


def markdown(model: Path, settings: list[Setting], *, n: int, threads: int, rounds: int) -> str:
    both, second, one = settings
    med = lambda v: float(np.median(v))  # noqa: E731
    lines = [
        f"# The looks' cost: {model.name}, {n} images, {threads} thread(s), {rounds} interleaved rounds",
        "",
        "| setting | items looked at twice | symmetry measured | folder images/s (median) "
        "| file -> verdict p50 / p99 ms (median) | missed defects | false alarms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in settings:
        missed, alarms = ("-" if v is None else v for v in (s.missed_defects, s.false_alarms))
        lines.append(
            f"| {s.name} | {100 * s.looked_twice:.1f}% | {100 * s.symmetry_measured:.1f}% | "
            f"{med(s.folder_images_per_s):.0f} | {med(s.file_p50_ms):.3f} / {med(s.file_p99_ms):.3f} | {missed} | "
            f"{alarms} |"
        )

    def ratio(a: Setting, b: Setting) -> str:
        # the median of the rounds' own ratios: each round times both settings back to back, so a slow spell of
        # the shared machine cancels out (the ratio of the medians mixes rounds)
        def paired(x: list[float], y: list[float]) -> float:
            return med([u / v for u, v in zip(x, y, strict=True)])

        return (
            f"folder throughput x{paired(a.folder_images_per_s, b.folder_images_per_s):.3f}, "
            f"file -> verdict p50 x{paired(a.file_p50_ms, b.file_p50_ms):.3f}"
        )

    lines += [
        "",
        f"Symmetry look (with the second look) / second look alone: {ratio(both, second)}. Second look / one view: "
        f"{ratio(second, one)} (medians of the rounds' ratios). All at the model's threshold, which was chosen with "
        "the second look.",
    ]
    return "\n".join(lines)


@click.command(
    cls=Command,
    help="The cost and effect of the looks near the threshold: the same model with both (as edge-infer runs), "
    "with the second look only, and with one view, interleaved in one process.\n\n"
    + exit_codes_help(0, 1, 2, 3, 4, 7, 130),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--data", required=True, type=GivenPath(path_type=Path), help="DIR/<class>/ or DIR/test/<class>/.")
@click.option("--model", "model_name", type=click.Path(dir_okay=False), default=None,
              help="ONNX model, or int8 / fp32 for a shipped one [default: the bundled INT8].")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--rounds", type=click.IntRange(min=2), default=4, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write JSON.")
@version_option
@debug_option
@friendly_errors
def main(*, data: Path, model_name: str | None, threads: int, rounds: int, json_path: Path | None,
         debug: bool) -> None:  # fmt: skip
    model_path = model_file(model_name)  # None: the bundled INT8; a bare int8 / fp32: a shipped one
    try:
        found = datasets.list_labelled(datasets.find_class_folders(data, positive="def_front"))
        paths, labels = [Path(p) for p in found.paths], list(found.labels)
    except DataError:
        paths, labels = datasets.list_images(data) if data.is_dir() else [], None
    if not paths:
        raise DataError(f"{data}: no images found; pass --data DIR with images (DIR/<class>/ for verdict counts)")
    if json_path is not None:  # its folder made and tried now: it failed after the whole measurement
        from benchmarks.preflight import check_outputs

        check_outputs({"--json": json_path}, {"--model": model_path}, data)
    settings = measure(model_path, paths, labels, threads=threads, rounds=rounds)
    lost = echo_first(markdown(model_path, settings, n=len(paths), threads=threads, rounds=rounds))
    if json_path is not None:
        from edge_runtime.atomic import atomic_write_text

        try:  # whole or not at all: a full disk had left an empty file in place of the last one
            atomic_write_text(json_path, json.dumps([asdict(s) | {"name": s.name} for s in settings], indent=1) + "\n")
        except OSError as exc:
            raise OutputError(f"{json_path}: cannot write ({exc.strerror or exc}); choose another --json path") from exc
    if lost is not None:
        raise lost


if __name__ == "__main__":
    main()
