"""The fault suite's sources and options: sources that do not exist or cannot be one, folders that cannot be listed
or nest deep, patterns, cameras, settings and options given twice or together; what is not inspected is named.
The same promises as test_faults.py (faults_common.check).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.errors import ExitCode
from tests.edge_runtime.conftest import write_parts
from tests.edge_runtime.faults_common import (
    GOOD_LEVELS,
    check,
    invoke,
    no_hang,  # noqa: F401 - the autouse hang guard, for this module too
)

# ------------------------------------------------------------------------------------------ sources, options


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("missing-path", ExitCode.BAD_DATA),
        ("empty-folder", ExitCode.BAD_DATA),
        ("only-notes", ExitCode.BAD_DATA),
        ("glob-no-match", ExitCode.BAD_DATA),
        ("fifo-video", ExitCode.SOURCE_UNAVAILABLE),
        ("dev-zero-video", ExitCode.SOURCE_UNAVAILABLE),
        ("random-video", ExitCode.SOURCE_UNAVAILABLE),
        ("empty-video", ExitCode.SOURCE_UNAVAILABLE),
    ],
)
def test_bad_source_is_one_line_with_its_code(tmp_path, tiny_model, case, code):
    import os

    p = tmp_path / "src"
    if case == "empty-folder":
        p.mkdir()
    elif case == "only-notes":
        p.mkdir()
        (p / "notes.txt").write_text("x")
    elif case == "glob-no-match":
        p = tmp_path / "*.nothing"
    elif case == "fifo-video":
        p = tmp_path / "v.mp4"
        os.mkfifo(p)
    elif case == "dev-zero-video":
        p = tmp_path / "v.mp4"
        p.symlink_to("/dev/zero")
    elif case == "random-video":
        p = tmp_path / "v.mp4"
        p.write_bytes(os.urandom(4000))
    elif case == "empty-video":
        p = tmp_path / "v.avi"
        p.write_bytes(b"")
    check(invoke(["--model", str(tiny_model), "--source", str(p)]), code, error_lines=1)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--threads", "0"], None),
        (["--threads", "512"], None),
        (["--threads", "abc"], None),
        ([], {"DEFECT_EDGE_THREADS": "abc"}),
        ([], {"DEFECT_EDGE_THREADS": "0"}),
        ([], {"DEFECT_EDGE_THREADS": "-3"}),
        ([], {"DEFECT_EDGE_THREADS": "100000"}),
        ([], {"DEFECT_EDGE_THREADS": "1.5"}),
        (["--batch-size", "0"], None),
        (["--batch-size", "100000"], None),
        (["--workers", "0"], None),
        (["--max-frames", "0"], None),
        (["--max-reconnects", "-1"], None),
        (["--read-timeout", "nan"], None),  # exit 5 at the stream's open: "cannot convert float NaN to integer"
        (["--read-timeout", "0.1"], None),
        (["--provider", "npu"], None),
        (["--nonsense"], None),
    ],
)
def test_bad_setting_is_exit_2(tmp_path, tiny_model, args, env):
    write_parts(tmp_path / "parts", [10])
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), *args], env=env)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "Traceback" not in result.output
    if env:
        assert "DEFECT_EDGE_THREADS" in result.stderr and "use 1.." in result.stderr


def test_check_station_refuses_the_options_of_a_run(tmp_path, tiny_model):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    for extra in (["--log", str(tmp_path / "s.db")], ["--source", str(tmp_path / "parts")], ["--heatmap"]):
        result = CliRunner().invoke(main, ["--model", str(tiny_model), "--check-station", str(tmp_path), *extra])
        assert result.exit_code == ExitCode.USAGE and extra[0] in result.output, (extra, result.output)
    assert not (tmp_path / "s.db").exists()  # was: exit 0 with no log, the user believing there was one


def test_a_folder_that_cannot_be_listed_is_an_item_error_not_a_silent_skip(tmp_path, tiny_model, monkeypatch):
    """A subfolder without read permission was passed over in silence: its defective parts never judged, and
    ``--fail-on-defect`` passed (root reads any folder, so the refusal is made here by hand)."""
    import os

    write_parts(tmp_path / "lot" / "a", [10])
    write_parts(tmp_path / "lot" / "b", [220])
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith(os.sep + "b"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    for source in (tmp_path / "lot", f"{tmp_path}/lot/**/*.png"):
        result = invoke(["--model", str(tiny_model), "--source", str(source), "--fail-on-defect"])
        recs = check(result, ExitCode.DEFECT_FOUND, error_lines=0)
        assert [Path(r["source"]).name for r in recs] == ["part_00.png", "b"]
        assert recs[1]["error"].endswith(
            "b: cannot list the folder (Permission denied); the images in it were not inspected"
        )
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "lot" / "b")])
    assert check(result, ExitCode.BAD_DATA, error_lines=1) == [] and "cannot read (Permission denied)" in result.stderr


def test_a_folder_nested_a_thousand_deep_is_listed(tmp_path, tiny_model):
    deep = tmp_path / "lot"
    write_parts(deep, [220])
    levels = [deep]
    for _ in range(1100):  # was: "unexpected RecursionError", exit 1 (pathlib's own mkdir recurses too)
        levels.append(levels[-1] / "d")
        levels[-1].mkdir()
    write_parts(tmp_path / "ok", [10])
    (tmp_path / "ok" / "part_00.png").rename(levels[-1] / "part.png")
    try:
        recs = check(invoke(["--model", str(tiny_model), "--source", str(deep)]), ExitCode.OK, error_lines=0)
        assert sorted(r["defective"] for r in recs) == [False, True]
    finally:  # shutil.rmtree (pytest's clean-up) recurses too: take the levels down from the bottom
        (levels[-1] / "part.png").unlink()
        for level in reversed(levels[1:]):
            level.rmdir()


def test_an_empty_source_is_no_input_not_the_current_folder(tmp_path, tiny_model, monkeypatch):
    write_parts(tmp_path, GOOD_LEVELS)
    monkeypatch.chdir(tmp_path)
    result = invoke(["--model", str(tiny_model), "--source", ""])  # an unset shell variable
    assert check(result, ExitCode.BAD_DATA, error_lines=1) == [] and "--source is empty" in result.stderr


@pytest.mark.parametrize(
    "twice",
    [
        ["--source", "PARTS", "--source", "x.png"],
        ["--camera", "0", "--camera", "1"],
        ["--model", "TINY", "--model", "TINY"],
    ],
)
def test_an_input_option_given_twice_is_a_usage_error(tmp_path, tiny_model, twice):
    """Click kept the last and dropped the first: ``--source bad.jpg --source ok.jpg --fail-on-defect`` passed."""
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    named = {"PARTS": str(tmp_path / "parts"), "TINY": str(tiny_model)}
    args = [named.get(a, a) for a in twice]
    base = [] if "--model" in twice else ["--model", str(tiny_model)]
    base += [] if "--source" in twice or "--camera" in twice else ["--source", str(tmp_path / "parts")]
    result = invoke([*base, *args])
    assert result.exit_code == ExitCode.USAGE and f"'{twice[0]}': given 2 times" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "case",
    ["video-file", "file-url", "file-url-relative", "file-url-missing", "sequence", "file-sequence", "huge-index",
     "empty"],
)  # fmt: skip
def test_a_camera_that_cannot_be_one_is_a_usage_error(tmp_path, tiny_model, case, monkeypatch):
    """A video file given as --camera replayed forever (every "reconnect" opened it again: 258 records for 20
    frames), also as file:///x.avi or file:x.avi, and an image sequence img_%03d.jpg (12 verdicts from 5 images);
    an index beyond a C int gave a page of OpenCV overloads."""
    import numpy as np

    from tests.edge_runtime.test_cli import write_video

    monkeypatch.chdir(tmp_path)
    video = write_video(tmp_path / "line3.avi", [np.full((48, 48), v, np.uint8) for v in (10, 220)])
    write_parts(tmp_path / "seq", [10, 220])
    for i, part in enumerate(sorted((tmp_path / "seq").iterdir())):
        part.rename(tmp_path / "seq" / f"img_{i:03d}{part.suffix}")
    suffix = next((tmp_path / "seq").iterdir()).suffix
    camera = {
        "video-file": str(video),
        "file-url": f"file://{video}",
        "file-url-relative": "file:line3.avi",
        "file-url-missing": "file:///nonexistent/line3.avi",  # exit 5, "cannot open camera"
        "sequence": f"seq/img_%03d{suffix}",
        "file-sequence": f"file:seq/img_%03d{suffix}",  # judged as a live camera, the images again on "reconnect"
        "huge-index": "99999999999999999999",
        "empty": "",
    }[case]
    result = invoke(["--model", str(tiny_model), "--camera", camera])
    assert check(result, ExitCode.USAGE, error_lines=1) == []
    assert {
        "video-file": "is a file, not a camera",
        "file-url": "names a file, not a camera",
        "file-url-relative": "names a file, not a camera",
        "file-url-missing": "names a file, not a camera",
        "sequence": "is a numbered sequence of image files",
        "file-sequence": "is a numbered sequence of image files",
        "huge-index": "not a camera index",
        "empty": "--camera is empty",
    }[case] in result.stderr


def test_a_glob_ending_in_double_star_matches_every_file_below(tmp_path, tiny_model):
    write_parts(tmp_path / "lot" / "a", [10])
    write_parts(tmp_path / "lot" / "a" / "b", [220])
    recs = check(invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/lot/**"]), ExitCode.OK, error_lines=0)
    assert len(recs) == 2  # was: "the pattern matches no image file", exit 3


def test_a_pattern_that_matches_folders_inspects_what_they_hold(tmp_path, tiny_model):
    """'lot/*' over lot/ok.png, lot/line1/ and lot/line2/ judged ok.png alone: the parts in the two folders were
    passed over in silence and the gate passed (exit 0); 'lot/line*' said "the pattern matches no image file"."""
    write_parts(tmp_path / "lot", [10])
    write_parts(tmp_path / "lot" / "line1", [220])
    write_parts(tmp_path / "lot" / "line2" / "shift-b", [200])
    recs = check(invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/lot/*"]), ExitCode.OK, error_lines=0)
    assert sorted(Path(r["source"]).relative_to(tmp_path / "lot").as_posix() for r in recs) == [
        "line1/part_00.png", "line2/shift-b/part_00.png", "part_00.png"]  # fmt: skip
    recs = check(invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/lot/line*"]), ExitCode.OK, error_lines=0)
    assert len(recs) == 2
    recs = check(invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/lot/*.png"]), ExitCode.OK, error_lines=0)
    assert len(recs) == 1  # a pattern for files still names files only
    # below a matched folder everything counts, as --source FOLDER has it; a hidden folder the pattern itself
    # reaches is skipped as the shell does, and named (a hidden part in line1/ was left out without a word)
    (tmp_path / "lot" / "line1" / "part_00.png").rename(tmp_path / "lot" / "line1" / ".scan.png")
    write_parts(tmp_path / "lot" / ".cache", [220])
    result = invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/lot/*", "--fail-on-defect"])
    recs = check(result, ExitCode.DEFECT_FOUND, error_lines=0)
    assert sorted(Path(r["source"]).relative_to(tmp_path / "lot").as_posix() for r in recs) == [
        "line1/.scan.png", "line2/shift-b/part_00.png", "part_00.png"]  # fmt: skip
    assert "1 file not inspected, not images or hidden: .cache/part_00.png" in result.stderr
    # a pattern that names hidden entries itself takes them, and a trailing slash names folders only, as the
    # shell reads both ('lot/.*' and 'lot/*/' said "the pattern matches no image file")
    recs = check(invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/lot/.*"]), ExitCode.OK, error_lines=0)
    assert [Path(r["source"]).relative_to(tmp_path / "lot").as_posix() for r in recs] == [".cache/part_00.png"]
    recs = check(invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/lot/**/.*"]), ExitCode.OK, error_lines=0)
    assert sorted(Path(r["source"]).relative_to(tmp_path / "lot").as_posix() for r in recs) == [
        ".cache/part_00.png", "line1/.scan.png"]  # fmt: skip
    recs = check(invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/lot/*/"]), ExitCode.OK, error_lines=0)
    assert sorted(Path(r["source"]).relative_to(tmp_path / "lot").as_posix() for r in recs) == [
        "line1/.scan.png", "line2/shift-b/part_00.png"]  # fmt: skip


def test_camera_and_source_together_is_a_usage_error(tmp_path, tiny_model):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--camera", "0"])
    assert result.exit_code == ExitCode.USAGE and "not both" in result.stderr and result.stdout == ""


def test_a_file_name_with_a_newline_is_one_human_line(tmp_path, tiny_model):
    """A newline (or a terminal escape) in a file name split a human output line, or was obeyed by the terminal."""
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    (folder / "part_00.png").rename(folder / "line\nbreak\x1b[2J.png")
    result = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(folder)])
    assert result.exit_code == ExitCode.OK
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and any("line\\nbreak\\x1b[2J.png" in ln for ln in lines)


def test_a_folder_or_log_name_with_a_newline_is_one_message_line(tmp_path, tiny_model):
    """`src\ndir: 2 images` and `station: logging every item to outs\tx/l\n.db` broke across lines on stderr, and
    `edge-log query` printed the source's newline raw, its second half reading as a row of its own."""
    from edge_runtime.station.log_cli import main as edge_log

    folder = tmp_path / "src\ndir"
    write_parts(folder, GOOD_LEVELS)
    log = tmp_path / "outs\tx" / "l\n.db"
    result = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(folder), "--log", str(log)])
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "src\\ndir: 2 images" in result.stderr and "outs\\tx/l\\n.db (station" in result.stderr
    listed = CliRunner().invoke(edge_log, ["query", str(log)])
    assert listed.exit_code == 0 and len(listed.stdout.splitlines()) == 2, listed.stdout
    assert all("src\\ndir/part_0" in ln for ln in listed.stdout.splitlines())
    summary = CliRunner().invoke(edge_log, ["summary", str(log)])
    assert summary.stdout.splitlines()[0].startswith(str(tmp_path / "outs\\tx" / "l\\n.db"))


