"""The model's one line for logs (edge-infer's start line): file, precision, threshold, looks, providers, threads."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_runtime.model import EdgeModel

# Said of any model without them: a full-frame (center-crop) one, as an older export, had said nothing, and its
# records' "unlike_training": null read as items like the training images
NO_PROFILE = "; no station check: the model carries no training-image statistics, re-export it where they are"


def model_line(model: EdgeModel) -> str:
    """``model``'s line: what it is, where it runs, and with how many threads (why, where fewer than onnxruntime's
    own count: a CPU quota or the affinity)."""
    auto = f"{model.auto_threads.count} ({model.auto_threads.why})" if model.auto_threads else "auto"
    threads = f"{model.cfg.threads or auto}{' (not spinning)' if model.cfg.spin is False else ''}"
    info = model.info
    return (
        f"model {model.path.name} ({info.precision.value}, {info.arch or 'unknown arch'}, "
        f"threshold {info.threshold:.4g}{_look_note(model)}) on {', '.join(model.providers)}, threads {threads}"
        + ("" if info.station else NO_PROFILE)
    )


def _look_note(model: EdgeModel) -> str:
    notes = []
    if model.info.second_look is not None:
        notes.append("second look near it" if model.cfg.second_look else "second look off")
    if model.info.symmetry_look is not None:
        notes.append("symmetry look below it" if model.cfg.symmetry_look else "symmetry look off")
    if model.sharpness_limit is not None:
        notes.append("inputs sharper than training softened")
    return "".join(", " + n for n in notes)
