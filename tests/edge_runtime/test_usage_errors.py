"""A mistyped option is one line on stderr, as every other error is: what is wrong and where the options are
listed, with exit code 2. click alone prints a usage line, a hint, a blank line and the error (four lines)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

HAS_TORCH = importlib.util.find_spec("torch") is not None

CASES = [
    # (module run as the console script, its name, arguments, words the line must hold)
    ("edge_runtime.cli", "edge-infer", ["--bogus"], ["--bogus", "Did you mean"]),
    ("edge_runtime.cli", "edge-infer", ["--source", "a.jpg", "--source", "b.jpg"], ["--source", "given 2 times"]),
    ("edge_runtime.cli", "edge-infer", ["--source", "a.jpg", "--camera", "0"], ["give one input"]),
    # given twice, click kept the last: the first file was never written
    ("edge_runtime.cli", "edge-infer", ["--output", "a.json", "--output", "b.json"], ["--output", "given 2 times"]),
    ("edge_runtime.cli", "edge-infer", ["--save", "a", "--save", "b"], ["--save", "given 2 times"]),
    ("edge_runtime.cli", "edge-infer", ["--summary", "a", "--summary", "b"], ["--summary", "given 2 times"]),
    ("edge_runtime.cli", "edge-infer", ["--log", "a.db", "--log", "b.db"], ["--log", "given 2 times"]),
    ("edge_runtime.cli", "edge-infer", ["--batch-size", "zero"], ["--batch-size", "zero"]),
    ("edge_runtime.station.log_cli", "edge-log query", ["query", "--bogus"], ["--bogus"]),
    ("edge_runtime.station.log_cli", "edge-log", ["nosuch"], ["nosuch"]),
    # click's parser raises these with no command to name: they said "see 'the command --help'"
    ("edge_runtime.cli", "edge-infer", ["--source"], ["--source", "requires an argument"]),
    ("edge_runtime.cli", "edge-infer", ["--quiet=yes"], ["--quiet", "does not take a value"]),
    ("edge_runtime.station.log_cli", "edge-log query", ["query", "x.db", "--limit"], ["--limit"]),
    ("benchmarks.cli", "edge-bench", ["--runs", "0"], ["--runs", "0"]),
    ("train.cli", "train-model", ["--epochs", "x"], ["--epochs", "'x'"]),
    ("export.cli", "export-onnx", ["--quantize", "int4"], ["--quantize", "int4"]),
]


@pytest.mark.parametrize(("module", "name", "args", "words"), CASES, ids=[" ".join(c[2]) for c in CASES])
def test_usage_error_is_one_line_naming_the_problem_and_help(
    module: str, name: str, args: list[str], words: list[str]
) -> None:
    if module.split(".")[0] in ("train", "export") and not HAS_TORCH:
        pytest.skip("train-model and export-onnx come with the [train] extra (torch), not in a runtime-only install")
    code = f"import sys; sys.argv[0] = {name.split()[0]!r}; from {module} import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith("--help')"), lines[0]
    assert f"(see '{name} --help')" in lines[0], lines[0]  # the command's own help (edge-log query's for it)
    assert all(w in lines[0] for w in words), lines[0]
    assert proc.stdout == ""


def test_help_and_a_correct_command_are_as_before() -> None:
    """Only usage errors change: --help still prints the usage and exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "--help"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: ") and proc.stderr == ""


def test_a_group_without_its_subcommand_is_one_usage_line() -> None:
    """Neither a one-line error made of the whole help text with its newlines escaped, nor (as since) the 15-line
    help on stderr: one line that says what is missing and where the commands are listed, exit 2."""
    code = "import sys; sys.argv[0] = 'edge-log'; from edge_runtime.station.log_cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stdout == "" and "\\n" not in proc.stderr
    assert proc.stderr.splitlines() == ["error: Missing command (see 'edge-log --help')"]


