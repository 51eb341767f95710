"""How a model holds up when the camera changes: ``python -m benchmarks.robustness``.

A second camera station sees the part re-framed, at another zoom, under other light and focus. This applies
such changes (OpenCV/numpy, no torch) to labelled images and scores each model at its own threshold: accuracy,
missed defects, false alarms and AUROC per perturbation. It is a stress test with synthetic changes, not a
substitute for images from the real second station, but it shows which changes a model does not survive.

>>> [p.name for p in PERTURBATIONS][:3]
['none', 'zoom 0.7', 'zoom 0.85']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np

from benchmarks.robustness_report import report, report_partial
from benchmarks.station_conditions import STATION_CONDITIONS
from edge_runtime import datasets
from edge_runtime.cli_support import Command, GivenPath, debug_option, friendly_errors, version_option
from edge_runtime.errors import DataError, ModelError, OutputError, UsageError, exit_codes_help, require_extra
from edge_runtime.metrics import binary_metrics
from edge_runtime.model import MODELS_DIR, EdgeModel, Provider, RuntimeConfig, model_path
from edge_runtime.preprocess import read_image

Transform = Callable[[np.ndarray], np.ndarray]


def _background(im: np.ndarray) -> int:
    return int(np.median(np.concatenate([im[:3].ravel(), im[-3:].ravel(), im[:, :3].ravel(), im[:, -3:].ravel()])))


def affine(
    im: np.ndarray, *, zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0), rot: float = 0.0
) -> np.ndarray:
    """Zoom about the centre, rotate (degrees) and shift (fractions of the size); new border = background."""
    h, w = im.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rot, zoom)
    m[0, 2] += shift[0] * w
    m[1, 2] += shift[1] * h
    return cv2.warpAffine(im, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=_background(im))


def wider_frame(im: np.ndarray, *, scale: float = 1.6) -> np.ndarray:
    """The part in a larger 4:3 field of view, as a 640x480-style camera framing it loosely would see it."""
    h, w = im.shape
    big_h, big_w = int(h * scale), int(w * scale * 4 / 3)
    canvas = np.full((big_h, big_w), _background(im), np.uint8)
    top, left = (big_h - h) // 2, (big_w - w) // 2
    canvas[top : top + h, left : left + w] = im
    return canvas


def _gain(im: np.ndarray, field: np.ndarray) -> np.ndarray:
    return np.clip(im.astype(np.float32) * field, 0, 255).astype(np.uint8)


def gradient(im: np.ndarray, *, lo: float = 0.6, hi: float = 1.3) -> np.ndarray:
    return _gain(im, np.linspace(lo, hi, im.shape[1], dtype=np.float32)[None, :])


def vignette(im: np.ndarray, *, strength: float = 0.5) -> np.ndarray:
    h, w = im.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (2 * (max(h, w) / 2) ** 2)
    return _gain(im, 1.0 - strength * r2)


def gamma(im: np.ndarray, *, g: float) -> np.ndarray:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g, 0, 255).astype(np.uint8)
    return lut[im]


def jpeg(im: np.ndarray, *, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else im


def noise(im: np.ndarray, *, std: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(im + rng.normal(0, std, im.shape), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Perturbation:
    name: str
    apply: Transform


PERTURBATIONS: tuple[Perturbation, ...] = (
    Perturbation("none", lambda im: im),
    Perturbation("zoom 0.7", lambda im: affine(im, zoom=0.7)),
    Perturbation("zoom 0.85", lambda im: affine(im, zoom=0.85)),
    Perturbation("zoom 1.15", lambda im: affine(im, zoom=1.15)),
    Perturbation("zoom 1.3", lambda im: affine(im, zoom=1.3)),
    Perturbation("shift 10%", lambda im: affine(im, shift=(0.1, -0.1))),
    Perturbation("shift 15%", lambda im: affine(im, shift=(0.15, 0.0))),
    Perturbation("rotate 37 deg", lambda im: affine(im, rot=37)),
    Perturbation("wider 4:3 frame", wider_frame),
    Perturbation("half exposure", lambda im: (im * 0.5).astype(np.uint8)),
    Perturbation("brighter +60", lambda im: np.clip(im.astype(np.int16) + 60, 0, 255).astype(np.uint8)),
    Perturbation("low contrast", lambda im: (128 + (im.astype(np.float32) - 128) * 0.5).astype(np.uint8)),
    Perturbation("gamma 0.6", lambda im: gamma(im, g=0.6)),
    Perturbation("gamma 1.6", lambda im: gamma(im, g=1.6)),
    Perturbation("light gradient", gradient),
    Perturbation("vignetting", vignette),
    Perturbation("blur 5x5", lambda im: cv2.GaussianBlur(im, (5, 5), 0)),
    Perturbation("sensor noise", lambda im: noise(im, std=8.0)),
    Perturbation("JPEG q30", lambda im: jpeg(im, quality=30)),
    # What a real station's raw camera shows (benchmarks/station_conditions.py).
    *(Perturbation(c.name, c.apply) for c in STATION_CONDITIONS),
)
CONDITION_SETS = {
    "all": PERTURBATIONS,
    "camera": tuple(p for p in PERTURBATIONS if not p.name.startswith("station:")),
    "station": tuple(p for p in PERTURBATIONS if p.name == "none" or p.name.startswith("station:")),
}


def examples_png(path: Path, image: np.ndarray, perturbations: tuple[Perturbation, ...], tile: int = 224) -> None:
    """One example of each condition, side by side and labelled, so a person can judge how real they look."""
    tiles = []
    for p in perturbations:
        t = cv2.cvtColor(cv2.resize(p.apply(image), (tile, tile), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
        label = p.name.removeprefix("station: ")
        lines = [label[i : i + 28] for i in range(0, len(label), 28)]
        cv2.rectangle(t, (0, 0), (tile, 6 + 14 * len(lines)), (0, 0, 0), -1)
        for k, text in enumerate(lines):
            cv2.putText(t, text, (4, 15 + 14 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 255, 255), 1, cv2.LINE_AA)
        tiles.append(t)
    cols = 4
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
    grid = np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])
    try:
        written = cv2.imwrite(str(path), grid)
    except cv2.error:  # no image writer for the suffix (x.txt): OpenCV raises instead of returning False
        written = False
    if not written:
        raise OutputError(f"{path}: cannot write the example grid; choose another --examples path (a .png)")


def labelled_images(data: Path, positive: str = "def_front") -> tuple[list[Path], np.ndarray]:
    """Images of ``data/<class>/`` (or ``data/test/<class>/``); label 1 for the positive folder. Stray files
    (a notes.txt) are passed over, as everywhere in defect-edge (edge_runtime.datasets)."""
    classes = datasets.find_class_folders(data, positive=positive)
    found = datasets.list_labelled(classes)
    return found.paths, np.array(found.labels)


def validation_images(checkpoint: Path, data: Path) -> tuple[list[Path], np.ndarray]:
    """The validation images a checkpoint lists (``data/train/<file>``, or ``data/<file>``), label 1 for its
    positive class folder: the images its threshold was chosen on. Reading a checkpoint needs the train extra."""
    require_extra("torch")
    from train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    listed, classes = ckpt.data.val_files, ckpt.data.class_dirs
    # an older or hand-made checkpoint lists none: no --data would help, the file is what to change (exit 4)
    if not (isinstance(listed, list) and listed and all(isinstance(f, str) and f for f in listed)):
        raise ModelError(f"{checkpoint}: lists no validation images; pass a best.pt written by train-model")
    root = data / "train" if (data / "train").is_dir() else data
    files = [root / f for f in listed]
    missing = [f for f in files if not f.is_file()]
    if not files or missing:
        raise DataError(
            f"{root}: {len(missing)} of the {len(files)} validation images {checkpoint.name} lists are not there; "
            "pass --data with the dataset it was trained on"
        )
    positive = classes[1] if isinstance(classes, list) and len(classes) == 2 else "def_front"
    return files, np.array([int(Path(f).parts[0] == positive) for f in listed])


def score_model(model: EdgeModel, images: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """Each image's score as ``edge-infer`` gives it: second look and symmetry look included, where the model
    asks for them and ``model.cfg`` allows."""
    return np.array([p.score for i in range(0, len(images), batch) for p in model.predict_batch(images[i : i + batch])])


def run(
    models: list[Path],
    data: Path,
    *,
    positive: str,
    limit: int | None,
    perturbations: tuple[Perturbation, ...] = PERTURBATIONS,
    second_look: bool = True,
    symmetry_look: bool = True,
    soften: bool = True,
    validation_of: Path | None = None,
) -> list[dict]:
    """One row per (model, perturbation): accuracy, missed defects, false alarms, AUROC at the model's threshold,
    and the share of images the model's station check flags as unlike its training images (null without a
    station profile). ``validation_of``: a checkpoint; its validation images instead of ``data``'s test images."""
    files, labels = validation_images(validation_of, data) if validation_of else labelled_images(data, positive)
    if limit:
        idx = sample(files, limit)
        files, labels = [files[i] for i in idx], labels[idx]
    originals = [read_image(f) for f in files]
    cfg = RuntimeConfig(provider=Provider.CPU, second_look=second_look, symmetry_look=symmetry_look, soften=soften)
    loaded = [EdgeModel(p, cfg) for p in models]
    rows: list[dict] = []
    try:
        for pert in perturbations:
            changed = [pert.apply(im) for im in originals]
            for path, model in zip(models, loaded, strict=True):
                m = binary_metrics(labels, score_model(model, changed), model.info.threshold)
                rows.append(
                    {"model": path.name, "perturbation": pert.name, "n": m["n"], "accuracy": m["accuracy"],
                     "missed_defects": m["fn"], "false_alarms": m["fp"], "auroc": m["auroc"],
                     "flagged_unlike_training": flagged_share(model, changed)}
                )  # fmt: skip
    except KeyboardInterrupt:
        raise PartialRun(rows) from None
    return rows


