"""``edge-infer``: verdicts from a camera, stream, video, folder or files, with the bundled INT8 model by default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from edge_runtime.cli_support import (
    Command,
    FiniteFloatRange,
    GivenPath,
    debug_option,
    friendly_errors,
    once,
    stdout_errors,
    typed_params,
    version_option,
)
from edge_runtime.errors import EXIT_CODES_HELP
from edge_runtime.station.options import open_station, station_options

CHECK_STATION_OPTIONS = ("check_station", "model", "debug")  # the options --check-station uses
PROVIDERS = ["auto", "cpu", "cuda", "tensorrt"]  # edge_runtime.model.Provider (not imported: keeps --help light)

HELP = (
    "Classify parts as defective or OK with an exported defect-edge ONNX model (onnxruntime, no torch).\n\n"
    "Live sources (--camera, rtsp://, http://) are read on a capture thread that keeps only the newest frame and "
    "are reopened with backoff when they drop; files, folders, globs and video files are processed item by item "
    "(every frame), decoded in the background and inferred in batches (latency_ms is then the item's share).\n\n"
    "Verdicts go to stdout (human lines, or JSON lines with --json); messages and the final summary (items, "
    'defects, errors, latency p50/p99, items/s) go to stderr. An unreadable item gets a line with "error" and the '
    "run goes on.\n\n"
    "\b\nExamples:\n"
    "  edge-infer --camera 0 --show\n"
    "  edge-infer --source parts/ --json > verdicts.jsonl\n"
    "  edge-infer --source line3.mp4 --save annotated.mp4 --output verdicts.csv\n"
    "  edge-infer --source rtsp://10.0.0.5/stream1 --fail-on-defect --max-frames 100\n"
    "  edge-infer --camera 0 --log station.db --log-keep 30d --serve 127.0.0.1:8080\n\n" + EXIT_CODES_HELP
)


@click.command(cls=Command, help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--source",
    "source",
    metavar="PATH|DIR|GLOB|VIDEO|URL",
    multiple=True,
    callback=lambda ctx, param, values: once(param, values),
    help="Image file, folder (recursive), quoted glob, video file, or rtsp:// / http:// stream.",
)
@click.option(
    "--camera",
    "camera",
    metavar="N|DEVICE",
    multiple=True,
    callback=lambda ctx, param, values: once(param, values),
    help="Camera index (0) or device path (/dev/video2).",
)
@click.option(
    "--model",
    "model",
    type=click.Path(),  # as typed: ./fp32 names a file, only a bare fp32 the bundled model
    multiple=True,
    callback=lambda ctx, param, values: once(param, values),
    help="ONNX model from export-onnx, or int8 / fp32 for a bundled model [default: the bundled INT8 model].",
)
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    default="auto",
    show_default=True,
    help="onnxruntime execution provider; a fallback to CPU is reported loudly.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Inference threads, 1..CPU cores [default: $DEFECT_EDGE_THREADS or onnxruntime's choice].",
)
@click.option("--json", "json_stdout", is_flag=True, help="Write one JSON line per item to stdout (nothing else).")
@click.option(
    "--output",
    type=GivenPath(path_type=Path, dir_okay=False, what="a file"),
    multiple=True,
    callback=lambda ctx, param, values: once(param, values),
    help="Also write verdicts to FILE.jsonl (JSON lines), FILE.json (one JSON array) or FILE.csv, per item.",
)
@click.option(
    "--append",
    "append_output",
    is_flag=True,
    help="Add this run's records after those already in the --output FILE.jsonl or FILE.csv [default: replace them "
    "once the source opens].",
)
@click.option(
    "--save",
    type=GivenPath(path_type=Path, what="a video file or a folder"),  # "" was ".": pictures into the current folder
    multiple=True,
    callback=lambda ctx, param, values: once(param, values),
    help="Save annotated frames: OUT.mp4/.avi/.mkv (video) or a folder (JPEGs).",
)
@click.option("--show", is_flag=True, help="Show a window with label, score and FPS (headless when no display).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N items.")
@click.option(
    "--fail-on-defect",
    is_flag=True,
    help="Exit with code 10 when any item is defective, unreadable, damaged, or shows no part, or frames of a video "
    "could not be read (a gate).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1024),
    default=32,
    show_default=True,
    help="Items per inference call for files and video files (live sources: 1).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Decoding threads for files [default: CPU count, at most 8].",
)
@click.option(
    "--max-reconnects",
    type=click.IntRange(min=0),
    default=None,
    help="Give up on a dropped camera/stream after N reopen attempts that did not bring it back (5 frames over "
    "10 s) [default: never].",
)
@click.option(
    "--read-timeout",
    type=FiniteFloatRange(0.5, 3600),
    default=5.0,
    show_default=True,
    help="Seconds a stream may send nothing before it counts as dropped and is reopened: raise it for a camera "
    "that sends a frame per part, triggered, when parts come further apart.",
)
@click.option(
    "--summary",
    "summary_path",
    type=GivenPath(path_type=Path, dir_okay=False, what="a file"),
    multiple=True,
    callback=lambda ctx, param, values: once(param, values),
    help="Also write the summary as JSON to this file.",
)
@click.option("--quiet", is_flag=True, help="No per-item verdict lines (the summary is still printed).")
@click.option(
    "--heatmap",
    is_flag=True,
    help="Show where the defect is: draw the model's localisation map on --show/--save and add defect_box "
    "[x0, y0, x1, y1] (source pixels, null when OK) to each record. Needs a model exported with the map.",
)
@click.option(
    "--check-station",
    "check_station",
    type=click.Path(),  # a str: an empty value (an unset variable) is not the current folder; a file: _check_station
    default=None,
    metavar="DIR",
    help="Station check only: compare a folder of unlabelled images from a new camera with the model's training "
    "images (light, background, framing, sharpness) and print a short report; no verdicts. Exit 6 when more than "
    "1% of the files look unlike the training images or are unreadable.",
)
@click.option(
    "--no-station-check",
    "no_station_check",
    is_flag=True,
    help="Do not flag items that look unlike the training images (saves about 0.1 ms per item); a frame without "
    "a part, with more than one, or with a part too small in the image is still flagged, and --fail-on-defect still "
    "fails on it.",
)
@click.option(
    "--priority",
    type=click.Choice(["auto", "normal", "realtime"]),
    default="auto",
    show_default=True,
    help="CPU priority of a live source's inspection loop. auto: real-time (SCHED_RR) where the system allows it "
    "(root, CAP_SYS_NICE or LimitRTPRIO), so a browser or other job on the same cores cannot delay a frame; "
    "back to normal if the loop keeps a core over half busy. realtime: the same, or an error where not allowed.",
)
@station_options
@version_option
@debug_option
@friendly_errors
def main(*, debug: bool, **opts: object) -> None:
    # First, before anything slow: a SIGTERM from now on ends the run cleanly, with a summary.
    from edge_runtime.stopping import StopSignals
    from edge_runtime.summary import Summary

    # The summary first: a signal the moment the handlers are in place (a SIGTERM sent as soon as the process
    # catches it) interrupted its making, outside the try below: "error: interrupted" with no summary.
    summary = Summary(source=str(opts["source"] or f"camera {opts['camera']}"))
    stop = StopSignals.for_command()  # installed before edge-infer's imports, when run as the console script
    try:
        if stop.requested:  # a signal during the imports or the option parsing
            raise KeyboardInterrupt
        code = _run(opts, debug=debug, stop=stop, summary=summary)
    except KeyboardInterrupt:
        if summary.wall_s:  # run_inference already reported
            raise
        if opts.get("check_station") is not None:  # no run, so no run's summary ("0 items ... everything above")
            click.echo("error: interrupted: the station check stopped before its report", err=True)
            raise SystemExit(130) from None
        summary.interrupted = True
        click.echo(summary.finish().text(), err=True)
        for kept in (opts.get("output"), opts.get("summary_path")):
            if kept is not None and os.path.lexists(kept):  # as run_inference says of a run stopped early
                click.echo(f"{kept}: left as it was (the run stopped before its source was read)", err=True)
        code = 130
    finally:
        stop.finish()
    raise SystemExit(int(code))


def _run(opts: dict, *, debug: bool, stop: Any, summary: Any) -> int:
    with stop.atomic():  # a signal now would break a C extension's import; it is acted on right after
        if not debug:
            # OpenCV, FFmpeg and libjpeg print their own messages; we print one sentence per problem instead.
            os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
            os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
        import cv2

        if not debug:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        from edge_runtime.providers import onnxruntime_module

        onnxruntime_module()  # imported here, where a signal cannot interrupt it

        from edge_runtime.clock import clock_warning
        from edge_runtime.errors import DataError
        from edge_runtime.infer import InferConfig, run_inference
        from edge_runtime.model import Provider, RuntimeConfig, check_threads, model_path, threads_from_env
        from edge_runtime.output_checks import check_distinct_outputs, check_not_a_std_stream
        from edge_runtime.priority import Priority

    if opts["check_station"] is not None:
        _refuse_run_options()
        return _check_station(opts)
    if opts["source"] is not None and opts["camera"] is not None:
        raise click.UsageError("give one input: --source PATH|DIR|GLOB|VIDEO|URL or --camera N, not both")
    if opts["source"] is None and opts["camera"] is None:
        raise DataError("no input: pass --source PATH|DIR|GLOB|VIDEO|URL or --camera N")
    if opts["append_output"] and opts["output"] is None:  # it would have been ignored without a word
        raise click.UsageError("--append adds to an --output file: give --output FILE.jsonl or FILE.csv")
    threads = check_threads(opts["threads"]) if opts["threads"] is not None else threads_from_env()
    _warn_over_cores(threads, typed=opts["threads"] is not None)
    # before the log is opened: --output, --summary or --save on the log's file would ruin both
    named = {opt: opts[key] for opt, key in (("--log", "log"), ("--output", "output"), ("--summary", "summary_path"),
                                             ("--save", "save"))}  # fmt: skip
    check_distinct_outputs(named)
    check_not_a_std_stream(named)
    cfg = InferConfig(
        source=opts["source"],
        camera=opts["camera"],
        model=model_path(opts["model"]) if opts["model"] is not None else None,
        runtime=RuntimeConfig(provider=Provider(opts["provider"]), threads=threads),
        json_stdout=opts["json_stdout"],
        output=opts["output"],
        append_output=opts["append_output"],
        save=opts["save"],
        show=opts["show"],
        max_frames=opts["max_frames"],
        fail_on_defect=opts["fail_on_defect"],
        batch_size=opts["batch_size"],
        workers=opts["workers"] or min(os.cpu_count() or 2, 8),
        max_reconnects=opts["max_reconnects"],
        read_timeout_s=opts["read_timeout"],
        summary_path=opts["summary_path"],
        quiet=opts["quiet"],
        listener=open_station(opts),  # None without --log/--serve
        heatmap=opts["heatmap"],
        station_check=not opts["no_station_check"],
        priority=Priority(opts["priority"]),
    )
    if (wrong_clock := clock_warning()) is not None:  # before the records it makes wrong
        click.echo(wrong_clock, err=True)
    try:
        _, code = run_inference(cfg, stop=stop, summary=summary)
    finally:
        if cfg.listener is not None:
            cfg.listener.close()
    return int(code)


def _warn_over_cores(threads: int | None, *, typed: bool) -> None:
    """A thread count above the cores this process may use (taskset, a cpuset, a CPU quota) is run as given, after
    one warning line (it was taken in silence: under taskset -c 0 on 2 cores, --threads 2 ran the 715 test images at
    226 items/s, --threads 1 at 517). The library's ThreadsWarning for that count is not shown again."""
    import warnings

    from edge_runtime.cpu_quota import threads_warning
    from edge_runtime.errors import ThreadsWarning

    if threads is None:
        return
    line = threads_warning(threads, spelled="--threads {}" if typed else "DEFECT_EDGE_THREADS={}")
    if line is not None:
        click.echo(f"warning: {line}", err=True)
    warnings.filterwarnings("ignore", category=ThreadsWarning)  # this process is edge-infer's: said once, above


