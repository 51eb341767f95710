"""Load a defect-edge ONNX file and turn images into verdicts with onnxruntime (no torch).

>>> model = load_model()                      # the bundled INT8 model  # doctest: +SKIP
>>> model.predict(read_image("part.jpg"))     # doctest: +SKIP
Prediction(label='defective', score=0.998, defective=True, latency_ms=0.41)
"""

from __future__ import annotations

import functools
import hashlib
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_runtime import integrity, symmetry
from edge_runtime.batch_input import flag, image_chunks, image_list, model_batch
from edge_runtime.config import RuntimeConfig, api_config
from edge_runtime.cpu_quota import default_threads
from edge_runtime.detail import softened
from edge_runtime.errors import ModelError
from edge_runtime.item_input import item_input
from edge_runtime.metrics import logit
from edge_runtime.model_bytes import check_model_bytes
from edge_runtime.model_close import ClosesItsSession
from edge_runtime.model_file import (  # noqa: F401 - check_threads, threads_from_env, the shipped files: the CLI's
    DEFAULT_MODEL_FILES,
    MAX_MODEL_BYTES,
    MODELS_DIR,
    check_threads,
    default_model_path,
    json_object,
    model_path,
    read_model_bytes,
    threads_from_env,
)
from edge_runtime.model_info import (
    INPUT_NAME,
    MAP_OUTPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    ModelInfo,
    Precision,  # noqa: F401 - imported from here
    read_model_info,
)
from edge_runtime.model_line import model_line
from edge_runtime.model_pickle import OPENED_ATTRIBUTES  # noqa: F401 - imported from here
from edge_runtime.prediction import Prediction, ScoreError, recorded_score  # noqa: F401 - recorded_score: imported from here
from edge_runtime.preprocess import CropMode, normalize, not_finite_note, resize_to_input, stacked, to_uint8_gray
from edge_runtime.providers import Provider, provider_chain
from edge_runtime.session import check_io, open_session, probe
from edge_runtime.station_check import StationProfile
from edge_runtime.symmetry import PartPatch

# a part-centred model exported where its training images were not: items are never flagged, which is not "alike"