def test_files_not_inspected_are_named_and_counted_in_the_summary(tmp_path, tiny_model):
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    for name in ("scan.gif", "scan.jp2", "scan", "notes.txt"):
        (folder / name).write_bytes(b"x")
    summary = tmp_path / "s.json"
    result = invoke(["--model", str(tiny_model), "--source", str(folder), "--summary", str(summary)])
    assert len(check(result, ExitCode.OK, error_lines=0)) == 2
    assert "(4 files not inspected, not images or hidden: notes.txt, scan, scan.gif, ...)" in result.stderr
    assert json.loads(summary.read_text())["ignored_files"] == 4


def test_every_image_suffix_opencv_reads_and_the_header_check_knows_is_inspected(tmp_path, tiny_model):
    """A defective part saved as .jfif, .jpe, .dib, .pnm or .pbm was listed as "not an image" and the gate passed
    (exit 0); the same .jfif named alone was opened as a one-frame video."""
    import cv2
    import numpy as np

    folder = tmp_path / "lot"
    folder.mkdir()
    bright = np.full((48, 48), 220, np.uint8)  # scores defective with the tiny model
    for name, ext in (("a.jfif", ".jpg"), ("b.jpe", ".jpg"), ("c.dib", ".bmp"), ("d.pnm", ".pgm"), ("e.pbm", ".pbm")):
        ok, buf = cv2.imencode(ext, bright if ext != ".pbm" else np.full((48, 48), 255, np.uint8))
        (folder / name).write_bytes(buf.tobytes())
    result = invoke(["--model", str(tiny_model), "--source", str(folder), "--fail-on-defect"])
    recs = check(result, ExitCode.DEFECT_FOUND, error_lines=0)
    assert sorted(Path(r["source"]).name for r in recs) == ["a.jfif", "b.jpe", "c.dib", "d.pnm", "e.pbm"]
    assert all(r["defective"] and r["frame"] is None for r in recs) and "not inspected" not in result.stderr
    alone = check(invoke(["--model", str(tiny_model), "--source", str(folder / "a.jfif")]), ExitCode.OK, error_lines=0)
    assert alone[0]["frame"] is None  # an image, not frame 0 of a video


