"""The fault suite's environment: what the machine runs out of, or lacks, while the inputs are fine (file
descriptors, threads, a writable temporary folder, an encoding for stdout). The same promises as test_faults.py
(faults_common), and above all: no part passed unseen, no good image blamed for the machine's fault.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.errors import ExitCode, ResourceError
from tests.conftest import one_core_prefix
from tests.edge_runtime.conftest import write_parts
from tests.edge_runtime.faults_common import (
    invoke,
    no_hang,  # noqa: F401 - the autouse hang guard, for this module too
)
from tests.edge_runtime.test_cli import write_video


def test_running_out_of_file_descriptors_stops_the_run_not_blaming_each_image(tmp_path, tiny_model, monkeypatch):
    """Under `ulimit -n 13` 986 of 2000 good images were "cannot read file (Too many open files)", exit 0: an
    environment fault reported as bad images, and the parts never judged."""
    import edge_runtime.inputs as inputs

    write_parts(tmp_path / "parts", [10, 220] * 20)
    real, calls = inputs.read_bytes, []

    def read_bytes(path, **kw):
        calls.append(path)
        if len(calls) > 6:
            raise ResourceError("out of file descriptors (Too many open files); raise the limit (ulimit -n)")
        return real(path, **kw)

    monkeypatch.setattr(inputs, "read_bytes", read_bytes)
    out = tmp_path / "v.jsonl"
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--workers", "1",
                     "--batch-size", "2", "--output", str(out), "--fail-on-defect"])  # fmt: skip
    assert result.exit_code == ExitCode.INTERNAL, result.stderr
    assert "Traceback" not in result.stderr and "cannot read file" not in result.stdout + out.read_text()
    assert result.stderr.strip().splitlines()[-1].startswith("error: out of file descriptors")
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert 0 < len(records) < 40 and all(r["error"] is None for r in records)  # what was judged is kept
    assert f"summary: {len(records)} items" in result.stderr


def test_the_decoder_and_file_reader_say_which_errors_are_the_machines():
    from edge_runtime.decoding import read_bytes
    from edge_runtime.errors import resource_error

    assert isinstance(resource_error(OSError(errno.ENFILE, "Too many open files in system")), ResourceError)
    assert "ulimit -u" in str(resource_error(RuntimeError("can't start new thread")))
    assert resource_error(OSError(errno.EACCES, "Permission denied")) is None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    opened: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
        with pytest.raises(OSError) as full:  # every descriptor taken, as under `ulimit -n 13` with 64 workers
            while len(opened) < 100:
                opened.append(os.open(os.devnull, os.O_RDONLY))
        assert full.value.errno == errno.EMFILE
        with pytest.raises(ResourceError, match="out of file descriptors"):
            read_bytes(Path(__file__))
    finally:
        for fd in opened:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_video_reader_that_dies_is_a_lost_source_not_the_end_of_the_video(tmp_path, tiny_model, monkeypatch):
    """The reader thread died (of "Too many open files", at frame 1) with a traceback (no --debug), and the one frame
    read passed as the whole video: "1 item, 1 ok", exit 0 under --fail-on-defect, 300 defective frames unseen."""
    import edge_runtime.video_file as video_file

    ok, bad = np.full((48, 48), 10, np.uint8), np.full((48, 48), 220, np.uint8)
    video = write_video(tmp_path / "line.avi", [ok] * 4 + [bad] * 8)
    real = video_file.frame_item

    def frame_item(source, index, *args, **kw):
        if index == 3:  # not the video's own fault, and not one the run can read over
            raise OSError(errno.EIO, "Input/output error")
        return real(source, index, *args, **kw)

    monkeypatch.setattr(video_file, "frame_item", frame_item)
    result = invoke(["--model", str(tiny_model), "--source", str(video), "--fail-on-defect"])
    assert result.exit_code == ExitCode.SOURCE_UNAVAILABLE, result.stderr
    assert "Traceback" not in result.stderr and "Exception in thread" not in result.stderr
    assert "reading stopped at frame 3" in result.stderr and "the frames after it were not inspected" in result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_no_writable_temporary_folder_still_reads_images(monkeypatch):
    """With no writable temporary folder (a read-only root, docker --read-only) every image failed with "No usable
    temporary directory found" (the scratch file that collects decoder messages), and the run blamed the source."""
    import tempfile

    import edge_runtime.decoder_messages as messages
    import edge_runtime.decoding as decoding

    def no_tmp(*a, **kw):
        raise FileNotFoundError(errno.ENOENT, "No usable temporary directory found in ['/tmp', '/var/tmp']")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_tmp)
    fd = messages._scratch_fd()
    try:
        os.write(fd, b"Corrupt JPEG data\n")
        assert os.pread(fd, 100, 0) == b"Corrupt JPEG data\n"
    finally:
        os.close(fd)
    monkeypatch.setattr(messages, "_capture", messages._StderrCapture())
    part = cv2.imencode(".png", np.full((40, 40), 90, np.uint8))[1].tobytes()
    assert decoding.decode(part).image.shape == (40, 40)