class EdgeModel(ClosesItsSession):
    """An onnxruntime session plus everything the ONNX file says about itself.

    At load the file is read once (a regular file only), its content hash checked against the one recorded at
    export, its metadata validated, and its inputs/outputs checked against the metadata; a zero batch is then
    run once to see that the outputs really have the promised shape. Every failure is a :class:`ModelError`.
    ``max_batch`` is 1 for a model exported with a fixed batch of one (callers then run items one by one).

    A model pickles as what rebuilds it (file, config, the hash of the bytes loaded), so that a process pool can
    take it: see :mod:`edge_runtime.model_pickle`. ``close()`` or a ``with`` block frees its session at once:
    see :mod:`edge_runtime.model_close`.
    """

    def __init__(self, path: str | Path, cfg: RuntimeConfig | None = None) -> None:
        self.path = Path(path)
        self.where = self.path.absolute()  # for another process: a relative path failed once the folder changed
        self.cfg = cfg or RuntimeConfig()
        check_threads(self.cfg.threads)
        data = read_model_bytes(self.path)
        check_model_bytes(data, self.path)  # a checkpoint, a file cut short, weights in another file: said as such
        self.sha256 = hashlib.sha256(data).hexdigest()  # what another process must find in the file (pickling)
        requested, self.provider_note = provider_chain(self.cfg.provider)
        # onnxruntime's own count ignores the affinity and a CPU quota: its spinning threads then fight for a core
        self.auto_threads = default_threads() if self.cfg.threads is None else None
        threads = self.cfg.threads or (self.auto_threads.count if self.auto_threads else None)
        self.session = open_session(data, self.path, requested, threads=threads, spin=self.cfg.spin)
        try:
            metadata = self.session.get_modelmeta().custom_metadata_map
        except Exception as exc:  # noqa: BLE001 - a damaged metadata string is not valid UTF-8
            raise ModelError(f"{self.path}: the model's metadata is damaged; re-export or re-download it") from exc
        recorded = json_object(metadata.get(METADATA_KEY, "{}"))
        self.verified = integrity.verify(data, recorded, METADATA_KEY, source=str(self.path))
        info = read_model_info(metadata, self.path)
        # on the spec too, so that preprocess(images, model.info.preprocess) softens as predict does
        self.info = replace(info, preprocess=replace(info.preprocess, sharpness_limit=_soften_limit(info, self.cfg)))
        self.second_looks = 0  # items scored a second time, mirrored, since load (see second_look)
        self.symmetry_looks = 0  # items whose part symmetry was measured, since load (see symmetry_look)
        self.symmetry_lifts = 0  # ... and turned defective by it
        self.max_batch = check_io(self.session, self.info, self.path)
        probe(self.session, self.info, self.path, self.max_batch)
        self.providers: list[str] = self.session.get_providers()
        self.fell_back = requested[0] != "CPUExecutionProvider" and self.providers[0] == "CPUExecutionProvider"

    def warn_if_fell_back(self, stream=None) -> None:  # noqa: ANN001
        stream = stream or sys.stderr  # looked up now: a redirected sys.stderr gets the warning
        if self.provider_note:
            print(f"WARNING: {self.provider_note}", file=stream)
        if self.fell_back:
            print(
                f"WARNING: asked for {self.cfg.provider.value} but onnxruntime runs {self.path.name} on "
                f"{', '.join(self.providers)}: GPU not used",
                file=stream,
            )

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """P(defective) for an already preprocessed float32 (N, C, H, W) batch (may hold NaN: see verdict),
        with the model's second look at the items near its threshold."""
        x = np.ascontiguousarray(model_batch(batch, self.info.preprocess, u8=False), dtype=np.float32)
        return self.second_look(x, self.network_scores(x))

    def network_scores(self, batch: np.ndarray) -> np.ndarray:
        """The network's own P(defective), one inference per item and no second look (parity checks, timing)."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if self.max_batch == 1 and len(x) > 1:
            return np.concatenate([self.network_scores(x[i : i + 1]) for i in range(len(x))])
        out = np.asarray(self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0])
        if out.size != len(x):
            raise ModelError(f"{self.path}: gave {out.size} scores for {len(x)} images; re-export the model")
        return out.astype(np.float64).reshape(-1)

    def second_look(self, batch: np.ndarray, first: np.ndarray) -> np.ndarray:
        """The items whose first score lies near the threshold, scored once more mirrored; their score becomes
        the mean of the two logits (:class:`~edge_runtime.model_info.SecondLook`). Others keep ``first``."""
        return self._second_look(batch, first)[0]

    def _second_look(self, batch: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`second_look`, and which items it scored again."""
        look, t = self.info.second_look, self.info.threshold
        near = np.zeros(len(first), bool)
        if look is None or not self.cfg.second_look or not 0.0 < t < 1.0 or len(first) == 0:
            return first, near
        z = logit(first)
        near = np.abs(z - logit(t)) < look.band_logit  # NaN scores are never near
        if not near.any():
            return first, near
        z_mirror = logit(self.network_scores(batch[near][..., ::-1]))
        out = first.copy()
        out[near] = 1.0 / (1.0 + np.exp(-(z[near] + z_mirror) / 2.0))
        self.second_looks += int(near.sum())
        return out, near

    @property
    def looks_at_symmetry(self) -> bool:
        """Whether verdicts near the threshold take the part's symmetry into account (model and config agree)."""
        return self.info.symmetry_look is not None and self.cfg.symmetry_look

    def symmetry_look(
        self, scores: np.ndarray, parts: Sequence[PartPatch | None] | None
    ) -> tuple[np.ndarray, list[float | None]]:
        """Lift the items whose score lies just below the threshold by their part's asymmetry
        (:class:`~edge_runtime.model_info.SymmetryLook`); the scores and each item's measured peak (None where
        not measured). ``parts``: each item's :func:`~edge_runtime.symmetry.part_patch` (None: part not found)."""
        look, t = self.info.symmetry_look, self.info.threshold
        if not self.looks_at_symmetry or parts is None:
            return scores, [None] * len(scores)
        out, peaks = symmetry.look(scores, parts, look, t)
        self.symmetry_looks += sum(p is not None for p in peaks)
        self.symmetry_lifts += int(np.count_nonzero((out >= t) & (scores < t)))
        return out, peaks

    def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Decoded images (any channels/depth, any size) -> the float32 batch this model expects: :meth:`input_u8`'s
        inputs, normalised."""
        inputs = [self.input_u8(im) for im in image_list(images, what="prepare")]
        return normalize(stacked(inputs, self.info.preprocess), self.info.preprocess)

    def input_u8(self, image: np.ndarray, *, source: str = "image") -> np.ndarray:
        """One decoded image -> its resized 8-bit model input (size x size); cheap to do on worker threads.

        >>> x = model.input_u8(frame)               # doctest: +SKIP
        >>> model.predict_inputs(np.stack([x]))     # doctest: +SKIP
        """
        x = resize_to_input(to_uint8_gray(image, source=source), self.info.preprocess)
        return x if self.sharpness_limit is None else softened(x, self.sharpness_limit)

    @property
    def sharpness_limit(self) -> float | None:
        """The sharpest training image's detail (the station profile's), to which a sharper part-centred input is
        softened before the network sees it (:func:`~edge_runtime.detail.softened`); None: inputs are scored as
        they are (no profile, another crop, or ``RuntimeConfig(soften=False)``)."""
        return self.info.preprocess.sharpness_limit

    @functools.cached_property
    def station_profile(self) -> StationProfile | None:
        """The training images' input statistics, when the model carries them (station check)."""
        return StationProfile.from_dict(self.info.station) if self.info.station else None

    def input_and_check(self, image: np.ndarray, *, source: str = "image") -> tuple[np.ndarray, list[str]]:
        """As :meth:`input_u8`, plus the station check: why the image looks unlike the training images
        (empty when it looks like them, or when the model carries no station profile)."""
        x, why, _ = self.input_for_verdict(image, source=source, part=False)
        return x, why

    def input_for_verdict(
        self, image: np.ndarray, *, source: str = "image", check: bool = True, part: bool = True
    ) -> tuple[np.ndarray, list[str], PartPatch | None]:
        """Everything a decoding worker prepares for one item's verdict: the model input (:meth:`input_u8`), the
        station check's reasons (``check``; see :meth:`input_and_check`) and the part's square for the symmetry
        look (``part``): hand them to :meth:`verdicts_or_errors`.

        The square is cut only where the look may be needed: the model looks, a part is found, and the item looks
        unlike the training images (or was not checked). On images like the training images the network alone
        decides: there the look changed no verdict on the validation or test images, and the network's threshold
        was chosen on such images."""
        profile = self.station_profile if check else None
        gray = to_uint8_gray(image, source=source)
        x, why, square = item_input(
            gray, self.info.preprocess, profile=profile, sharpness_limit=self.sharpness_limit,
            cut_part=part and self.looks_at_symmetry,
        )  # fmt: skip
        note = not_finite_note(image)  # NaN pixels, drawn black, had made an OK part "defective" without a word
        return x, [*why, note] if note else why, square

    def inputs_and_parts(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[PartPatch | None]]:
        """Decoded images -> the uint8 inputs (N, size, size) and each one's part square for the symmetry look,
        checked as ``edge-infer`` checks them (:meth:`input_for_verdict`): for :meth:`predict_inputs`."""
        x, parts, _ = self._checked_inputs(images, ["image"] * len(images))
        return x, parts

    def _checked_inputs(
        self, images: Sequence[np.ndarray], sources: Sequence[str]
    ) -> tuple[np.ndarray, list[PartPatch | None], list[list[str]]]:
        """:meth:`inputs_and_parts`, with each image's station-check reasons, errors naming ``sources``."""
        prepared = [self.input_for_verdict(im, source=name) for im, name in zip(images, sources, strict=True)]
        return np.stack([p[0] for p in prepared]), [p[2] for p in prepared], [p[1] for p in prepared]

    @property
    def has_map(self) -> bool:
        """Whether the model has the localisation map output (``defect_map``)."""
        return MAP_OUTPUT_NAME in self.info.outputs

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """P(defective) (N,) and, when the model has it, the map (N, 1, h, w) float32, from one inference."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        s, maps = self._first_and_maps(x)
        return self.second_look(x, s), maps  # the map is the first view's

    def _first_and_maps(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The network's own scores and, when the model has it, its map: one inference, no second look."""
        if not self.has_map:
            return self.network_scores(x), None
        parts = [x[i : i + 1] for i in range(len(x))] if self.max_batch == 1 else [x]
        outs = [self.session.run([OUTPUT_NAME, MAP_OUTPUT_NAME], {INPUT_NAME: p}) for p in parts]
        s = np.concatenate([np.asarray(o[0]) for o in outs]).astype(np.float64).reshape(-1)
        maps = np.concatenate([np.asarray(o[1], np.float32) for o in outs])
        if s.size != len(x) or len(maps) != len(x):
            raise ModelError(f"{self.path}: gave {s.size} scores / {len(maps)} maps for {len(x)} images; re-export")
        return s, maps

    def predict_inputs(
        self,
        batch_u8: np.ndarray,
        *,
        prep_ms: Sequence[float] | None = None,
        with_map: bool = False,
        parts: Sequence[PartPatch | None] | None = None,
    ) -> list[Prediction]:
        """Verdicts for a stack of :meth:`input_u8` results (N, size, size).

        Each item's ``latency_ms`` is its own ``prep_ms`` (resizing, done elsewhere) plus an equal share of the
        batch's normalisation and inference time. ``with_map`` (a model with the map) attaches each item's
        (h, w) map as ``heatmap``. ``parts``: each item's part square (:meth:`input_for_verdict`), for the
        model's symmetry look; None: no look.
        """
        out = self.verdicts_or_errors(batch_u8, prep_ms=prep_ms, with_map=with_map, parts=parts)
        for p in out:
            if isinstance(p, ScoreError):
                raise p
        return out  # type: ignore[return-value] - no ScoreError left

    def verdicts_or_errors(
        self,
        batch_u8: np.ndarray,
        *,
        prep_ms: Sequence[float] | None = None,
        with_map: bool = False,
        parts: Sequence[PartPatch | None] | None = None,
    ) -> list[Prediction | ScoreError]:
        """Like :meth:`predict_inputs`, but an item whose score is not a probability gets its
        :class:`ScoreError` in its place instead of failing the whole batch."""
        with_map = flag(with_map, "with_map")  # "no" had been taken for its truth
        batch_u8 = model_batch(batch_u8, self.info.preprocess, u8=True)  # a wrong shape: onnxruntime's message
        if len(batch_u8) == 0:
            return []
        t0 = time.perf_counter()
        x = np.ascontiguousarray(normalize(batch_u8, self.info.preprocess), dtype=np.float32)
        first, maps = self._first_and_maps(x) if with_map else (self.network_scores(x), None)
        looked, twice = self._second_look(x, first)
        s, peaks = self.symmetry_look(looked, parts)
        share = (time.perf_counter() - t0) * 1000.0 / len(batch_u8)
        extra = prep_ms if prep_ms is not None else [0.0] * len(batch_u8)
        t = self.info.threshold
        out: list[Prediction | ScoreError] = []
        for i, (v, e) in enumerate(zip(s, extra, strict=True)):
            try:
                p = self.verdict(
                    v, share + float(e), asymmetry=peaks[i], second_look=bool(twice[i]), lifted=bool(looked[i] < t <= v)
                )
                out.append(p if maps is None else replace(p, heatmap=maps[i, 0], heat_scale=self.info.map_full_scale))
            except ScoreError as exc:
                out.append(exc)
        return out

    def describe(self) -> str:
        """One line for logs: file, precision, threshold, providers, threads."""
        return model_line(self)

    def verdict(
        self,
        score: float,
        latency_ms: float,
        *,
        asymmetry: float | None = None,
        second_look: bool = False,
        lifted: bool = False,
    ) -> Prediction:
        """The verdict for one score; a score that is not a probability raises :class:`ScoreError`. The keywords
        say how the score came about (see :class:`Prediction`)."""
        score = float(score)
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise ScoreError(f"the model gave score {score} (not a probability); no verdict for this item")
        defective = bool(score >= self.info.threshold)
        label = self.info.positive_class if defective else self.info.negative_class
        return Prediction(
            label=label,
            score=float(score),
            defective=defective,
            latency_ms=latency_ms,
            asymmetry=asymmetry,
            second_look=second_look,
            lifted=lifted,
        )

    def predict_batch(self, images: Iterable[np.ndarray], *, heatmap: bool = False) -> list[Prediction]:
        """Verdicts for decoded images (a list, any iterable, or an array stacked on its first axis), each checked
        and scored as ``edge-infer`` does, in chunks; each gets an equal share of its chunk's latency and the station
        check's reasons (``unlike_training``: a frame with no part, an image unlike the training images). An
        unreadable image raises :class:`ImageReadError` naming its index. ``heatmap`` (a model with the map): each
        Prediction also carries the map upsampled to its image and ``defect_box``."""
        heatmap = flag(heatmap, "heatmap")  # heatmap="no" had computed the map
        self.check_open()
        if heatmap and not self.has_map:
            raise ModelError(f"{self.path}: has no localisation map (defect_map); re-export it with export-onnx --map")
        out: list[Prediction] = []
        for chunk in image_chunks(images):
            out += self._predict_chunk(chunk, len(out), heatmap=heatmap)
        return out

    def _predict_chunk(self, images: list[np.ndarray], start: int, *, heatmap: bool) -> list[Prediction]:
        t0 = time.perf_counter()
        x, parts, reasons = self._checked_inputs(images, [f"image {start + i}" for i in range(len(images))])
        prep = (time.perf_counter() - t0) * 1000.0 / len(images)
        preds = self.predict_inputs(x, prep_ms=[prep] * len(images), with_map=heatmap, parts=parts)
        if heatmap:
            from edge_runtime.heatmap import locate

            preds = [locate(p, im, self.info.preprocess) for p, im in zip(preds, images, strict=True)]
        # the reasons edge-infer puts on its records: a blank frame was a plain "ok" here
        return [replace(p, unlike_training=tuple(why) or None) for p, why in zip(preds, reasons, strict=True)]

    def predict(self, image: np.ndarray, *, heatmap: bool = False) -> Prediction:
        """Verdict for one decoded image (gray or BGR, 8 or 16 bit); ``heatmap``: see :meth:`predict_batch`."""
        return self.predict_batch([image], heatmap=heatmap)[0]


def _soften_limit(info: ModelInfo, cfg: RuntimeConfig) -> float | None:
    """:attr:`EdgeModel.sharpness_limit` for a model of ``info`` run with ``cfg``."""
    if not cfg.soften or not info.station or info.preprocess.crop is not CropMode.PART:
        return None
    return StationProfile.from_dict(info.station).ranges.get("sharpness", (0.0, None))[1]


def load_model(
    path: str | bytes | Path | None = None,
    *,
    provider: Provider | str = Provider.AUTO,
    threads: int | None = None,
    spin: bool | None = None,
) -> EdgeModel:
    """Load a model file (default: the bundled INT8 model) on the given provider.

    ``threads`` defaults to the ``DEFECT_EDGE_THREADS`` environment variable, else onnxruntime's choice, or fewer
    where the affinity or a CPU quota allows fewer cores (:mod:`edge_runtime.cpu_quota`); it must lie in 1..CPU
    cores (:class:`UsageError`, exit 2, otherwise). ``spin``: see :class:`RuntimeConfig`; None, True or False
    (numpy's bool too), else a TypeError.
    """
    cfg = api_config(provider, threads, spin)
    return EdgeModel(model_path(path), cfg)  # '' is no model name: it was read as "no --model"