def _refuse_run_options() -> None:
    """--check-station judges nothing: an option of a run (--source, --log, --serve ...) with it would be
    silently ignored, and a user who asked for a log would believe there is one."""
    given = [p.opts[0] for p in typed_params() if p.name not in CHECK_STATION_OPTIONS]
    if given:
        raise click.UsageError(
            f"--check-station DIR only compares a folder with the training images; drop {', '.join(given)} "
            "(or run edge-infer --source DIR for verdicts)"
        )


def _check_station(opts: dict) -> int:
    from edge_runtime.errors import DataError, ExitCode
    from edge_runtime.inputs import SourceKind, listing_line, resolve_source
    from edge_runtime.model import load_model
    from edge_runtime.station_check import CheckStopped, check_folder

    folder = opts["check_station"]
    if not folder.strip():  # Path("") is the current folder: it was checked, 566 images of whatever lay there
        raise DataError("no input: --check-station is empty (an unset shell variable?); pass --check-station DIR")
    if os.path.isfile(folder):  # click's "Directory 'cam.mp4' is a file" said neither what to pass nor about --source
        raise DataError(f"{folder}: is a file, not a folder; pass --check-station the folder of the new camera's "
                        f"images (edge-infer --source {folder} judges this one file)")  # fmt: skip
    spec = resolve_source(folder)
    if spec.kind is not SourceKind.IMAGES or not spec.paths:
        raise DataError(f"{folder}: no images found; pass --check-station DIR with images from the new camera")
    model = load_model(opts["model"], provider="cpu", threads=1)
    code = ExitCode.GATE_FAILED  # when the folder does not pass
    try:
        lines, alike = check_folder(model, spec.paths)
    except CheckStopped as stopped:  # the report of the images seen before Ctrl-C, which had been lost
        lines, alike, code = stopped.lines, False, ExitCode.INTERRUPTED
    if spec.ignored or spec.links_not_followed:  # as --source says it: a video or a linked folder went unchecked
        lines.insert(1, f"  {listing_line(spec)}")
    with stdout_errors():  # `| head` ends quietly, `> /dev/full` is exit 7
        for line in lines:
            click.echo(line)
    # A script or a commissioning checklist can gate on it: "do not trust these verdicts yet" exited 0.
    return int(ExitCode.OK if alike else code)


if __name__ == "__main__":
    main()
