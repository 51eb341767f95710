"""The summary table, the accuracy gate and the metrics written into the ONNX metadata."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from edge_runtime.errors import GateError
from edge_runtime.metrics import json_safe
from export.checks import Measured

Log = Callable[[str], None]
SUBSETS = (("official", "official"), ("leakage_free", "leakage-free"))


def _acc_cell(m: dict[str, Any] | None) -> str:
    if m is None or not m["n"]:  # no image left (every eval image is a training image): not "0/0 (nan%)"
        return "n/a"
    errors = m["fp"] + m["fn"]
    return f"{m['tp'] + m['tn']}/{m['n']} ({100 * m['accuracy']:.2f}%, {errors} err)"


def summary_table(rows: list[Measured]) -> str:
    """Markdown table: precision | size | accuracy official / leakage-free | max diff | QuantizeLinear | latency.

    >>> summary_table([]).splitlines()[0].startswith("| precision | file size | accuracy official")
    True
    """
    lines = [
        "| precision | file size | accuracy official | accuracy leakage-free | max diff vs torch "
        "| QuantizeLinear | batch-1 latency |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.precision.value} | {r.size_bytes / 1024:.0f} KiB | {_acc_cell(r.official)} "
            f"| {_acc_cell(r.leakage_free)} | {r.max_diff:.2e} ({r.n_parity} img) | {r.quantize_nodes} "
            f"| {r.latency_ms:.3f} ms |"
        )
    return "\n".join(lines)


def accuracy_drops(reference: Measured, candidate: Measured) -> dict[str, float]:
    """Percentage points of accuracy lost per subset (positive = worse than the reference)."""
    drops = {}
    for key, label in SUBSETS:
        a, b = reference.accuracy(key), candidate.accuracy(key)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):  # NaN: no image in it
            drops[label] = 100.0 * (a - b)
    return drops


def _not_gated(reference: Measured, drops: dict[str, float]) -> str:
    """The subsets measured without an image (every eval image a copy of a training one): "passed +nan pp"."""
    empty = [label for key, label in SUBSETS if reference.accuracy(key) is not None and label not in drops]
    return f"; {', '.join(empty)}: no images, not gated" if empty else ""


def apply_gate(reference: Measured, candidate: Measured, *, max_drop_pp: float, force: bool, log: Log) -> None:
    """Fail when ``candidate`` loses more than ``max_drop_pp`` points on any subset (a warning with force)."""
    drops = accuracy_drops(reference, candidate)
    if not drops:
        log(f"warning: accuracy gate not run (no labelled images); {candidate.precision.value} written unchecked"
            + _not_gated(reference, drops))  # fmt: skip
        return
    worst = max(drops.items(), key=lambda kv: kv[1], default=None)
    if worst is None or worst[1] <= max_drop_pp:
        shown = ", ".join(f"{k} {v:+.2f} pp" for k, v in drops.items())
        log(
            f"accuracy gate passed: {candidate.precision.value} vs fp32 drop {shown} (limit {max_drop_pp} pp)"
            + _not_gated(reference, drops)
        )
        return
    msg = (
        f"{candidate.precision.value} loses {worst[1]:.2f} percentage points of {worst[0]} accuracy against fp32 "
        f"(limit --max-drop {max_drop_pp})"
    )
    if force:
        log(f"warning: {msg}; written anyway because of --force")
        return
    fix = (
        "calibrate with more representative images (--calib-data)"
        if candidate.precision.value == "int8"
        else "export fp32 instead (fp16 has no calibration to change)"
    )
    raise GateError(f"{msg}; model not written: {fix}, or pass --force")


def onnx_metrics(row: Measured) -> dict[str, Any]:
    """What this ONNX file scored at export time, stored beside the training metrics in the metadata."""
    out: dict[str, Any] = {"max_abs_diff_vs_torch": row.max_diff, "parity_images": row.n_parity}
    for key, _ in SUBSETS:
        m = getattr(row, key)
        if m is not None:
            out[key] = {k: m[k] for k in ("n", "accuracy", "recall", "specificity", "tp", "tn", "fp", "fn")}
    return json_safe(out)


def fp16_note(reference: Measured, fp16: Measured) -> str:
    """FP16 targets GPU providers; say plainly how it runs on this CPU."""
    ratio = fp16.latency_ms / reference.latency_ms if reference.latency_ms > 0 else float("nan")
    timed = f"({fp16.latency_ms:.3f} ms vs {reference.latency_ms:.3f} ms at batch 1)"
    if ratio < 0.9:  # it said "faster than fp32 ...: use fp32 or int8 on CPUs"
        return (
            f"note: fp16 is meant for GPU providers (CUDA, TensorRT); on this CPU it ran faster than fp32 {timed} "
            "in this short timing; int8 is the model built for CPUs"
        )
    verdict = "slower than" if ratio > 1.02 else "no faster than"
    return (
        f"note: fp16 is meant for GPU providers (CUDA, TensorRT); on this CPU it runs {verdict} fp32 "
        f"{timed}: use fp32 or int8 on CPUs"
    )