def test_a_pattern_names_the_hidden_files_it_passes_over(tmp_path, tiny_model):
    """'dir/**' skips hidden files and folders, as the shell does, but said nothing: a defective part in
    .cache/ was not inspected and the gate passed."""
    write_parts(tmp_path / "lot" / "a", [10])
    write_parts(tmp_path / "lot" / ".cache", [220])
    result = invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/lot/**", "--fail-on-defect"])
    assert len(check(result, ExitCode.OK, error_lines=0)) == 1
    assert "(1 file not inspected, not images or hidden: .cache/part_00.png)" in result.stderr


def test_names_on_stderr_are_one_line_each(tmp_path, tiny_model):
    """A hidden file named '.x\nsummary: 0 items...' forged a summary line on stderr."""
    folder = tmp_path / "lot"
    write_parts(folder, GOOD_LEVELS)
    (folder / "part_01.png").rename(folder / ".x\nsummary: 0 items.png")
    result = invoke(["--model", str(tiny_model), "--source", f"{folder}/**"])
    check(result, ExitCode.OK, error_lines=0)
    assert [ln[:16] for ln in result.stderr.splitlines() if ln.startswith("summary:")] == ["summary: 1 item,"]
    assert ".x\\nsummary: 0 items.png" in result.stderr
    (folder / ".x\nsummary: 0 items.png").rename(folder / ".x\ny.png")
    (folder / "part_00.png").rename(folder / ".z.png")
    only_hidden = invoke(["--model", str(tiny_model), "--source", f"{folder}/*.png"])
    assert check(only_hidden, ExitCode.BAD_DATA, error_lines=1) == []
    assert "(hidden, passed over: .x\\ny.png, .z.png)" in only_hidden.stderr


def test_bracket_expressions_in_a_pattern_read_as_the_shell_reads_them(tmp_path, tiny_model):
    """'gl/[z-a]*' was "unexpected error: bad character range" (exit 1, the code that says "a bug"); '[[:alpha:]]*'
    leaked Python's FutureWarning and matched nothing where the shell matches a.png; '[[]x.png' leaked it too."""
    import warnings

    for name in ("a", "1", "[x", "-y", "]z"):
        write_parts(tmp_path / "gl", [10])
        (tmp_path / "gl" / "part_00.png").rename(tmp_path / "gl" / f"{name}.png")

    def matched(pattern: str) -> list[str]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a leaked warning fails the test
            result = invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/gl/{pattern}"])
        return sorted(Path(r["source"]).name for r in check(result, ExitCode.OK, error_lines=0))

    assert matched("[[:alpha:]]*") == ["a.png"]
    assert matched("[[:digit:][:alpha:]].png") == ["1.png", "a.png"]
    assert matched("[[]x.png") == ["[x.png"]
    assert matched("[!a]*") == ["-y.png", "1.png", "[x.png", "]z.png"]
    assert matched("[a-]*") == ["-y.png", "a.png"]
    assert matched("[]]*") == ["]z.png"]
    assert matched("[[:print:]]*.png") == ["-y.png", "1.png", "[x.png", "]z.png", "a.png"]
    (tmp_path / "gl" / "1.png").rename(tmp_path / "gl" / "b.png")  # 'gl[!x]b.png' must not reach it through '/'
    result = invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/gl[!x]b.png"])
    assert result.exit_code == ExitCode.BAD_DATA and "gl/b.png" not in result.stdout
    for pattern, told in (("[z-a]*", "the range z-a in '[z-a]*' runs backwards; write a-z"),
                          ("[[:foo:]]*", "unknown character class [:foo:] in '[[:foo:]]*'")):  # fmt: skip
        result = invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/gl/{pattern}"])
        check(result, ExitCode.USAGE, error_lines=1)
        assert told in result.stderr


@pytest.mark.parametrize(("status", "said"), [(401, "HTTP 401 Unauthorized (the user and password given were refused)"),
                                              (404, "HTTP 404 Not Found (no stream at that path")])  # fmt: skip
def test_an_http_camera_that_refuses_the_stream_is_named_by_its_status(tiny_model, status: int, said: str):
    """A wrong password and a wrong path both gave "cannot open camera or stream (check the index/path/URL and
    that no other program holds it)"; only --debug showed the camera's 401 or 404."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Refusing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://admin:s3cret@127.0.0.1:{server.server_address[1]}/video.mjpg"
        r = invoke(["--model", str(tiny_model), "--source", url, "--max-reconnects", "0"])
    finally:
        server.shutdown()
    check(r, ExitCode.SOURCE_UNAVAILABLE, error_lines=1)
    line = r.stderr.strip().splitlines()[-1]
    assert "the camera refused the stream: " + said in line and "s3cret" not in r.stderr


def test_an_image_sequence_named_as_ffmpeg_names_it_says_which_pattern_to_pass(tmp_path, tiny_model):
    """'seq/%04d.png' (FFmpeg's and OpenCV's name for an image sequence, here of 16-bit grey PNGs) said "no such
    file or folder" alone, beside a folder of the very files."""
    import cv2
    import numpy as np

    for i, level in enumerate([10, 220, 30]):
        cv2.imwrite(str(tmp_path / f"{i:04d}.png"), np.full((48, 48), level * 257, np.uint16))
    result = invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/%04d.png"])
    check(result, ExitCode.BAD_DATA, error_lines=1)
    assert result.stderr.splitlines()[-1] == (f"error: {tmp_path}/%04d.png: no such file or folder; a numbered "
                                              f"sequence of image files (%04d) is passed as --source "
                                              f"'{tmp_path}/*.png' (3 images match it)")  # fmt: skip
    recs = check(invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/*.png"]), ExitCode.OK, error_lines=0)
    assert [Path(r["source"]).name for r in recs] == ["0000.png", "0001.png", "0002.png"]
    assert all(r["error"] is None for r in recs)