def _edge_infer(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
    code = "import sys; sys.argv[0] = 'edge-infer'; from edge_runtime.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, check=False, timeout=60, **kwargs)  # type: ignore[call-overload]


def test_help_onto_a_full_stdout_is_one_line_exit_7_and_a_closed_pipe_ends_quietly() -> None:
    with open("/dev/full", "w") as full:
        proc = _edge_infer("--help", stdout=full, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 7 and proc.stderr.splitlines() == [
        "error: stdout: cannot write the help (No space left on device); free space where stdout goes, or send it "
        "elsewhere"
    ]  # was a traceback, exit 1
    reader = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    proc = _edge_infer("--help", stdout=reader.stdin, stderr=subprocess.PIPE, text=True)
    reader.stdin.close()
    reader.wait()
    assert proc.returncode == 0 and "Traceback" not in proc.stderr


def test_version_onto_a_full_stdout_names_the_version_not_the_help() -> None:
    with open("/dev/full", "w") as full:
        proc = _edge_infer("--version", stdout=full, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 7 and proc.stderr.splitlines() == [
        "error: stdout: cannot write the version (No space left on device); free space where stdout goes, or send it "
        "elsewhere"
    ]  # said "cannot write the help": the user asked for no help


def test_a_usage_error_onto_a_full_stderr_still_exits_2() -> None:
    with open("/dev/full", "w") as full:
        proc = _edge_infer("--bogus", stdout=subprocess.PIPE, stderr=full)
    assert proc.returncode == 2  # was 1: the failed write of the message became the exit code


def test_an_unquoted_pattern_the_shell_expanded_is_a_short_line_saying_to_quote_it(tmp_path) -> None:
    """452 file names made one 26 kB line with no hint."""
    names = [str(tmp_path / f"part_{i:03}.jpeg") for i in range(452)]
    proc = _edge_infer("--source", *names, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and len(proc.stderr) < 600, proc.stderr
    assert "unexpected extra arguments (" in proc.stderr and "Quote it, as in --source 'dir/*.jpeg'" in proc.stderr


@pytest.mark.parametrize(
    ("module", "args", "code", "words"),
    [
        ("edge_runtime.demo", ["--help"], 0, "Usage:"),  # --help was taken for the video's file name
        ("edge_runtime.demo", ["out.mp4"], 2, "Motion-JPEG .avi"),
        ("edge_runtime.station.demo", ["--camera-port", "99999"], 2, "--camera-port"),  # OverflowError traceback
        ("edge_runtime.station.demo", ["--serve", "nonsense"], 2, "is not HOST:PORT"),  # after the camera started
        ("edge_runtime.station.demo", ["--video", "/nonexistent/v.avi"], 3, "no such video"),  # it made one there
        ("edge_runtime.station.demo", ["--serve", "0.0.0.0:8085"], 2, "serves this machine only"),  # "--token"
        ("edge_runtime.station.demo", ["--log", "a.db", "--log", "b.db"], 2, "given 2 times"),
    ],
)
def test_the_demo_tools_take_options_as_options(module: str, args: list[str], code: int, words: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == code and words in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("module", "name"),
    [("edge_runtime.station.log_cli", "edge-log"), ("benchmarks.cli", "edge-bench"), ("train.cli", "train-model")],
)
def test_each_help_lists_the_exit_codes_of_its_own_command(module: str, name: str) -> None:
    """Every command's help carried edge-infer's footer, with "10 defect found (--fail-on-defect ...)"."""
    if module.startswith("train") and not HAS_TORCH:
        pytest.skip("train-model comes with the [train] extra")
    code = f"import sys; sys.argv[0] = {name!r}; from {module} import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "--help"], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "Exit codes: 0 ok" in proc.stdout and "--fail-on-defect" not in proc.stdout


def test_extra_arguments_elsewhere_get_no_source_hint_and_stderr_full_help_still_exits_2() -> None:
    """edge-log's --source is a text filter: "quote it, as in --source 'dir/*.jpeg'" was wrong advice there; and
    edge-log's help onto an unwritable stderr ended with exit 1."""
    code = "import sys; sys.argv[0] = 'edge-log'; from edge_runtime.station.log_cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "query", "x.db", "y.db"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "unexpected extra argument" in proc.stderr and "--source" not in proc.stderr
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=full, check=False)
    assert proc.returncode == 2


def test_the_project_s_own_usage_errors_name_the_help_too(tmp_path) -> None:
    from tests.edge_runtime.conftest import write_parts

    write_parts(tmp_path / "parts", [10])
    proc = _edge_infer(
        "--source", str(tmp_path / "parts"), "--output", str(tmp_path / "r.txt"), capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.strip().endswith("(see 'edge-infer --help')"), proc.stderr


def test_the_demo_video_that_could_not_be_written_is_exit_7(tmp_path) -> None:
    """Under a file-size limit (or on a full disk) it printed 25 OpenCV warnings, then success, exit 0."""
    import resource

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    proc = subprocess.run(
        [sys.executable, "-m", "edge_runtime.demo", str(tmp_path / "v.avi")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False, preexec_fn=limited,
    )  # fmt: skip
    assert proc.returncode == 7 and proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert "could not be written whole" in proc.stderr
    assert not list(tmp_path.iterdir())  # no short video left for the station demo to play, nor a temporary one


def test_a_demo_video_that_fails_leaves_the_good_one_in_place(tmp_path) -> None:
    import resource

    good = tmp_path / "v.avi"
    assert subprocess.run([sys.executable, "-m", "edge_runtime.demo", str(good)], cwd=REPO, check=False).returncode == 0
    before = good.read_bytes()

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    proc = subprocess.run([sys.executable, "-m", "edge_runtime.demo", str(good)], cwd=REPO, capture_output=True,
                          text=True, check=False, preexec_fn=limited)  # fmt: skip
    assert proc.returncode == 7 and good.read_bytes() == before  # a good video was cut to 100 kB


def test_help_onto_a_full_stdout_and_stderr_still_exits_7() -> None:
    """The error line could not be written either, and the exit was 1, "internal error"."""
    with open("/dev/full", "w") as full:
        proc = _edge_infer("--help", stdout=full, stderr=full)
    assert proc.returncode == 7


def test_the_station_demo_finds_its_page_port_taken_before_its_camera_starts() -> None:
    """A busy --serve port was found only after the demo camera had started and the page's URL was printed."""
    import socket

    from tests.edge_runtime.test_streams import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        args = ["--serve", f"127.0.0.1:{port}", "--camera-port", str(free_port())]
        proc = subprocess.run(
            [sys.executable, "-m", "edge_runtime.station.demo", *args],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 7 and proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert f"127.0.0.1:{port}: cannot serve there" in proc.stderr and "demo camera" not in proc.stderr


def test_the_station_demo_refuses_one_port_for_its_camera_and_its_page() -> None:
    args = ["--serve", "127.0.0.1:8093", "--camera-port", "8093"]
    proc = subprocess.run(
        [sys.executable, "-m", "edge_runtime.station.demo", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "--camera-port 8093: the station page is served there" in proc.stderr, proc.stderr
    assert "demo camera" not in proc.stderr


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("export.cli", ["--eval-data", ""]),
        ("export.cli", ["--quantize", "--calib-data", " "]),
        ("train.cli", ["--data", ""]),
        ("benchmarks.cli", ["--data", ""]),
        ("benchmarks.robustness", ["--data", ""]),
        ("benchmarks.second_look", ["--data", ""]),
    ],
)
def test_an_empty_data_folder_is_a_usage_error_not_the_current_folder(module, args, tmp_path, monkeypatch) -> None:
    """`--eval-data "$DIR"` with DIR unset was Path(""), the current folder: an export evaluated or calibrated on
    whatever lay there, exit 0, and train-model and edge-bench took it for a data set."""
    import importlib

    from click.testing import CliRunner

    if module in ("export.cli", "train.cli"):
        pytest.importorskip("torch", reason="needs the [train] extra")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(importlib.import_module(module).main, args)
    assert r.exit_code == 2, r.output
    assert "is empty (an unset shell variable?)" in r.output


@pytest.mark.parametrize(
    ("module", "args", "option"),
    [
        ("edge_runtime.cli", ["--source", "edge_runtime/samples/test", "--output", ""], "'--output'"),
        ("edge_runtime.cli", ["--source", "edge_runtime/samples/test", "--summary", ""], "'--summary'"),
        ("edge_runtime.cli", ["--source", "edge_runtime/samples/test", "--save", ""], "'--save'"),
        ("edge_runtime.cli", ["--source", "edge_runtime/samples/test", "--log", ""], "'--log'"),
        ("edge_runtime.station.log_cli", ["summary", ""], "'DB'"),
        ("edge_runtime.station.log_cli", ["show", "x.db", "1", "--out", ""], "'--out'"),
        ("benchmarks", ["--json", ""], "'--json'"),
    ],
)
def test_an_empty_file_name_is_named_as_empty(module: str, args: list[str], option: str):
    """`--output "$OUT"` with OUT unset was read as ".": refused for its suffix, or as a folder ("pass --json
    FILE.json"), or (edge-log) as a log that is not there: messages about a "." nobody typed. `--save ""` saved
    the annotated pictures into the current folder (exit 0); `--log ""` said the log "cannot be opened" (exit 7)."""
    r = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"Invalid value for {option}: is empty (an unset shell variable?); pass " in r.stderr
    assert "Traceback" not in r.stderr and "." not in r.stderr.split("pass ", 1)[1].split(" (see")[0]


def test_a_folder_without_images_names_what_it_holds(tmp_path: Path):
    """A folder holding a video (and notes) said "folder holds no images (.bmp, ...)" alone, for edge-infer and for
    --check-station: which files it passed over, and how a video is inspected, were not said."""
    (tmp_path / "line.mp4").write_bytes(b"not read")
    (tmp_path / "notes.txt").write_text("shift 3")
    for args in (["--source", str(tmp_path)], ["--check-station", str(tmp_path)]):
        r = subprocess.run([sys.executable, "-m", "edge_runtime.cli", *args], cwd=REPO, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
        assert r.returncode == 3, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert "folder holds no images" in line and "it holds 2 other files: line.mp4, notes.txt" in line
        assert f"(a video is inspected with --source {tmp_path / 'line.mp4'})" in line


def test_the_exit_code_of_running_out_of_resources_is_documented_as_such() -> None:
    """Out of file descriptors, threads or memory ends a command with exit 1 (its line names the limit to raise),
    which every help and the README's table of exit codes named only as an internal error, a bug to report."""
    from edge_runtime.errors import ResourceError

    code = int(ResourceError("x").exit_code)
    proc = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "--help"], cwd=REPO, capture_output=True,
                          text=True, check=False)  # fmt: skip
    footer = " ".join(proc.stdout.split("Exit codes:")[1].split())
    assert f"{code} internal error (rerun with --debug), or out of file descriptors, threads or memory;" in footer
    row = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(f"| {code} |"))
    assert "out of file descriptors, threads or memory" in row, row
