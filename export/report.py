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


def _correct(m: dict[str, Any] | None) -> tuple[int, int] | None:
    """(right verdicts, images) of a subset's metrics; None where its counts are not there.

    >>> _correct({"n": 40, "tp": 20, "tn": 19, "accuracy": 0.975}), _correct({"n": 40, "accuracy": 0.975})
    ((39, 40), None)
    """
    if m is None or not all(k in m for k in ("tp", "tn", "n")):
        return None
    return int(m["tp"]) + int(m["tn"]), int(m["n"])


def accuracy_drops(reference: Measured, candidate: Measured) -> dict[str, float]:
    """Percentage points of accuracy lost per subset (positive = worse than the reference), from the counts of
    right verdicts where both rows have them: 100 * (39/40 - 38/40) is 2.500000000000002, so ``--max-drop 2.5``
    refused a drop its own error line printed as 2.50."""
    drops = {}
    for key, label in SUBSETS:
        a, b = reference.accuracy(key), candidate.accuracy(key)
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):  # NaN: no image in it
            continue
        ref, cand = _correct(getattr(reference, key)), _correct(getattr(candidate, key))
        if ref is not None and cand is not None and ref[1] == cand[1]:
            drops[label] = 100.0 * (ref[0] - cand[0]) / ref[1]
        else:
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
    raise GateError(msg + _refusal_advice(reference, worst, max_drop_pp, int8=candidate.precision.value == "int8"))


def _refusal_advice(reference: Measured, worst: tuple[str, float], max_drop_pp: float, *, int8: bool) -> str:
    """What a refused export can do. On a station's 40 test images one changed verdict is 2.5 points, over the
    default 0.3, and the advice was only to calibrate (on the station images it had already calibrated on) or
    ``--force``: that no change at all could pass, and the options that help, went unsaid."""
    fixes = ["calibrate with more representative images (--calib-data)"] if int8 else []
    fixes.append("use the fp32 model (export without --quantize)" if int8 else "export fp32 instead (fp16 has no "
                 "calibration to change)")  # fmt: skip
    m = getattr(reference, dict((label, key) for key, label in SUBSETS)[worst[0]])
    n = int(m["n"]) if m and m.get("n") else 0
    small = ""
    if n and 100.0 / n > max_drop_pp:  # a single image moves this subset's accuracy by more than the limit
        lost = max(1, round(worst[1] * n / 100.0))
        allow = math.ceil(round(worst[1] * 100.0, 6)) / 100.0  # the limit that passes this drop, to 0.01
        small = (f": {lost} more of its {n} {worst[0]} eval image{'s' if n != 1 else ''} wrong, and one is "
                 f"{100.0 / n:.2f} points there, so this limit refuses any changed verdict")  # fmt: skip
        fixes[:0] = [
            "judge it on more labelled images (--eval-data DIR)",
            f"accept this loss with --max-drop {allow:g}",
        ]
    return f"{small}; model not written: {', '.join(fixes)}, or pass --force"


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
