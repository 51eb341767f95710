"""``edge-bench`` (also ``python -m benchmarks``): latency, throughput and memory on this machine."""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

import click

from edge_runtime.cli_support import Command, FiniteFloatRange, GivenPath, debug_option, friendly_errors, version_option
from edge_runtime.errors import DefectEdgeError, ExitCode, exit_codes_help, printable, write_remedy
from edge_runtime.model import Provider, model_path
from edge_runtime.stopping import StopSignals
from edge_runtime.summary import plural

# (full run, --quick): counts are fixed before timing starts; explicit options override both.
COUNTS = {
    "warmup": (50, 5),
    "runs": (1000, 100),
    "torch_runs": (100, 5),
    "e2e_runs": (500, 100),
    "live_seconds": (5.0, 0.5),
}
# A count of timed calls beyond this is a typo: 10^12 runs died in the worker on a 7 TiB array, listed as "skipped",
# exit 0, over the last complete --json.
MAX_RUNS = 10_000_000
# A batch of 100000 had the worker killed for memory (exit 1, every row measured before it lost); 1024 leaves
# room for GPU runs (batch 256 is measured in benchmarks/results/bench_gpu_h200.md).
MAX_BATCH = 1024
# The synthetic camera keeps each frame's due time: 10^9 FPS (a typo) ran for about 45 minutes and grew a list by
# one entry per frame until memory ran out. Line cameras deliver hundreds of frames a second, not millions.
MAX_LIVE_FPS = 10_000


def counted(name: str, kind: type, help_text: str):  # noqa: ANN201 - a click decorator
    full, quick = COUNTS[name]
    return click.option(
        f"--{name.replace('_', '-')}",
        name,
        type=kind,
        default=None,
        help=f"{help_text} [default: {full}; {quick} with --quick].",
    )


@click.command(
    cls=Command,
    help="Benchmark defect-edge models on this machine: onnxruntime latency (p50/p90/p99), throughput, model "
    "size, session load time and peak RSS per model file, precision, provider, thread count and batch size; "
    "file -> verdict and folder throughput; a live loop with a synthetic camera; PyTorch eager rows of the "
    "origin network and ours when torch is importable. Markdown goes to stdout, progress to stderr; "
    "--json PATH also writes the rows as JSON, a CSV named after the hardware and a PNG plot beside it.\n\n"
    + exit_codes_help(0, 1, 2, 3, 4, 7, 8, 130),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Path(),  # as typed: ./fp32 names a file, only a bare fp32 the bundled model
    help="ONNX file to benchmark (repeatable) [default: every model in edge_runtime/models].",
)
@click.option(
    "--provider",
    "providers",
    multiple=True,
    type=click.Choice([p.value for p in Provider]),
    help="onnxruntime provider (repeatable) [default: cpu].",
)
@click.option(
    "--threads", multiple=True, type=click.IntRange(min=1), help="Thread count (repeatable) [default: 1 and all cores]."
)
@click.option(
    "--batch",
    "batches",
    multiple=True,
    type=click.IntRange(1, MAX_BATCH),
    help=f"Batch size, 1..{MAX_BATCH} (repeatable) [default: 1 8 32].",
)
@counted("warmup", click.IntRange(0, MAX_RUNS), "Untimed calls before timing")
@counted("runs", click.IntRange(1, MAX_RUNS), "Timed calls at batch 1 (batch B: runs/B, at least 3-20)")
@counted("torch_runs", click.IntRange(1, MAX_RUNS), "Timed PyTorch eager calls at batch 1")
@counted("e2e_runs", click.IntRange(1, MAX_RUNS), "Timed file -> verdict calls (and images per folder measurement)")
@counted("live_seconds", FiniteFloatRange(min=0.05, max=3600.0), "Seconds per live-loop frame rate")
@click.option(
    "--live-fps",
    multiple=True,
    type=click.IntRange(1, MAX_LIVE_FPS),
    help=f"Synthetic camera FPS, 1..{MAX_LIVE_FPS} (repeatable) [default: 30 60 120].",
)
@click.option("--no-live", is_flag=True, help="Skip the live loop.")
@click.option(
    "--data",
    type=GivenPath(path_type=Path),
    default=None,
    help="Labelled images DIR/test/<class>/: adds accuracy per model and uses them as samples.",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="DefectNet best.pt for the PyTorch rows [default: train/default_model/best.pt if present, else random init].",
)
@click.option("--no-torch", is_flag=True, help="Skip the PyTorch eager rows even when torch is importable.")
@click.option(
    "--json",
    "json_path",
    type=GivenPath(path_type=Path, what="a file"),
    default=None,
    help="Write the rows as JSON here; a CSV named after the hardware and a PNG plot go beside it. Each complete run "
    "replaces all three (the CSV is not appended to): keep older runs under other names.",
)
@click.option("--quick", is_flag=True, help="Short counts (under a minute on two cores); PyTorch rows at batch 1 only.")
@version_option
@debug_option
@friendly_errors
def main(*, debug: bool, **opts: object) -> None:
    from edge_runtime.stopping import command_signals

    with command_signals():  # taken over before the imports: an early Ctrl-C or kill is "interrupted", exit 130
        _bench(opts)


