"""The fault suite: bad images, special files, bad models and metadata, bad sources and options.

For every case edge-infer must give a documented exit code, no traceback, at most one ``error:`` line, and --
when it runs -- exactly one record per entry that looks like an image. Run in-process (click's CliRunner);
outputs (--output, --summary, --save) and damaged videos are in test_faults_outputs.py, signals and closed/full
stdout in test_faults_process.py.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.errors import ExitCode
from tests.edge_runtime import fault_cases as fc
from tests.edge_runtime.conftest import MODELS, model_bytes, with_metadata, write_parts
from tests.edge_runtime.faults_common import (
    GOOD_LEVELS,
    _ids,
    check,
    image_case,
    invoke,
    no_hang,  # noqa: F401 - the autouse hang guard, for this module too
)

HUGE = fc.huge_header_cases()


TRUNCATED = fc.truncated_cases()


BITFLIPS = fc.bitflip_cases()


JUNK = fc.junk_cases()


ODD = fc.odd_but_valid_cases()


@pytest.mark.parametrize(("case", "name", "writer"), HUGE, ids=_ids(HUGE))
def test_huge_or_nonsense_header_is_an_item_error(tmp_path, tiny_model, case, name, writer):
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    writer(folder / f"bad_{name}")
    recs = check(invoke(["--model", str(tiny_model), "--source", str(folder)]), ExitCode.OK, error_lines=0)
    bad = next(r for r in recs if Path(r["source"]).name.startswith("bad_"))
    assert len(recs) == 3 and bad["error"] and bad["score"] is None


@pytest.mark.parametrize(("case", "name", "writer"), TRUNCATED + BITFLIPS + JUNK, ids=_ids(TRUNCATED + BITFLIPS + JUNK))
def test_damaged_image_never_stops_the_run(tmp_path, tiny_model, case, name, writer):
    image_case(tmp_path, name, writer, tiny_model)


@pytest.mark.parametrize(("case", "name", "writer"), ODD, ids=_ids(ODD))
def test_odd_but_valid_image_gets_a_verdict(tmp_path, tiny_model, case, name, writer):
    folder = tmp_path / "parts"
    folder.mkdir()
    writer(folder / name)
    recs = check(invoke(["--model", str(tiny_model), "--source", str(folder)]), ExitCode.OK, error_lines=0)
    assert len(recs) == 1 and recs[0]["error"] is None


SPECIAL = fc.special_entry_cases(Path("/tmp"))


@pytest.mark.parametrize(("case", "name", "writer"), SPECIAL, ids=_ids(SPECIAL))
def test_special_entry_gets_an_error_record_and_never_blocks(tmp_path, tiny_model, case, name, writer):
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    writer(folder / f"bad_{name}")
    recs = check(invoke(["--model", str(tiny_model), "--source", str(folder)]), ExitCode.OK, error_lines=0)
    bad = [r for r in recs if Path(r["source"]).name.startswith("bad_")]
    assert len(recs) == 3 and len(bad) == 1 and bad[0]["error"]
    # the same entry given alone, as the whole source, is one error record and exit 3 (nothing readable)
    recs = check(
        invoke(["--model", str(tiny_model), "--source", str(folder / f"bad_{name}")]), 3, error_lines=1
    )  # exit 3 says so in one line
    assert len(recs) == 1 and recs[0]["error"]


def test_directory_link_loops_are_not_followed(tmp_path, tiny_model):
    folder = tmp_path / "parts"
    write_parts(folder, [10])
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder)
    (folder / "sub" / "self").symlink_to(folder / "sub")
    (folder / "sub" / "loop.png").symlink_to(folder / "sub" / "loop.png")
    result = invoke(["--model", str(tiny_model), "--source", str(folder)])
    recs = check(result, ExitCode.OK, error_lines=0)
    assert sorted(Path(r["source"]).name for r in recs) == ["loop.png", "part_00.png"]
    assert "2 links to folders not followed" in result.stderr
    glob_recs = check(invoke(["--model", str(tiny_model), "--source", f"{folder}/**/*.png"]), 0, error_lines=0)
    assert sorted(Path(r["source"]).name for r in glob_recs) == ["loop.png", "part_00.png"]


# ---------------------------------------------------------------------------------------------------- models

BAD_MODEL_FILES = sorted(p.name for p in MODELS.glob("bad_*.onnx"))


@pytest.mark.parametrize("name", BAD_MODEL_FILES)
def test_model_that_breaks_the_contract_is_refused_at_load(tmp_path, name):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    result = invoke(["--model", str(MODELS / name), "--source", str(tmp_path / "parts")])
    assert check(result, ExitCode.BAD_MODEL, error_lines=1) == []
    assert name in result.stderr


@pytest.mark.parametrize(("case", "text"), fc.bad_metadata_cases(), ids=_ids(fc.bad_metadata_cases()))
def test_bad_metadata_is_exit_4(tmp_path, case, text):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    model = tmp_path / "m.onnx"
    model.write_bytes(with_metadata(model_bytes(), text))
    result = invoke(["--model", str(model), "--source", str(tmp_path / "parts")])
    assert check(result, ExitCode.BAD_MODEL, error_lines=1) == []
    assert len(result.stderr) < 600


@pytest.mark.parametrize(("case", "data"), fc.damaged_model_cases(), ids=_ids(fc.damaged_model_cases()))
def test_damaged_model_file_is_exit_4(tmp_path, case, data):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    model = tmp_path / "m.onnx"
    model.write_bytes(data)
    check(invoke(["--model", str(model), "--source", str(tmp_path / "parts")]), ExitCode.BAD_MODEL, error_lines=1)


@pytest.mark.parametrize("kind", ["folder", "fifo", "dev-zero", "missing", "dangling"])
def test_model_path_that_is_not_a_file_is_exit_4(tmp_path, kind):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    model = tmp_path / "m.onnx"
    {
        "folder": lambda: model.mkdir(),
        "fifo": lambda: __import__("os").mkfifo(model),
        "dev-zero": lambda: model.symlink_to("/dev/zero"),
        "missing": lambda: None,
        "dangling": lambda: model.symlink_to(tmp_path / "gone.onnx"),
    }[kind]()
    check(invoke(["--model", str(model), "--source", str(tmp_path / "parts")]), ExitCode.BAD_MODEL, error_lines=1)


def test_nan_scores_are_item_errors_and_a_gate_never_passes_them(tmp_path):
    write_parts(tmp_path / "parts", [10, 200, 250])
    args = ["--model", str(MODELS / "nan_scores.onnx"), "--source", str(tmp_path / "parts")]
    recs = check(invoke(args), ExitCode.BAD_DATA, error_lines=1)  # every item unreadable -> 3, one error line
    assert len(recs) == 3 and all(r["error"] and "not a probability" in r["error"] for r in recs)
    assert all(r["label"] is None and r["defective"] is None for r in recs)
    check(invoke([*args, "--fail-on-defect"]), ExitCode.DEFECT_FOUND, error_lines=0)


def test_fixed_batch_1_model_runs_item_by_item(tmp_path):
    write_parts(tmp_path / "parts", [10, 200, 30, 240, 50])
    args = ["--model", str(MODELS / "tiny_batch1.onnx"), "--source", str(tmp_path / "parts")]
    recs = check(invoke(args), ExitCode.OK, error_lines=0)
    assert [r["defective"] for r in recs] == [False, True, False, True, False]


def test_two_output_model_declared_in_metadata_runs(tmp_path):
    write_parts(tmp_path / "parts", [10, 200])
    recs = check(
        invoke(["--model", str(MODELS / "tiny_map.onnx"), "--source", str(tmp_path / "parts")]), 0, error_lines=0
    )
    assert [r["defective"] for r in recs] == [False, True]


def test_corrupt_jpeg_is_flagged_and_counted(tmp_path, tiny_model):
    from tests.conftest import REPO

    folder = tmp_path / "parts"
    write_parts(folder, [10])
    data = bytearray((REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg").read_bytes())
    data[1388] ^= 0x10  # one flipped bit: libjpeg conceals it ("Corrupt JPEG data") and decodes the rest
    (folder / "flipped.jpg").write_bytes(bytes(data))
    result = invoke(["--model", str(tiny_model), "--source", str(folder)])
    recs = check(result, ExitCode.OK, error_lines=0)
    flagged = [r for r in recs if r["warning"]]
    assert len(flagged) == 1 and flagged[0]["source"].endswith("flipped.jpg") and flagged[0]["label"] is not None
    assert "Corrupt JPEG" in flagged[0]["warning"] and "Corrupt JPEG" not in result.stderr.replace("warning", "")
    assert "1 with warnings" in result.stderr
    check(invoke(["--model", str(tiny_model), "--source", str(folder), "--fail-on-defect"]), 10, error_lines=0)


def test_decoder_warnings_belong_to_their_own_image_when_decoding_in_parallel():
    from concurrent.futures import ThreadPoolExecutor

    from edge_runtime.decoding import decode
    from tests.conftest import REPO

    samples = sorted((REPO / "edge_runtime" / "samples").rglob("*.jpeg"))
    good = [p.read_bytes() for p in samples]
    bad = bytearray((REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg").read_bytes())
    bad[1388] ^= 0x10
    items = [(bytes(bad), True) if i % 5 == 0 else (good[i % len(good)], False) for i in range(300)]
    with ThreadPoolExecutor(4) as pool:
        flagged = list(pool.map(lambda x: decode(x[0]).warning is not None, items))
    assert flagged == [damaged for _, damaged in items]


def test_a_gate_does_not_pass_a_frame_without_a_part(tmp_path):
    """A black frame (a lens cap, a dead light, an empty tray) was judged "ok" on its whole frame and passed the
    gate with exit 0; the record said "no part found in the frame", the exit code did not."""
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((300, 300), np.uint8))
    gate = invoke(["--source", str(tmp_path / "black.png"), "--fail-on-defect"])  # the bundled model's station check
    recs = check(gate, ExitCode.DEFECT_FOUND, error_lines=0)
    assert recs[0]["unlike_training"][0].startswith("no part found in the frame")
    assert "gate: 1 item with no part found in the frame" in gate.stderr
    plain = invoke(["--source", str(tmp_path / "black.png")])  # without the gate: a verdict, flagged
    assert check(plain, ExitCode.OK, error_lines=0)[0]["label"] == recs[0]["label"]
    # the human line said "ok 0.06673 black.png" as for any judged part: it now says the frame held none
    human = CliRunner().invoke(main, ["--source", str(tmp_path / "black.png")])
    assert human.exit_code == 0 and "(no part found: the whole frame was judged)" in human.stdout
    # --no-station-check skips the "unlike the training images" flags, not this one: the gate passed the lens cap
    unchecked = invoke(["--source", str(tmp_path / "black.png"), "--fail-on-defect", "--no-station-check"])
    assert check(unchecked, ExitCode.DEFECT_FOUND, error_lines=0)[0]["unlike_training"][0].startswith("no part found")


def test_a_gate_does_not_pass_a_frame_with_two_parts(tmp_path):
    """A defective part beside an OK one in one frame: the OK one alone was judged, "ok", and the gate passed with
    exit 0 (with --no-station-check nothing at all was flagged). The verdict now carries a warning naming the part
    judged, and the gate fails."""
    import cv2
    import numpy as np

    from tests.conftest import REPO

    samples = REPO / "edge_runtime/samples/test"
    bad, good = (
        cv2.imread(str(next((samples / c).glob("*.jpeg"))), cv2.IMREAD_GRAYSCALE) for c in ("def_front", "ok_front")
    )
    cv2.imwrite(str(tmp_path / "two.png"), np.hstack([bad, good]))
    cv2.imwrite(str(tmp_path / "one.png"), bad)
    for extra in ([], ["--no-station-check"]):
        gate = invoke(["--source", str(tmp_path / "two.png"), "--fail-on-defect", *extra])
        rec = check(gate, ExitCode.DEFECT_FOUND, error_lines=0)[0]
        assert rec["warning"].startswith("more than one part in the frame (2 found; the one at x=")
        assert "show the camera one part at a time" in rec["warning"]
        assert any(why.startswith("more than one part in the frame") for why in rec["unlike_training"])
    single = check(invoke(["--source", str(tmp_path / "one.png"), "--no-station-check"]), ExitCode.OK, error_lines=0)
    assert single[0]["warning"] is None and single[0]["unlike_training"] is None
    report = CliRunner().invoke(main, ["--check-station", str(tmp_path)])
    assert "more than one part in the frame" in report.output


def test_a_gate_does_not_pass_a_part_too_small_to_show_its_defects(tmp_path):
    """Defective test parts shrunk to 24 px were judged "ok" (94 of 200) with no warning, exit 0 under
    --fail-on-defect: the input enlarged them 7 times and their pinholes were gone. A part whose square the input
    enlarges over twice gets a warning naming its size and what to do, and the gate fails; at 100 px none does."""
    import cv2

    from tests.conftest import REPO

    part = cv2.imread(str(REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg"), cv2.IMREAD_GRAYSCALE)
    for px in (24, 100):
        cv2.imwrite(str(tmp_path / f"p{px}.png"), cv2.resize(part, (px, px), interpolation=cv2.INTER_AREA))
    for extra in ([], ["--no-station-check"]):
        rec = check(invoke(["--source", str(tmp_path / "p24.png"), "--fail-on-defect", *extra]),
                    ExitCode.DEFECT_FOUND, error_lines=0)[0]  # fmt: skip
        small = r"part too small in the image \((\d+) px across its square, enlarged ([\d.]+)x"
        found = re.match(small, rec["warning"] or "")
        assert found and int(found[1]) < 30 and float(found[2]) > 5, rec["warning"]
        assert "bring the camera closer or raise its resolution" in rec["warning"]
    fine = check(invoke(["--source", str(tmp_path / "p100.png"), "--no-station-check"]), ExitCode.OK, error_lines=0)
    assert fine[0]["warning"] is None and fine[0]["unlike_training"] is None
    # a 1x1 image (a camera's test frame) said "enlarged 1.6e+02x to the 160 px input"
    cv2.imwrite(str(tmp_path / "dot.png"), part[:1, :1])
    dot = check(invoke(["--source", str(tmp_path / "dot.png")]), ExitCode.OK, error_lines=0)[0]
    assert "(1 px across its square, enlarged 160x to the 160 px input)" in dot["warning"], dot["warning"]


def test_12_bit_16_bit_and_float_images_are_read_by_the_bits_they_use(tmp_path):
    """A 12-bit camera's pixels in a 16-bit PNG were shifted right by 8 (values 0-15): a defective part read as a
    black frame, "no part found", "ok". A 32-bit float TIFF was "not a readable image"."""
    import cv2
    import numpy as np

    from edge_runtime.preprocess import read_image
    from tests.conftest import REPO

    part = cv2.imread(str(REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(tmp_path / "twelve.png"), part.astype(np.uint16) << 4)
    cv2.imwrite(str(tmp_path / "sixteen.png"), part.astype(np.uint16) << 8)
    cv2.imwrite(str(tmp_path / "float.tif"), part.astype(np.float32) / 255.0)
    hot = part.astype(np.uint16) << 4
    hot[0, :20] = 65535  # 20 saturated pixels in 12-bit data: it read as 16-bit, near black
    cv2.imwrite(str(tmp_path / "twelve_hot.png"), hot)
    with_inf = part.astype(np.float32) / 255.0
    with_inf[0, 0] = np.inf  # one inf pixel made the 0..1 image 0..255: black, and the defect "ok"
    cv2.imwrite(str(tmp_path / "float_inf.tif"), with_inf)
    cv2.imwrite(str(tmp_path / "signed.tif"), part.astype(np.float32) / 127.5 - 1.0)  # -1..1: was clipped at 0
    # a colour float TIFF was "not a readable image": OpenCV cannot make it gray in the same read
    cv2.imwrite(str(tmp_path / "colour_float.tif"), cv2.cvtColor(part, cv2.COLOR_GRAY2BGR).astype(np.float32) / 255)
    for name in ("twelve.png", "sixteen.png", "float.tif", "twelve_hot.png", "float_inf.tif", "signed.tif",
                 "colour_float.tif"):  # fmt: skip
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            assert np.abs(read_image(tmp_path / name).astype(int) - part)[1:].max() <= 1, name
        # the one infinite pixel is named (ImageWarning); the other files read without a word
        assert [str(w.message).split(": ", 1)[1][:10] for w in said] == (["1 of 90000"] if "inf" in name else []), name
    recs = check(invoke(["--source", str(tmp_path / "twelve.png"), "--fail-on-defect"]), ExitCode.DEFECT_FOUND,
                 error_lines=0)  # fmt: skip
    assert recs[0]["defective"] and not recs[0].get("unlike_training")


def _gray_tiff(pixels, *, white_is_zero: bool, big_endian: bool = False, bigtiff: bool = False) -> bytes:
    """One uncompressed gray TIFF strip (or BigTIFF); photometric interpretation 0 (white is zero) or 1."""
    import struct

    end = ">" if big_endian else "<"
    h, w = pixels.shape
    bits, sample_format = pixels.dtype.itemsize * 8, 3 if pixels.dtype.kind == "f" else 1
    data = pixels.astype(pixels.dtype.newbyteorder(end)).tobytes()
    tags = [(256, w), (257, h), (258, bits), (259, 1), (262, 0 if white_is_zero else 1), (273, 0), (277, 1),
            (278, h), (279, len(data)), (339, sample_format)]  # fmt: skip
    order = b"MM" if big_endian else b"II"
    if bigtiff:  # 8-byte offsets and counts, 20-byte entries (type 16: LONG8)
        start = 16 + 8 + 20 * len(tags) + 8
        out = order + struct.pack(end + "HHHQQ", 43, 8, 0, 16, len(tags))
        entries = b"".join(struct.pack(end + "HHQQ", t, 16, 1, start if t == 273 else v) for t, v in tags)
        return out + entries + struct.pack(end + "Q", 0) + data
    start = 8 + 2 + 12 * len(tags) + 4
    out = order + struct.pack(end + "HIH", 42, 8, len(tags))
    entries = b"".join(struct.pack(end + "HHII", t, 4, 1, start if t == 273 else v) for t, v in tags)
    return out + entries + struct.pack(end + "I", 0) + data


def test_a_white_is_zero_tiff_deeper_than_8_bits_is_read_the_right_way_up(tmp_path):
    """OpenCV turns an 8-bit white-is-zero TIFF the right way up but hands 16-bit pixels over as stored: a
    scanner's or camera's 16-bit negative-polarity TIFF was judged as its own negative, with no note (then still
    as a BigTIFF, and with 8-bit values in 16-bit samples: "ok", exit 0 under --fail-on-defect)."""
    import cv2
    import numpy as np

    from edge_runtime.preprocess import read_image
    from tests.conftest import REPO

    part = cv2.imread(str(REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg"), cv2.IMREAD_GRAYSCALE)
    files = {
        "wiz16.tif": _gray_tiff(65535 - part.astype(np.uint16) * 257, white_is_zero=True),
        "wiz16_mm.tif": _gray_tiff(65535 - part.astype(np.uint16) * 257, white_is_zero=True, big_endian=True),
        "wiz8.tif": _gray_tiff(255 - part, white_is_zero=True),
        "wizf.tif": _gray_tiff(1.0 - part.astype(np.float32) / 255.0, white_is_zero=True),
        # a BigTIFF's tags were not read; 8-bit values in 16-bit samples made the 8-bit cross-check flat
        "wiz16_big.tif": _gray_tiff(65535 - part.astype(np.uint16) * 257, white_is_zero=True, bigtiff=True),
        "wiz16_big_mm.tif": _gray_tiff(
            65535 - part.astype(np.uint16) * 257, white_is_zero=True, bigtiff=True, big_endian=True
        ),
        "wiz16_8bit_values.tif": _gray_tiff(255 - part.astype(np.uint16), white_is_zero=True),
        "biz16_big.tif": _gray_tiff(part.astype(np.uint16) * 257, white_is_zero=False, bigtiff=True),
        "biz16.tif": _gray_tiff(part.astype(np.uint16) * 257, white_is_zero=False),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert np.abs(read_image(tmp_path / name).astype(int) - part).max() <= 1, name
    recs = check(invoke(["--source", str(tmp_path / "wiz16.tif"), "--fail-on-defect"]), ExitCode.DEFECT_FOUND,
                 error_lines=0)  # fmt: skip
    assert recs[0]["defective"]


def test_a_coarsely_compressed_lossy_webp_is_not_passed_as_trusted(tmp_path):
    """The hardest real defect of the test set, a pinhole on the flange, re-encoded as lossy WebP at quality 6-10
    scored below the threshold: "ok", exit 0 under --fail-on-defect, no note. A file compressed that coarsely now
    gets a warning and fails the gate; fine compression and lossless WebP do not."""
    import cv2

    from edge_runtime.webp_quality import coarsest_quantizer
    from tests.conftest import CASTING, CASTING_REASON

    hard = CASTING / "test/def_front/cast_def_0_150.jpeg"
    if not hard.is_file():
        pytest.skip(CASTING_REASON)
    part = cv2.imread(str(hard))
    for name, quality in {"q6.webp": 6, "q40.webp": 40, "q75.webp": 75, "lossless.webp": 101}.items():
        assert cv2.imwrite(str(tmp_path / name), part, [cv2.IMWRITE_WEBP_QUALITY, quality])
    assert coarsest_quantizer((tmp_path / "lossless.webp").read_bytes()) is None
    for name in ("q6.webp", "q40.webp"):
        (rec,) = check(invoke(["--source", str(tmp_path / name), "--fail-on-defect", "--model", "fp32"]),
                       ExitCode.DEFECT_FOUND, error_lines=0)  # fmt: skip
        assert "lossy WebP compressed so coarsely" in rec["warning"], name
    for name in ("q75.webp", "lossless.webp"):
        (rec,) = check(invoke(["--source", str(tmp_path / name), "--fail-on-defect", "--model", "fp32"]),
                       ExitCode.DEFECT_FOUND, error_lines=0)  # fmt: skip
        assert rec["defective"] and not rec["warning"], name


@pytest.mark.parametrize("kind", ["multi-page.tif", "animated.png", "animated.webp", "two-pictures.jpg", "gif.png"])
def test_an_image_file_with_several_pages_is_not_passed_on_its_first(tmp_path, kind: str):
    """A TIFF with an OK page then a defective one (or an animated PNG or WebP) was judged on its first page alone:
    "ok", exit 0 under --fail-on-defect, no word of the other pages. So was an animated GIF saved as ``.png``
    (OpenCV decodes a GIF whatever its suffix)."""
    import cv2

    from tests.conftest import REPO

    samples = REPO / "edge_runtime/samples/test"
    ok = cv2.imread(str(next((samples / "ok_front").glob("*.jpeg"))))
    bad = cv2.imread(str(samples / "def_front/cast_def_0_3446.jpeg"))
    path = tmp_path / kind
    if kind.endswith(".tif"):
        assert cv2.imwritemulti(str(path), [ok, bad])
    elif kind.endswith(".jpg"):  # one picture after the other, as a stereo camera's MPO file or an appended frame
        path.write_bytes(cv2.imencode(".jpg", ok)[1].tobytes() + cv2.imencode(".jpg", bad)[1].tobytes())
    else:
        anim = cv2.Animation()
        anim.frames, anim.durations = [ok, bad], [100, 100]
        written = path.with_suffix(".gif") if kind.startswith("gif") else path
        assert cv2.imwriteanimation(str(written), anim)
        written.rename(path)
    (rec,) = check(invoke(["--source", str(path), "--fail-on-defect"]), ExitCode.DEFECT_FOUND, error_lines=0)
    assert "holds 2 pages or frames and only the first was inspected" in rec["warning"]
    single = tmp_path / ("one" + path.suffix)
    assert cv2.imwrite(str(single.with_suffix(".gif") if kind.startswith("gif") else single), ok)
    if kind.startswith("gif"):
        single.with_suffix(".gif").rename(single)
    (rec,) = check(invoke(["--source", str(single)]), ExitCode.OK, error_lines=0)
    assert not rec["warning"]


def test_a_jpeg_exif_thumbnail_is_not_a_second_picture():
    """The count of JPEG pictures walks the markers: a thumbnail inside the EXIF segment, which holds a complete
    JPEG of its own, is part of the first picture."""
    import cv2
    import numpy as np

    from edge_runtime.image_pages import page_count

    thumb = cv2.imencode(".jpg", np.full((16, 16), 90, np.uint8))[1].tobytes()
    main = cv2.imencode(".jpg", np.full((64, 64), 120, np.uint8))[1].tobytes()
    app1 = b"\xff\xe1" + (2 + 6 + len(thumb)).to_bytes(2, "big") + b"Exif\0\0" + thumb
    with_thumb = main[:2] + app1 + main[2:]
    assert cv2.imdecode(np.frombuffer(with_thumb, np.uint8), cv2.IMREAD_GRAYSCALE).shape == (64, 64)
    assert page_count(with_thumb) == 1 and page_count(with_thumb + main) == 2 and page_count(main[:-20]) == 1
    # after a length prefix or fill bytes, as some cameras append a frame: still a second picture (it passed)
    assert page_count(main + len(main).to_bytes(4, "big") + main) == 2 and page_count(main + b"\xff\xff" + main) == 2
    assert page_count(main + main[:-30]) == 2  # a second picture cut short is one too (it read as a truncated file)


def test_page_counts_follow_the_files_structure_not_stray_bytes():
    """A BigTIFF's second page went unseen; a single-page TIFF whose next-page pointer leads out of the file was
    said to hold 2 pages; "acTL" in a PNG's text chunk made a still image 5 pages; an APNG whose shown frame is
    not its default image (the one a decoder reads) got no warning."""
    import struct
    import zlib

    from edge_runtime.image_pages import page_count

    def tiff(big: bool, pages: int, next_last: int = 0) -> bytes:
        if big:
            head, ifd = (
                b"II+\0" + struct.pack("<HHQ", 8, 0, 16),
                lambda nxt: struct.pack("<Q", 1) + bytes(20) + struct.pack("<Q", nxt),
            )
            size = 36
        else:
            head, ifd = (
                b"II*\0" + struct.pack("<I", 8),
                lambda nxt: struct.pack("<H", 1) + bytes(12) + struct.pack("<I", nxt),
            )
            size = 18
        start = len(head)
        body = b"".join(ifd(start + (k + 1) * size if k < pages - 1 else next_last) for k in range(pages))
        return head + body

    def png(*chunks: tuple[bytes, bytes]) -> bytes:
        out = b"\x89PNG\r\n\x1a\n"
        for kind, data in chunks:
            out += struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        return out

    ihdr, idat, iend = (b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)), (b"IDAT", b"x"), (b"IEND", b"")
    actl = (b"acTL", struct.pack(">II", 1, 0))
    assert page_count(tiff(False, 1)) == 1 and page_count(tiff(False, 3)) == 3
    assert page_count(tiff(True, 2)) == 2 and page_count(tiff(True, 1)) == 1
    assert page_count(tiff(False, 1, next_last=10**6)) == 1  # a pointer out of the file: damaged, not a page
    assert page_count(png(ihdr, (b"tEXt", b"Comment\0acTL\0\0\0\x05"), idat, iend)) == 1
    assert page_count(png(ihdr, (b"tEXt", b"Comment\0IDAT"), actl, (b"fcTL", bytes(26)), idat, iend)) == 1
    assert page_count(png(ihdr, actl, idat, (b"fcTL", bytes(26)), (b"fdAT", bytes(5)), iend)) == 2  # hidden default
    # the frames the file holds, not the count its header claims (4294967295 was reported as such)
    claims = (b"acTL", struct.pack(">II", 0xFFFFFFFF, 0))
    frame2 = ((b"fcTL", bytes(26)), (b"fdAT", bytes(5)))
    assert page_count(png(ihdr, claims, (b"fcTL", bytes(26)), idat, *frame2, iend)) == 2
    assert page_count(png(ihdr, claims, idat, iend)) == 1  # no frame control at all: a still image
    assert page_count(png(ihdr, idat, (b"acTL", struct.pack(">II", 3, 0)), *frame2, iend)) == 1  # acTL after pixels
    assert page_count(png(ihdr, claims, (b"fcTL", bytes(26)), idat, *frame2, iend, *frame2)) == 2  # after IEND
