"""The Markdown report of ``benchmarks.station`` (benchmarks/results/station.md) from its JSON results."""

from __future__ import annotations

from typing import Any

import numpy as np

WARMUP_FRAMES = 30  # live frames dropped before timing (benchmarks.station imports it from here)
SLOW_KEYS = ("latency_ms", "cpu_wait_ms", "rest_ms")


def _col(rows: list[dict], key: str) -> str:
    return " / ".join(str(r[key]) for r in rows)


def _opt(rows: list[dict], key: str) -> str:
    """A column only some conditions have (the web view, the browser): '-' where none has it."""
    values = [r.get(key) for r in rows]
    return "-" if all(v is None for v in values) else " / ".join("-" if v is None else str(v) for v in values)


def folder_section(f: dict[str, Any]) -> list[str]:
    lg = f["log"]
    out = [
        "## Folder throughput with and without `--log`",
        "",
        f"`{f['folder']}`, bundled INT8 model, whole `edge-infer` pipeline (decode, infer, log).",
        "",
        "| run | items/s per round | median | best | CPU µs per item (median) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, v in f["rounds"].items():
        out.append(
            f"| {name} | {', '.join(f'{x:.0f}' for x in v)} | {f['median'][name]:.0f} | {f['best'][name]:.0f} "
            f"| {f['cpu_median'][name]:.0f} |"
        )
    return out + [
        "",
        f"With `--log`: {100 * f['ratio_median']:.1f}% of the items/s without it (medians), "
        f"{100 * f['ratio_best']:.1f}% (best rounds); CPU per item: **{100 * f['ratio_cpu']:.1f}%** of the "
        "throughput a CPU-bound run keeps.",
        "",
        "## Log size",
        "",
        f"{lg['rows']} items, {lg['thumbnails']} of them defective with a thumbnail: {lg['file_bytes'] / 1e6:.2f} MB, "
        f"that is **{lg['mb_per_10k']} MB per 10,000 items** at this defect rate. A row takes "
        f"{lg['bytes_per_item_row']} bytes (indexes included), a thumbnail {lg['bytes_per_thumbnail']} bytes: "
        f"{lg['mb_per_10k_without_images']} MB per 10,000 items without defects, plus "
        f"{lg['bytes_per_thumbnail'] * 100 / 1e6:.2f} MB per 10,000 items for each 1% of them that is defective.",
    ]


def _priority_text(live: dict[str, Any]) -> str:
    """How the inspection loop was scheduled, as the runs report it (edge-infer --priority)."""
    got = sorted({r.get("priority", "normal") for rows in live["rounds"].values() for r in rows})
    if live.get("priority") == "both":
        return (
            f". Inspection loop: edge-infer's default priority ({' / '.join(got)} in these runs), and normal in the "
            "rows marked 'normal priority'"
        )
    default = live.get("priority", "auto") == "auto"
    return f". Inspection loop priority: {' / '.join(got)}" + (
        " (edge-infer's default: real-time where the system allows it)" if default else ""
    )


def live_section(live: dict[str, Any]) -> list[str]:
    out = [
        "## Live latency, 30 FPS synthetic source",
        "",
        f"Capture -> result (log committed), {live['seconds']:g} s per run, first {WARMUP_FRAMES} frames dropped "
        f"as warm-up; the open page: {live['viewer']}, in a process of its own on the same machine"
        + (f", at nice {live['viewer_nice']}" if live.get("viewer_nice") else ", at normal priority")
        + (", started as an ordinary user's browser (without CAP_SYS_NICE)" if live.get("viewer_like_user") else "")
        + f". onnxruntime threads: {live.get('threads') or 'as onnxruntime decides (edge-infer default)'}"
        + {
            "auto": ", sleeping between frames (edge-infer's default for a live source)",
            "on": ", spinning while they wait (onnxruntime's default)",
            "off": ", sleeping between frames",
            "both": "; rows marked 'threads spinning' keep onnxruntime's spinning, the others sleep between frames "
            "(edge-infer's default for a live source)",
        }.get(live.get("spin", "on"), "")
        + _priority_text(live)
        + f". The page's stream: at most {live.get('serve_fps') or 10:g} fps"
        + ("" if live.get("serve_fps") else " (edge-infer's default)")
        + ". Per round, in run order. CPU columns in % of one core: the inspection process, the web view's "
        "process (`--serve`), and the browser (Chromium's processes).",
        "",
        "| condition | p50 ms | p90 ms | p99 ms | p99 median | station's time in the loop, p50 / p99 µs "
        "| inspection process CPU % | web view CPU % | browser CPU % | frames dropped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rows in live["rounds"].items():
        med = float(np.median([r["p99"] for r in rows]))
        inner = " / ".join(
            f"{r['station_us_p50']:.0f}, {r['station_us_p99']:.0f}"
            for r in rows
            if r["station_us_p50"] == r["station_us_p50"]
        )
        out.append(
            f"| {name} | {_col(rows, 'p50')} | {_col(rows, 'p90')} | {_col(rows, 'p99')} | {med:.2f} | {inner or '-'} "
            f"| {_col(rows, 'cpu_percent')} | {_opt(rows, 'webview_cpu_percent')} "
            f"| {_opt(rows, 'browser_cpu_percent')} | {_col(rows, 'dropped')} |"
        )
    out += [
        "",
        "The slowest 1% of frames (latency >= p99), mean ms per round: latency = the inspection thread waiting "
        "for a CPU (runnable while other threads or processes had the cores; the kernel's per-thread schedstat) "
        "+ the rest (its own work, and its sleeps: the GIL, a lock, onnxruntime's other thread, I/O).",
        "",
        "| condition | latency | waiting for a CPU | the rest |",
        "| --- | --- | --- | --- |",
    ]
    for name, rows in live["rounds"].items():
        cells = [" / ".join(f"{r['slowest'].get(k, float('nan')):.2f}" for r in rows) for k in SLOW_KEYS]
        out.append(f"| {name} | {' | '.join(cells)} |")
    seen = sorted({f"{k}: {v}" for rows in live["rounds"].values() for r in rows for k, v in r["scheduling"].items()})
    return out + ["", f"Scheduling of the processes at the end of the runs (policy, nice): {'; '.join(seen)}."]


def sigkill_section(kills: list[dict[str, Any]]) -> list[str]:
    out = [
        "## SIGKILL",
        "",
        "`edge-infer --source line.avi --log kill.db --output kill.jsonl --batch-size 8` "
        "killed with SIGKILL mid-run (three kill points).",
        "",
        "| records in --output | rows in the log | output records missing from the log | integrity_check |",
        "| --- | --- | --- | --- |",
    ]
    for k in kills:
        out.append(
            f"| {k['records_in_output']} | {k['rows_in_log']} | {k['output_records_missing_from_log']} | "
            f"{k['integrity_check']} |"
        )
    return out


def markdown(res: dict[str, Any]) -> str:
    """The whole report: hardware and command, then the folder, live and SIGKILL sections."""
    hw = res["hardware"]
    load = ", ".join(f"{x:.1f}" for x in res["load_average_at_start"])
    head = [
        f"# Station costs ({hw['cpu']}, {hw['cores']} cores, {res['date']})",
        "",
        f"`{res['command']}`. Load average at the start: {load} (a shared machine: rounds are interleaved, and "
        "CPU time per item is given because it does not depend on what else runs).",
        "",
    ]
    body = [*folder_section(res["folder"]), "", *live_section(res["live"]), "", *sigkill_section(res["sigkill"])]
    return "\n".join(head + body) + "\n"