def _bench(opts: dict) -> None:
    from benchmarks.config import BenchConfig
    from benchmarks.hardware import usable_cores
    from benchmarks.runner import bundled_models, default_checkpoint, run_benchmark

    quick = bool(opts["quick"])
    counts = {k: opts[k] if opts[k] is not None else v[1 if quick else 0] for k, v in COUNTS.items()}
    batches = tuple(dict.fromkeys(opts["batches"])) or (1, 8, 32)  # --batch 1 --batch 1: timed once
    cfg = BenchConfig(
        # a model or provider typed twice: once; int8 / fp32 name the bundled models, as in edge-infer
        models=tuple(dict.fromkeys(model_path(m) for m in opts["models"])) or bundled_models(),
        providers=tuple(dict.fromkeys(Provider(p) for p in opts["providers"])) or (Provider.CPU,),
        threads=tuple(dict.fromkeys(opts["threads"])) or tuple(sorted({1, usable_cores()})),  # --threads 1 twice
        batches=batches,
        min_runs=5 if quick else 20,
        torch=not opts["no_torch"],
        torch_batches=(1,) if quick else batches,
        checkpoint=opts["checkpoint"] or default_checkpoint(),
        live_fps=() if opts["no_live"] else tuple(opts["live_fps"]) or (30, 60, 120),
        data=opts["data"],
        json_path=opts["json_path"],
        quick=quick,
        **counts,
    )
    preflight(cfg)
    cfg = replace(cfg, providers=_distinct_providers(cfg.providers))
    _warn_unused(opts)  # after the checks: a refused run says its one line only
    _warn_over_cores(opts["threads"])
    # SIGTERM (and SIGHUP) as Ctrl-C: `kill` gave exit 143, no rows, and a worker timing on orphaned at 100% CPU.
    with StopSignals() as stop:
        result = run_benchmark(cfg, progress=lambda msg: click.echo(f"edge-bench {msg}", err=True), stop=stop)
        result.command = shlex.join(["edge-bench", *sys.argv[1:]])
        write_outputs(result)
    if result.interrupted or stop.requested:
        said = "the rows timed before it are reported above" if result.rows else "no row had been timed"
        raise DefectEdgeError(f"interrupted; {said}", exit_code=ExitCode.INTERRUPTED)


def preflight(cfg) -> None:  # noqa: ANN001 - benchmarks.config.BenchConfig
    """Every check that needs no timing, before the first job: thread counts, models, checkpoint, outputs."""
    from benchmarks.hardware import detect_hardware
    from benchmarks.preflight import check_inputs, check_outputs
    from benchmarks.report import csv_path, interrupted_path
    from edge_runtime.errors import OutputError

    check_inputs(cfg.models, cfg.checkpoint, cfg.threads)
    from edge_runtime.providers import provider_chain

    for provider in cfg.providers:  # --provider cuda without onnxruntime-gpu: exit 8 now, not after the torch rows
        provider_chain(provider)
    if cfg.data is not None:
        from benchmarks.preflight import check_data_classes
        from benchmarks.runner import labelled_images

        classes = labelled_images(cfg.data, cfg.models)[1]  # its class folders, before any other line
        check_data_classes(cfg.models, set(classes), cfg.data)
    if cfg.json_path is not None:
        if cfg.json_path.name in ("", ".", "..") or cfg.json_path.is_dir():  # --json '' or . was a ValueError, exit 1
            raise OutputError(f"{cfg.json_path}: is a folder; pass --json FILE.json")
        named = {
            "--json": cfg.json_path,
            "the CSV beside --json": csv_path(cfg.json_path, detect_hardware().slug),
            "the PNG plot beside --json": cfg.json_path.with_suffix(".png"),
        }
        named |= {f"{what} of an interrupted run": interrupted_path(path) for what, path in named.items()}
        inputs: dict[str, Path | None] = {f"--model {m}": m for m in cfg.models} | {"--checkpoint": cfg.checkpoint}
        check_outputs(named, inputs, cfg.data)
        _check_json_name(cfg.json_path)
    if cfg.torch and cfg.checkpoint is not None and _torch_imports():
        from benchmarks.preflight import check_model_file
        from benchmarks.torch_bench import checked_checkpoint
        from edge_runtime.errors import ModelError

        ckpt = checked_checkpoint(str(cfg.checkpoint))  # a last.pt, a damaged file: its one line now, not after a job
        for model in cfg.models:
            # a 64 px model against the 160 px checkpoint: "origin / INT8 677x ... yes", two networks compared
            size = check_model_file(model).preprocess.size
            if size != ckpt.preprocess.size:
                raise ModelError(
                    f"{model}: takes {size} px, the checkpoint timed in PyTorch ({cfg.checkpoint}) takes "
                    f"{ckpt.preprocess.size} px, so the speed-ups would compare two networks; pass --checkpoint the "
                    "model's own best.pt, or --no-torch"
                )


