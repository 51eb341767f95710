"""Measure the INT8 type choices on this CPU: accuracy and latency of each scheme against FP32.

``python -m export.quant_study CHECKPOINT`` prints a Markdown table (the one in QUANTIZATION.md). Latencies are
interleaved over several rounds and the best round's median is kept, so a busy neighbour process skews all
variants alike.

>>> main(["train/default_model/best.pt"])  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np

from edge_runtime.cli_support import Command, debug_option, friendly_errors, version_option
from edge_runtime.model import EdgeModel, Provider, RuntimeConfig
from edge_runtime.model_info import Precision
from export import graph, quantize
from export.checks import accuracy_on, cpu_name, latency_ms, onnx_scores, torch_scores
from export.config import Int8Scheme
from export.main import calibration_batch, eval_images, model_info
from export.ship import CONFIGS

SHIPPED_INT8 = CONFIGS[Precision.INT8]

# (scheme, standardisation in float, convolutions kept in float): each scheme as it was first measured, with the
# export's default of two float convolutions, and the default scheme with one and three.
VARIANTS = [(s, f, 0) for s in Int8Scheme for f in (True, False)] + [(s, True, 2) for s in Int8Scheme]
VARIANTS += [(Int8Scheme.U8S8_REDUCE_RANGE, True, n) for n in (1, 3)]


def variant_name(scheme: Int8Scheme, *, std_float: bool, float_convs: int) -> str:
    """
    >>> variant_name(Int8Scheme.U8S8, std_float=True, float_convs=2)
    'u8s8, standardise in float, 2 float convs'
    """
    name = f"{scheme.value}, standardise in {'float' if std_float else 'int8'}"
    return name + (f", {float_convs} float conv{'s' if float_convs > 1 else ''}" if float_convs else "")


def cpu_flags() -> str:
    """The x86 features that decide INT8 speed, as in the quantization notes."""
    from edge_runtime.cpu import cpu_info

    flags = cpu_info().flags
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags)


def _acc(m: dict) -> str:
    return f"{m['tp'] + m['tn']}/{m['n']}"


@click.command(cls=Command)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--runs", default=200, show_default=True, type=click.IntRange(min=10))
@version_option
@debug_option
@friendly_errors
def main(checkpoint: Path, rounds: int, runs: int, debug: bool) -> None:
    """Compare FP32 with INT8 u8s8 / u8s8-reduce-range / s8s8, standardisation in float or in INT8, and 0-3 of the
    first convolutions kept in float (export-onnx --float-convs)."""
    from train.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    net = model_from_checkpoint(ckpt)
    cfg = SHIPPED_INT8  # calibrated as the shipped INT8 is
    rt = RuntimeConfig(provider=Provider.CPU, threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        info = model_info(ckpt, Precision.FP32, cfg)
        graph.export_graph(net, info.preprocess, work / "raw.onnx", opset=cfg.opset)
        graph.write_with_metadata(work / "raw.onnx", work / "fp32.onnx", info)
        models = {"fp32": EdgeModel(work / "fp32.onnx", rt)}
        evals = eval_images(ckpt, cfg, log=click.echo)
        batch = models["fp32"].prepare(evals.images)
        calib = calibration_batch(models["fp32"], ckpt, cfg, log=click.echo)
        for scheme, std_float, float_convs in VARIANTS:
            name = variant_name(scheme, std_float=std_float, float_convs=float_convs)
            q = quantize.quantize_int8(
                work / "fp32.onnx",
                work / "q.onnx",
                calib,
                scheme=scheme,
                work=work,
                standardize_in_float=std_float,
                float_convs=float_convs,
            )
            graph.write_with_metadata(q, work / f"{len(models)}.onnx", info)
            models[name] = EdgeModel(work / f"{len(models)}.onnx", rt)
        ref = torch_scores(net, batch)
        lat: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(rounds):
            for k, m in models.items():
                lat[k].append(latency_ms(m, batch, runs=runs))
        click.echo(f"\nCPU: {cpu_name()} ({cpu_flags()}), 1 thread, batch 1, best of {rounds} medians of {runs}")
        click.echo("\n| model | official | leakage-free | mean / max diff vs torch | batch-1 ms |")
        click.echo("| --- | --- | --- | ---: | ---: |")
        for k, m in models.items():
            s = onnx_scores(m, batch)
            off = accuracy_on(evals.labels, s, m.info.threshold, None)
            free = accuracy_on(evals.labels, s, m.info.threshold, ~evals.leaked)
            diff = np.abs(onnx_scores(m, batch, network_only=True) - ref)
            diffs = f"{diff.mean():.1e} / {diff.max():.2e}"
            click.echo(f"| {k} | {_acc(off)} | {_acc(free)} | {diffs} | {min(lat[k]):.3f} |")


if __name__ == "__main__":
    main()