class PartialRun(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP during :func:`run`, with the rows scored before it (they had been lost, minutes of
    scoring, with "error: interrupted")."""

    def __init__(self, rows: list[dict]) -> None:
        super().__init__()
        self.rows = rows


def flagged_share(model: EdgeModel, images: list[np.ndarray]) -> float | None:
    """The share of images the station check flags (None: the model carries no station profile)."""
    if model.station_profile is None:
        return None
    return float(np.mean([bool(model.input_and_check(im)[1]) for im in images]))


def sample(files: list, limit: int | None) -> list[int]:
    """The indices of ``--limit``'s seeded sample (all of them without one): the same for a run and its saved
    images."""
    if not limit:
        return list(range(len(files)))
    return [int(i) for i in np.random.default_rng(0).permutation(len(files))[:limit]]


def save_images(
    out: Path, data: Path, positive: str, perturbations: tuple[Perturbation, ...], *, limit: int | None = None
) -> None:
    """Each condition's images as PNG under ``out/<condition>/<class>/``, the class folders as in ``data``;
    ``limit``: the run's seeded sample only (it was ignored: every image was written)."""
    files, _ = labelled_images(data, positive)
    paths = [Path(files[i]) for i in sample(files, limit)]
    for pert in perturbations:
        folder = out / re.sub(r"[^A-Za-z0-9.-]+", "_", pert.name).strip("_")
        for path in paths:
            target = folder / path.parent.name / (path.stem + ".png")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                ok = cv2.imwrite(str(target), pert.apply(read_image(path)))
            except (OSError, cv2.error) as exc:
                raise OutputError(f"{target}: cannot write ({exc}); choose another --save-images folder") from exc
            if not ok:
                raise OutputError(f"{target}: OpenCV could not write it; choose another --save-images folder")
        click.echo(f"wrote {len(paths)} images to {folder}")


@click.command(
    cls=Command,
    help="Score models on labelled images under camera changes (zoom, shift, light, blur, noise, JPEG) at each "
    "model's own threshold; Markdown on stdout.\n\n" + exit_codes_help(0, 1, 2, 3, 4, 7, 8, 130),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--data", required=True, type=GivenPath(path_type=Path), help="DIR/<class>/ or DIR/test/<class>/.")
@click.option("--model", "models", multiple=True, type=click.Path(),  # as typed: a bare int8 / fp32 is bundled
              help="ONNX model, or int8 / fp32 for a bundled one (repeatable) [default: the bundled FP32 and INT8 "
              "models].")  # fmt: skip
@click.option(
    "--positive-class",
    "--positive",
    "positive",
    default="def_front",
    show_default=True,
    help="Folder name of the defective class (the name train-model uses; --positive is the same).",
)
@click.option("--limit", type=click.IntRange(min=2), default=None, help="Use a seeded sample of N images.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write rows as JSON.")
@click.option("--set", "which", type=click.Choice(sorted(CONDITION_SETS)), default="all", show_default=True,
              help="camera: generic camera changes; station: a raw station camera's conditions.")  # fmt: skip
@click.option("--examples", type=click.Path(path_type=Path), default=None,
              help="Write a PNG with one example of each condition (the first defective image).")  # fmt: skip
@click.option("--second-look/--no-second-look", default=True, show_default=True,
              help="Score as edge-infer does, with the model's second look near its threshold; off: one view "
              "(the model's threshold was chosen with both).")  # fmt: skip
@click.option("--validation-of", "validation_of", type=click.Path(path_type=Path), default=None,
              help="Score the validation images this checkpoint lists (under DATA/train/) instead of the test "
              "images: where the thresholds and looks were chosen. Needs the train extra.")  # fmt: skip
@click.option("--symmetry-look/--no-symmetry-look", default=True, show_default=True,
              help="Score as edge-infer does, with the part's symmetry measured just below the threshold where the "
              "model asks for it; off: the network's views alone.")  # fmt: skip
@click.option("--soften/--no-soften", default=True, show_default=True,
              help="Score as edge-infer does, with an input sharper than any training image softened to their "
              "detail; off: every input as the crop gives it.")  # fmt: skip
@click.option("--only", default=None, help="Only the conditions whose name contains this text.")
@click.option("--save-images", "save_dir", type=click.Path(path_type=Path), default=None,
              help="Write each condition's images as PNG to DIR/<condition>/<class>/ instead of scoring (to time "
              "edge-infer or edge-bench on a station's world).")  # fmt: skip
@version_option
@debug_option
@friendly_errors
def main(*, debug: bool, **opts: Any) -> None:
    from edge_runtime.stopping import command_signals

    with command_signals():  # SIGTERM and SIGHUP as Ctrl-C: they ended the run by the signal (exit 143), no line
        _main(**opts)


def _main(*, data: Path, models: tuple[str, ...], positive: str, limit: int | None, json_path: Path | None,
          which: str, examples: Path | None, second_look: bool, symmetry_look: bool, soften: bool,
          validation_of: Path | None, only: str | None, save_dir: Path | None) -> None:  # fmt: skip
    chosen = [model_path(m) for m in models] or sorted(MODELS_DIR.glob("*.onnx"))
    perturbations = tuple(p for p in CONDITION_SETS[which] if only is None or only in p.name)
    if not perturbations:
        raise UsageError(f"--only {only!r} matches no condition of --set {which}; see the names in robustness.md")
    _check_outputs(data, chosen, validation_of, json_path=json_path, examples=examples, save_dir=save_dir)
    ignored = {"--json": json_path, "--examples": examples, "--model": models, "--validation-of": validation_of,
               "--no-second-look": not second_look, "--no-symmetry-look": not symmetry_look,
               "--no-soften": not soften}  # fmt: skip
    if save_dir is not None and (dropped := [name for name, v in ignored.items() if v]):
        # --json was left unwritten, exit 0, without a word
        raise UsageError(f"--save-images writes the images and scores nothing, so {', '.join(dropped)} would be "
                         "ignored; run once with --save-images and once without")  # fmt: skip
    if save_dir is not None:
        save_images(save_dir, data, positive, perturbations, limit=limit)
        return
    if examples is not None:
        files, labels = labelled_images(data, positive)
        examples_png(examples, read_image(files[int(np.argmax(labels))]), perturbations)
    try:
        rows = run(chosen, data, positive=positive, limit=limit, perturbations=perturbations,
                   second_look=second_look, symmetry_look=symmetry_look, soften=soften,
                   validation_of=validation_of)  # fmt: skip
    except PartialRun as stopped:
        report_partial(stopped.rows, json_path)
        raise KeyboardInterrupt from None  # error: interrupted, exit 130
    report(rows, json_path)


def _check_outputs(
    data: Path,
    models: list[Path],
    validation_of: Path | None,
    *,
    json_path: Path | None,
    examples: Path | None,
    save_dir: Path | None,
) -> None:
    """Before any work: no output may replace a model or checkpoint of the run, or land among the ``--data`` images
    (``--json`` onto the model wrote 183 bytes of JSON over it; ``--save-images`` inside ``--data`` made a third
    class folder there, and every later run on it failed)."""
    from benchmarks.preflight import check_outputs, inside_data
    from edge_runtime.output_checks import check_distinct_outputs

    named = {"--json": json_path, "--examples": examples}
    check_distinct_outputs(dict(named))
    inputs: dict[str, Path | None] = {f"--model {m}": m for m in models} | {"--validation-of": validation_of}
    for option, path in named.items():
        if path is not None:
            check_outputs({option: path}, inputs, data, option=option)
    if save_dir is not None and inside_data(save_dir, data):
        raise OutputError(
            f"{save_dir}: --save-images is inside --data {data}: its images would become part of the data set; "
            "choose another folder"
        )


if __name__ == "__main__":
    main()