def _distinct_providers(providers: tuple[Provider, ...]) -> tuple[Provider, ...]:
    """Each provider that runs on onnxruntime providers of its own, after one warning per one that does not: on a
    machine without a GPU, --provider auto --provider cpu timed every job twice, two sets of rows that read
    "defectnet | int8 | cpu | 1 | 1" with different figures."""
    from edge_runtime.providers import provider_chain

    kept: dict[tuple[str, ...], Provider] = {}
    for provider in providers:
        chain = tuple(provider_chain(provider)[0])
        if chain in kept:
            click.echo(
                f"warning: --provider {provider.value} runs on {', '.join(chain)} here, as --provider "
                f"{kept[chain].value} does; timed once",
                err=True,
            )
            continue
        kept[chain] = provider
    return tuple(kept.values())


def _warn_unused(opts: dict) -> None:
    """Options that the run's --no-live or --no-torch leave unused: one warning (they were ignored without a word;
    not an error, so a script that passes every count and toggles a part still runs)."""
    unused = {
        "--no-live": [o for o, k in (("--live-fps", "live_fps"), ("--live-seconds", "live_seconds")) if opts[k]],
        "--no-torch": [o for o, k in (("--torch-runs", "torch_runs"), ("--checkpoint", "checkpoint")) if opts[k]],
    }
    for flag, names in unused.items():
        if opts[flag[2:].replace("-", "_")] and names:
            click.echo(f"warning: {', '.join(names)} not used with {flag}", err=True)


def _warn_over_cores(typed: tuple[int, ...]) -> None:
    """A --threads above the cores this process may use (taskset, a cpuset, a CPU quota) is timed as asked, after
    one warning line each (they were timed in silence, as if the threads did not take turns on the core). The
    default counts (1 and the usable cores) are the hardware line's to explain."""
    from edge_runtime.cpu_quota import threads_warning

    for threads in dict.fromkeys(typed):
        if (line := threads_warning(threads)) is not None:
            click.echo(f"warning: {line}", err=True)


def _check_json_name(path: Path) -> None:
    """``--json ck.pt`` replaced a checkpoint with the benchmark's JSON: a name for weights, models or images is
    refused, as export-onnx refuses them for its --out."""
    from edge_runtime.errors import OutputError
    from edge_runtime.preprocess import IMAGE_SUFFIXES

    kind = {".pt": "a checkpoint", ".pth": "a checkpoint", ".ckpt": "a checkpoint", ".onnx": "a model"}.get(
        path.suffix.lower(), "an image" if path.suffix.lower() in IMAGE_SUFFIXES else None
    )
    if kind is not None:
        raise OutputError(f"{path}: is named like {kind} ({path.suffix}), not JSON; pass --json FILE.json")
    if path.suffix.lower() != ".json":  # bench.txt shared bench.json's CSV and PNG; 'newdir/' became a file
        raise OutputError(
            f"{path}: --json names a .json file (its CSV and PNG are named after it); pass --json FILE.json"
        )