def test_a_stdout_that_cannot_encode_a_name_does_not_stop_the_run(tmp_path, tiny_model):
    """PYTHONIOENCODING=ascii (or a C locale's terminal) stopped the run at the first non-ASCII file name with
    "unexpected UnicodeEncodeError", exit 1, no summary, the gate's defects uncounted."""
    parts = write_parts(tmp_path / "parts", [10, 220, 220])
    parts[1].rename(tmp_path / "parts" / "İDEF_ü.png")
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    proc = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "--model", str(tiny_model), "--source",
                           str(tmp_path / "parts"), "--fail-on-defect"], env=env, capture_output=True,
                          timeout=120)  # fmt: skip
    err = proc.stderr.decode("ascii", "replace")
    assert proc.returncode == ExitCode.DEFECT_FOUND, err
    assert "summary: 3 items" in err and "Traceback" not in err and "UnicodeEncodeError" not in err
    out = proc.stdout.decode("ascii")
    assert len(out.splitlines()) == 3 and "\\u0130DEF_\\xfc.png" in out


def test_a_small_edge_boxs_address_space_limit_runs_the_model(tmp_path):
    """Under `ulimit -v 1000000` (up to about 1.65 GB) every run ended "out of memory" before its first item: the
    model file was read with one read(1 GiB + 1), which reserves that much up front."""
    import resource

    write_parts(tmp_path / "parts", [10, 220])
    limit = 1400 << 20

    def small_box() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "--model", "int8", "--source",
                           str(tmp_path / "parts"), "--json", "--workers", "1", "--threads", "1"],
                          preexec_fn=small_box, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == ExitCode.OK, proc.stderr[-600:]
    assert len(proc.stdout.splitlines()) == 2


@pytest.mark.parametrize("command", ["edge-infer", "edge-infer --log", "export-onnx", "train-model"])
def test_a_deleted_current_folder_is_one_line(tmp_path, tiny_model, command):
    """`cd lot; rm -r ../lot; edge-infer ... --output o.jsonl` was "unexpected FileNotFoundError: [Errno 2] No such
    file or directory", exit 1, naming nothing; export-onnx and train-model died importing torch ("Intel oneMKL
    FATAL ERROR: Cannot load libtorch_cpu.so", exit 2, no error line), even with absolute paths."""
    script = Path(sys.executable).parent / command.split()[0]
    if not script.is_file():
        pytest.skip(f"needs the installed {command} console script (python -m needs the current folder)")
    write_parts(tmp_path / "parts", [10, 220])
    gone = tmp_path / "gone"
    gone.mkdir()
    args = {"edge-infer": ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--output", "o.jsonl"],
            "edge-infer --log": ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--log", "o.db"],
            "export-onnx": [str(Path(__file__).parents[2] / "train/default_model/best.pt"), "--out",
                            str(tmp_path / "m.onnx")],
            "train-model": ["--data", str(tmp_path / "parts"), "--out", str(tmp_path / "run")]}[command]  # fmt: skip
    proc = subprocess.run([str(script), *args], cwd=gone, preexec_fn=lambda: os.rmdir(gone), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == ExitCode.OUTPUT_ERROR, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: the current folder was deleted; cd into an existing folder (or give absolute paths) and run again"
    )


