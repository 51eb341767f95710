"""PyTorch eager timings of the origin notebook's network ("seed") and of DefectNet, for side-by-side ratios.

Its timing runs only in a worker process, and only when torch is importable (the parent only checks --checkpoint
with checked_checkpoint, before the first job). The origin network is randomly
initialised: its speed does not depend on its weights.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.config import SEED_MODEL, TORCH_PROVIDER, Job, Row, Section
from benchmarks.onnx_bench import fill
from benchmarks.timing import measure, runs_for_batch
from edge_runtime.errors import ModelError

MIB = 1024.0 * 1024.0


def build(arch: str, checkpoint: str):  # noqa: ANN201 - (torch module, input shape, note)
    """The network in eval mode, its (C, H, W) input and a note saying where its weights come from."""
    from train.model import ARCHS, build_model

    if arch != SEED_MODEL and checkpoint:
        from train.checkpoint import model_from_checkpoint

        ckpt = checked_checkpoint(checkpoint)
        spec = ckpt.preprocess
        return model_from_checkpoint(ckpt), (spec.channels, spec.size, spec.size), f"weights {Path(checkpoint).name}"
    _, size, channels = ARCHS[arch]
    return build_model(arch).eval(), (channels, size, size), "random init (speed does not depend on weights)"


def checked_checkpoint(checkpoint: str):  # noqa: ANN201 - train.checkpoint.Checkpoint
    """The --checkpoint, which must hold DefectNet: the seed network's was timed under the name "defectnet"."""
    from train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(Path(checkpoint))
    if ckpt.arch != "defectnet":
        raise ModelError(
            f"{checkpoint}: holds the {ckpt.arch!r} network, not DefectNet; pass --checkpoint a DefectNet best.pt "
            "(the origin network is timed with random weights: its speed does not depend on them)"
        )
    return ckpt


def torch_rows(job: Job) -> Iterator[Row]:
    """One row per batch size, ascending, each yielded once timed, with the same thread count as the onnxruntime
    rows."""
    import torch

    if job.checkpoint and job.model == SEED_MODEL:  # the first torch job: a bad --checkpoint stops the run untimed
        checked_checkpoint(job.checkpoint)

    torch.set_num_threads(job.threads)
    torch.set_num_interop_threads(1)
    t0 = time.perf_counter()
    model, shape, note = build(job.model, job.checkpoint)
    load_ms = (time.perf_counter() - t0) * 1000.0
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / MIB
    gen = torch.Generator().manual_seed(0)
    for batch in sorted(job.batches):
        x = torch.rand((batch, *shape), generator=gen)
        with torch.inference_mode():
            stats = measure(
                lambda x=x: model(x),
                warmup=job.warmup,
                runs=runs_for_batch(batch, runs=job.runs, min_runs=job.min_runs),
                items=batch,
            )
        row = Row(
            section=Section.INFERENCE.value,
            model=job.model,
            precision="fp32",
            provider=TORCH_PROVIDER,
            batch=batch,
            threads=job.threads,
            model_size_mb=round(size_mb, 3),
            load_ms=round(load_ms, 2),
            note=f"{shape[0]}x{shape[1]}x{shape[2]}, {note}, torch {torch.__version__}",
        )
        yield fill(row, stats)