def _torch_imports() -> bool:
    """Whether PyTorch imports here (without it the PyTorch rows are left out, and --checkpoint is not read)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def write_outputs(result) -> None:  # noqa: ANN001 - benchmarks.runner.BenchResult
    """Markdown on stdout; JSON, CSV and PNG when --json was given. An interrupted run never replaces them: its
    rows (if any) go beside them as ``x.interrupted.json`` and so on, each marked as partial. A stdout that
    cannot be written loses the table, not the files (``> /dev/full`` lost both: "unexpected OSError")."""
    from benchmarks.report import issue_targets, to_markdown
    from edge_runtime.cli_support import stdout_errors
    from edge_runtime.errors import OutputError

    stdout_failed: OutputError | None = None
    try:
        with stdout_errors(report=False):
            click.echo(to_markdown(result, issue_targets(result.rows)))
    except OutputError as exc:
        stdout_failed = exc
    _write_files(result)
    if stdout_failed is not None:
        raise stdout_failed


def _write_files(result) -> None:  # noqa: ANN001 - benchmarks.runner.BenchResult
    from benchmarks.plot import latency_png_bytes
    from benchmarks.report import BUSY_SHARE, busy_line, csv_path, csv_text, interrupted_path, json_text
    from edge_runtime.atomic import atomic_write_all
    from edge_runtime.errors import OutputError

    busy = result.others_cpu_share is not None and result.others_cpu_share > BUSY_SHARE
    if busy:
        click.echo(busy_line(result.others_cpu_share), err=True)
    path = result.config.json_path
    if path is None:
        return
    csv_file, png = csv_path(path, result.hardware.slug), path.with_suffix(".png")
    title = f"{result.hardware.cpu}, {result.hardware.cores} cores, onnxruntime {result.hardware.onnxruntime}"
    if busy:  # the plot travels alone (a wiki, a ticket): it said nothing of a run's inflated timings
        title += f"\nbusy: other processes took {100 * result.others_cpu_share:.0f}% of the CPU; timings inflated"
    partial = result.interrupted
    if partial:
        old = [p for p in (path, csv_file, png) if p.exists()]  # named as left as they were only if they are there
        kept = f"; {_names(old)} {'are' if len(old) > 1 else 'is'} left as they were" if old else ""
        if not result.rows:
            click.echo(f"interrupted before any row was timed: nothing written{kept}", err=True)
            return
        path, csv_file, png = interrupted_path(path), interrupted_path(csv_file), interrupted_path(png)
        title = f"INTERRUPTED: partial run, {plural(len(result.rows), 'row')}; {title}"
    written = [path, csv_file, png]
    files = {
        path: json_text(result.rows, interrupted=partial).encode(),
        csv_file: csv_text(result.rows, interrupted=partial).encode(),
        png: latency_png_bytes(result.rows, title),
    }
    try:  # all three or none: a PNG that failed to write had replaced the JSON and CSV and removed the old PNG
        atomic_write_all(files)
    except OSError as exc:
        why = write_remedy(exc, "choose another --json folder")
        raise OutputError(
            f"{exc.filename}: cannot write ({exc.strerror or exc}); {why}; "
            f"{_names(written)} {'were not written' if partial else 'are left as they were'}"
        ) from exc
    if partial:
        rows = plural(len(result.rows), "row")
        click.echo(f"interrupted: {rows} of a partial run written to {_names(written)}{kept}", err=True)
        return
    click.echo(f"wrote {_names(written)}", err=True)
    _remove_partial(path, csv_file, png)


def _names(paths: list[Path]) -> str:
    return ", ".join(printable(str(p)) for p in paths)  # one line, whatever a name holds


def _remove_partial(path: Path, csv_file: Path, png: Path) -> None:
    """A complete run removes what an interrupted run with the same --json left beside it (a reader could take
    the older partial rows for the latest run); the CSV is named after the --json too, so another --json's partial
    files stay. The partial JSON goes last, so that a file that cannot be removed (a warning: the run itself is
    done) is still found by the next complete run."""
    from benchmarks.report import interrupted_path

    key = interrupted_path(path)
    if not key.is_file():
        return
    candidates = [interrupted_path(png), interrupted_path(csv_file), key]
    removed, kept = [], []
    for old in candidates:
        try:
            if old.is_file():
                old.unlink()
                removed.append(old)
        except OSError as exc:
            kept.append(f"{printable(str(old))} ({exc.strerror or exc})")
            break  # keep the partial JSON (the key) while a file it belongs with is left
    if removed:
        click.echo(f"removed {_names(removed)} (an interrupted run's rows; this run is complete)", err=True)
    if kept:
        click.echo(f"warning: could not remove {', '.join(kept)}; delete it by hand", err=True)


if __name__ == "__main__":
    main()