def test_onnxruntime_out_of_memory_mid_run_keeps_the_summary(tmp_path, tiny_model, monkeypatch):
    """onnxruntime's allocator failing mid-run ("bfc_arena ... Failed to allocate") was "unexpected Fail", exit 1,
    with no summary and no --summary file for the items already judged and written."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    import edge_runtime.model as model

    write_parts(tmp_path / "parts", [10, 220] * 10)
    real, calls = model.EdgeModel.network_scores, []

    def network_scores(self, x):
        calls.append(len(x))
        if len(calls) == 3:
            raise Fail("[ONNXRuntimeError] : 1 : FAIL : bfc_arena.cc:359 AllocateRawInternal Failed to allocate memory")
        return real(self, x)

    monkeypatch.setattr(model.EdgeModel, "network_scores", network_scores)
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--batch-size", "4",
                     "--output", str(out), "--summary", str(summary)])  # fmt: skip
    assert result.exit_code == ExitCode.INTERNAL, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "error: out of memory; pass a smaller --batch-size or fewer --workers, or free memory"
    written = len(out.read_text().splitlines())
    assert written > 0 and any(x.startswith(f"summary: {written} items") for x in lines)
    assert json.loads(summary.read_text())["items"] == written and "Traceback" not in result.stderr


def test_a_log_stopped_by_the_file_size_limit_says_so(tmp_path, tiny_model):
    """`ulimit -f` under --log: "inspection log failed (disk I/O error); check the disk and the file", where the
    --output message for the same limit names it (the disk was fine)."""
    import resource

    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(300):  # defective parts with texture: each keeps a thumbnail in the log
        cv2.imwrite(str(parts / f"p{i:03}.png"), np.random.default_rng(i).integers(150, 255, (96, 96), np.uint8))
    limit = 120_000

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "--model", str(tiny_model), "--source",
                           str(parts), "--log", str(tmp_path / "l.db"), "--quiet", "--batch-size", "8"],
                          preexec_fn=small_files, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == ExitCode.OUTPUT_ERROR, proc.stderr[-800:]
    assert f"file-size limit of {limit} bytes (ulimit -f)" in proc.stderr, proc.stderr[-800:]
    assert "Traceback" not in proc.stderr


def test_onnxruntime_without_threads_to_start_is_not_a_bad_model(tiny_model, monkeypatch):
    """Under `ulimit -u 5` onnxruntime's session could not start its thread pool ("pthread_create failed"), and
    the run said "defectnet_int8.onnx: onnxruntime cannot load it ... re-export", exit 4: a good model blamed."""
    import onnxruntime as ort

    from edge_runtime.model import load_model

    def no_threads(*a, **kw):
        raise RuntimeError("/onnxruntime/core/platform/posix/env.cc:180 pthread_create failed: Resource temporarily "
                           "unavailable")  # fmt: skip

    monkeypatch.setattr(ort, "InferenceSession", no_threads)
    with pytest.raises(ResourceError, match="the thread limit"):
        load_model(str(tiny_model))


def test_out_of_memory_in_opencv_or_onnxruntime_is_the_machines_fault(monkeypatch):
    """Under `ulimit -v 800000` OpenCV's "Insufficient memory" in the symmetry look was "unexpected error" with no
    summary, onnxruntime's "std::bad_alloc" "unexpected RuntimeException", and each big image "cannot decode"."""
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    import edge_runtime.decoding as decoding
    from edge_runtime.errors import ImageReadError, resource_error

    def opencv_out_of_memory(*a, **kw):
        return cv2.resize(np.zeros((1, 1), np.uint8), (1 << 30, 1 << 30))  # OpenCV's own allocator gives up

    with pytest.raises(cv2.error) as cv_oom:
        opencv_out_of_memory()
    if "Insufficient memory" not in str(cv_oom.value):
        pytest.skip("OpenCV found the memory here")
    assert "out of memory" in str(resource_error(cv_oom.value))
    assert "out of memory" in str(resource_error(RuntimeException("bad allocation: std::bad_alloc")))
    assert resource_error(RuntimeException("Non-zero status code returned while running Conv node")) is None
    monkeypatch.setattr(decoding, "imdecode_checked", opencv_out_of_memory)
    png = cv2.imencode(".png", np.full((40, 40), 90, np.uint8))[1].tobytes()
    with pytest.raises(ImageReadError, match="too large to decode in the memory this process may use"):
        decoding.decode(png, source="big.png")


def test_no_usable_temporary_folder_anywhere_is_one_line_naming_tmpdir():
    """train-model with no writable temporary folder (torch looks one up at import) ended "unexpected
    FileNotFoundError: No usable temporary directory found", exit 1."""
    import click
    from click.testing import CliRunner

    from edge_runtime.cli_support import debug_option, friendly_errors

    @click.command()
    @debug_option
    @friendly_errors
    def command(debug: bool) -> None:
        raise FileNotFoundError(errno.ENOENT, "No usable temporary directory found in ['/tmp', '/var/tmp']")

    r = CliRunner().invoke(command, [])
    assert r.exit_code == ExitCode.OUTPUT_ERROR
    assert r.output.strip().startswith("error: no writable temporary folder") and "point TMPDIR at" in r.output


def test_reading_an_image_leaves_no_python_warning_at_exit(tmp_path):
    """A program reading one image under `python -X dev` (or pytest's warnings) ended with "ResourceWarning: unclosed
    file <_io.TextIOWrapper name=3>": the copy of stderr the decoder's message capture sets aside."""
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), np.full((64, 64), 128, np.uint8))
    code = f"from edge_runtime import read_image; read_image({str(image)!r})"
    proc = subprocess.run([sys.executable, "-X", "dev", "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.parametrize(("option", "env", "said"), [
    (["--threads", "2"], {}, ("--threads 2", "use --threads 1")),
    ([], {"DEFECT_EDGE_THREADS": "2"}, ("DEFECT_EDGE_THREADS=2", "use DEFECT_EDGE_THREADS=1")),
], ids=["option", "environment"])  # fmt: skip
def test_more_threads_than_the_cores_allowed_warn_and_run_as_asked(tmp_path, tiny_model, option, env, said):
    """`taskset -c 0 edge-infer --threads 2` on 2 cores was taken in silence: onnxruntime's two spinning threads
    took turns on the one core (the 715 test images at 226 items/s, 517 with --threads 1). One warning line names
    the limit and what to do; the run goes on with the count given."""
    prefix = one_core_prefix()
    write_parts(tmp_path / "parts", [10, 220])
    cmd = [*prefix, sys.executable, "-m", "edge_runtime.cli", "--model", str(tiny_model), "--source",
           str(tmp_path / "parts"), "--json", *option]  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if k != "DEFECT_EDGE_THREADS"} | env
    r = subprocess.run(cmd, capture_output=True, text=True, env=environ, timeout=120)
    assert r.returncode == 0, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("warning: ")]
    assert line.startswith(f"warning: {said[0]} but this process may use 1 core (") and line.endswith(said[1]), line
    assert "threads 2" in r.stderr and "ThreadsWarning" not in r.stderr  # run as asked; no Python warning too
    assert len(r.stdout.splitlines()) == 2
    ok = subprocess.run([*cmd[: cmd.index("--json") + 1], "--threads", "1"], capture_output=True, text=True,
                        env=environ, timeout=120)  # fmt: skip
    assert ok.returncode == 0 and "warning" not in ok.stderr, ok.stderr


def test_load_model_with_more_threads_than_the_cores_allowed_gives_a_threads_warning(tiny_model):
    """The Python API took load_model(threads=2) under taskset -c 0 in silence; it gives a ThreadsWarning now,
    pointed at the caller's line, and loads the model with 2 threads all the same."""
    prefix = one_core_prefix()
    code = "\n".join([
        "import json, sys, warnings",
        "from edge_runtime import load_model",
        "with warnings.catch_warnings(record=True) as seen:",
        "    warnings.simplefilter('always')",
        f"    model = load_model({str(tiny_model)!r}, provider='cpu', threads=2)",
        f"    load_model({str(tiny_model)!r}, provider='cpu', threads=1)",
        "threads = model.session.get_session_options().intra_op_num_threads",
        "print(json.dumps([threads, [(w.category.__name__, str(w.message), w.lineno) for w in seen]]))",
    ])  # fmt: skip
    r = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    threads, seen = json.loads(r.stdout)
    assert threads == 2 and len(seen) == 1, seen
    category, message, line = seen[0]
    assert category == "ThreadsWarning" and line == 5  # the load_model(threads=2) line, not one inside the package
    assert message.startswith("threads=2 but this process may use 1 core (") and message.endswith("use threads=1")


def test_load_model_names_defect_edge_threads_when_the_count_came_from_it(tiny_model):
    """load_model() without threads, under DEFECT_EDGE_THREADS=2 and taskset -c 0: the warning said "threads=2 ...
    use threads=1" to a caller who had passed no threads. It names the variable now, at the caller's line, once."""
    prefix = one_core_prefix()
    code = "\n".join([
        "import json, warnings",
        "from edge_runtime import load_model",
        "with warnings.catch_warnings(record=True) as seen:",
        "    warnings.simplefilter('always')",
        f"    model = load_model({str(tiny_model)!r}, provider='cpu')",
        "threads = model.session.get_session_options().intra_op_num_threads",
        "print(json.dumps([threads, [(w.category.__name__, str(w.message), w.lineno) for w in seen]]))",
    ])  # fmt: skip
    env = os.environ | {"DEFECT_EDGE_THREADS": "2"}
    r = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    threads, seen = json.loads(r.stdout)
    assert threads == 2 and len(seen) == 1, seen
    category, message, line = seen[0]
    assert category == "ThreadsWarning" and line == 5, seen
    assert message.startswith("DEFECT_EDGE_THREADS=2 but this process may use 1 core (")
    assert message.endswith("use DEFECT_EDGE_THREADS=1"), message
