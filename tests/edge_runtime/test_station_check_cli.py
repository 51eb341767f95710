"""edge-infer's station check, end to end on a tiny model that carries a station profile (no torch, no onnx)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.station_check import item_stats, profile
from tests.edge_runtime.conftest import MODELS, model_bytes, tiny_info, with_metadata
from tests.edge_runtime.test_framing import impeller


def model_with_profile(path: Path) -> Path:
    """The tiny model, told that it was trained on medium-grey backgrounds (150..190)."""
    spec = tiny_info().preprocess
    training = [item_stats(impeller(bg=bg, core=core), spec) for bg in (150, 170, 190) for core in (55, 60, 65)]
    info = replace(tiny_info(), station=profile(training).to_dict())
    path.write_bytes(with_metadata(model_bytes(), info.to_json(), stamp=True))
    return path


def write(folder: Path, images: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, im in images.items():
        cv2.imwrite(str(folder / name), im)
    return folder


def test_items_unlike_training_are_flagged_on_their_record_and_in_the_summary(tmp_path: Path):
    model = model_with_profile(tmp_path / "m.onnx")
    parts = write(tmp_path / "parts", {"a_grey.png": impeller(bg=165), "b_white.png": impeller(bg=240)})
    r = CliRunner().invoke(main, ["--model", str(model), "--source", str(parts), "--json"])
    assert r.exit_code == 0, r.stderr
    recs = {Path(x["source"]).name: x for x in map(json.loads, r.stdout.splitlines())}
    assert recs["a_grey.png"]["unlike_training"] is None
    flags = recs["b_white.png"]["unlike_training"]
    assert flags and flags[0].startswith("background brighter than any training image")
    assert recs["b_white.png"]["label"] is not None  # still judged: the flag warns, it does not replace the verdict
    assert "WARNING: 1 of 2 items (50%) looks unlike the training images: background brighter" in r.stderr
    # the item's own line says it too: a live run, which never reaches its summary, showed nothing while it ran
    lines = CliRunner().invoke(main, ["--model", str(model), "--source", str(parts)]).stdout.splitlines()
    white = next(line for line in lines if "b_white.png" in line)
    assert "(unlike the training images: background brighter than any training image" in white
    assert "(unlike the training" not in next(line for line in lines if "a_grey.png" in line)
    r = CliRunner().invoke(main, ["--model", str(model), "--source", str(parts), "--json", "--no-station-check"])
    assert r.exit_code == 0 and "WARNING" not in r.stderr
    assert all(json.loads(line)["unlike_training"] is None for line in r.stdout.splitlines())


def test_check_station_reports_on_a_folder_of_new_camera_images(tmp_path: Path):
    model = model_with_profile(tmp_path / "m.onnx")
    same = write(tmp_path / "same", {f"{i}.png": impeller(bg=160 + 5 * i) for i in range(4)})
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(same)])
    assert r.exit_code == 0, r.output
    assert "4 images, 0 (0.0%) unlike the 9 training images" in r.output and "look like the training" in r.output
    # one image, or four, "looked like the training images" as if a camera had been checked
    assert "-> these 4 images look like the training images, but that is too few to judge a station by" in r.output
    one = write(tmp_path / "one", {"0.png": impeller(bg=165)})  # it read "these 1 image look like ..."
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(one)])
    assert r.exit_code == 0 and "-> this image looks like the training images, but that is too few" in r.output
    more = write(tmp_path / "more", {f"{i}.png": impeller(bg=160 + i) for i in range(20)})
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(more)])
    assert r.exit_code == 0 and "this station's images look like the training images" in r.output, r.output
    new = write(tmp_path / "new", {f"{i}.png": impeller(bg=238, core=80) for i in range(3)})
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(new)])
    assert r.exit_code == 6, r.output  # "do not trust these verdicts" exited 0: a commissioning script could not gate
    assert "3 images, 3 (100.0%) unlike" in r.output
    assert "background brighter than any training image" in r.output and "part size larger" in r.output
    assert "do not trust these verdicts yet" in r.output
    # what to change, for these reasons: it had been "adjust light and framing" whatever they were
    advice = next(line for line in r.output.splitlines() if "do not trust" in line)
    assert "use a darker background" in advice and "move the camera back" in advice, advice
    assert "adjust light and framing" not in advice
    tail = "; or collect labelled images from this station and fine-tune the model on them (train-model --init)"
    assert advice.endswith(tail)


def test_check_station_needs_a_model_with_a_profile(tmp_path: Path):
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(with_metadata(model_bytes(), tiny_info().to_json(), stamp=True))
    folder = write(tmp_path / "imgs", {"a.png": impeller()})
    r = CliRunner().invoke(main, ["--model", str(plain), "--check-station", str(folder)])
    # the model is what lacks it, and what to change (re-export): exit 4, bad model (it was 3, bad data)
    assert r.exit_code == 4 and "carries no station profile" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["--model", str(plain), "--check-station", str(tmp_path / "missing")])
    assert r.exit_code == 3 and "no such file or folder" in r.output and "Traceback" not in r.output


def test_an_empty_check_station_is_no_input_not_the_current_folder(tmp_path: Path, monkeypatch):
    """``--check-station "$NEW_CAMERA"`` with the variable unset checked the current folder: a report on whatever
    images lay there, exit 0."""
    model = model_with_profile(tmp_path / "m.onnx")
    write(tmp_path / "here", {f"{i}.png": impeller() for i in range(3)})
    monkeypatch.chdir(tmp_path / "here")
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", ""])
    assert r.exit_code == 3 and "--check-station is empty" in r.output and "images," not in r.output


def test_a_folder_of_mostly_unreadable_files_does_not_pass_the_station_check(tmp_path: Path):
    """1 good image among 52 unreadable files said "look like the training images", exit 0."""
    model = model_with_profile(tmp_path / "m.onnx")
    folder = write(tmp_path / "cam", {"good.png": impeller(bg=165)})
    for i in range(5):
        (folder / f"broken_{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(folder)])
    assert r.exit_code == 6, r.output
    assert "5 unreadable files were skipped" in r.output and "5 of 6 files flagged or unreadable" in r.output


def test_a_sub_folder_that_cannot_be_listed_fails_the_station_check(tmp_path: Path, monkeypatch):
    """A folder of 150 images and one sub-folder the user may not list said "1 unreadable file was skipped" and
    passed (exit 0): the sub-folder's images, however many, were never checked."""
    import edge_runtime.listing as listing

    model = model_with_profile(tmp_path / "m.onnx")
    folder = write(tmp_path / "cam", {f"p{i:03d}.png": impeller(bg=165) for i in range(150)})
    (folder / "shift-b").mkdir()
    real = listing.list_entries

    def no_permission(path):  # noqa: ANN001 - what os.scandir gives a user without read permission (root has all)
        if Path(path).name == "shift-b":
            return listing.Unreadable(PermissionError(13, "Permission denied"))
        return real(path)

    monkeypatch.setattr(listing, "list_entries", no_permission)
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(folder)])
    assert r.exit_code == 6, r.output
    assert "1 folder could not be listed and its images were not checked" in r.output and "shift-b" in r.output
    assert "unreadable file" not in r.output


def test_a_stopped_station_check_says_so_without_a_runs_summary(tmp_path: Path, monkeypatch):
    """Ctrl-C during --check-station printed "summary: 0 items ... stopped early (interrupted); everything above was
    written": a run's summary for a check that is no run, with nothing above."""
    import edge_runtime.station_check as station_check

    def stopped(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(station_check, "check_folder", stopped)
    model = model_with_profile(tmp_path / "m.onnx")
    folder = write(tmp_path / "cam", {"good.png": impeller(bg=165)})
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(folder)])
    assert r.exit_code == 130, r.output
    assert r.stderr.strip().splitlines()[-1] == "error: interrupted: the station check stopped before its report"
    assert "summary:" not in r.output


def test_check_station_with_an_empty_model_is_refused_not_the_bundled_model(tmp_path: Path):
    """--model '' (an unset shell variable) was taken for no --model: the bundled model's profile judged the folder
    and the check passed, exit 0, while a run with the same --model '' is refused (exit 4)."""
    folder = write(tmp_path / "cam", {"good.png": impeller(bg=165)})
    r = CliRunner().invoke(main, ["--model", "", "--check-station", str(folder)])
    assert r.exit_code == 4, r.output
    # named as empty: it had said ".: not a regular file", the working folder
    assert r.stderr.strip() == ("error: the model's path is empty (an unset shell variable?); name a model file, or "
                                "none for the bundled INT8 model")  # fmt: skip


def test_check_station_says_what_it_did_not_check(tmp_path: Path):
    """A video in the folder and a linked folder of images went unchecked without a word (``--source`` on the same
    folder names them), and the folder "looked like the training images"."""
    model = model_with_profile(tmp_path / "m.onnx")
    folder = write(tmp_path / "cam", {"a.png": impeller(bg=170)})
    (folder / "clip.mp4").write_bytes(b"not checked")
    linked = write(tmp_path / "elsewhere", {"b.png": impeller(bg=170)})
    (folder / "more").symlink_to(linked, target_is_directory=True)
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(folder)])
    assert r.exit_code == 0, r.output
    assert "1 image (1 file not inspected, not images or hidden: clip.mp4) (1 link to folders not followed)" in r.output


def test_a_model_without_a_profile_says_it_checks_nothing(tmp_path: Path):
    """Exported where the training images were not, a model carries no station profile: every record then read
    "unlike_training": null, as if each item looked like the training images, and nothing said the check was off."""
    from edge_runtime.preprocess import CropMode

    info = replace(tiny_info(), preprocess=replace(tiny_info().preprocess, crop=CropMode.PART))
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(with_metadata(model_bytes(), info.to_json(), stamp=True))
    parts = write(tmp_path / "parts", {"a.png": impeller(bg=240)})
    r = CliRunner().invoke(main, ["--model", str(bare), "--source", str(parts), "--json"])
    assert r.exit_code == 0, r.output
    assert "no station check: the model carries no training-image statistics" in r.stderr
    r = CliRunner().invoke(main, ["--model", str(model_with_profile(tmp_path / "m.onnx")), "--source", str(parts)])
    assert "no station check" not in r.stderr
    # an older export, full-frame (tests/models/tiny.onnx's center crop): its start line had said nothing either
    r = CliRunner().invoke(main, ["--model", str(MODELS / "tiny.onnx"), "--source", str(parts)])
    assert r.exit_code == 0, r.output
    start = r.stderr.splitlines()[0]
    assert start.startswith("model tiny.onnx (") and start.endswith(
        "; no station check: the model carries no training-image statistics, re-export it where they are"
    ), start


def test_check_station_names_a_part_too_small_as_a_run_does(tmp_path: Path):
    """A camera too far away (the part a few pixels across): a run's WARNING named "part too small in the image" on
    every item, the station check on the same folder did not, so the engineer was never told to bring the camera
    closer."""
    model = model_with_profile(tmp_path / "m.onnx")
    far = write(tmp_path / "far", {f"{i}.png": cv2.resize(impeller(bg=165), (12, 12)) for i in range(3)})
    run = CliRunner().invoke(main, ["--model", str(model), "--source", str(far), "--json"])
    kinds = {why.rsplit(" (", 1)[0] for line in run.stdout.splitlines() for why in json.loads(line)["unlike_training"]}
    assert "part too small in the image" in kinds
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(far)])
    assert r.exit_code == 6, r.output
    assert {line.split(")  ", 1)[1] for line in r.output.splitlines() if "%)  " in line} == kinds


def test_check_station_names_its_unreadable_files_and_what_to_do_about_them(tmp_path: Path):
    """A folder of good images with three broken files said "3 unreadable files were skipped" without naming them,
    and advised "adjust light and framing", which would not fix them; an image too large to decode, alone in its
    folder, gave "no readable images to check (1 unreadable)" with no word of why."""
    model = model_with_profile(tmp_path / "m.onnx")
    folder = write(tmp_path / "cam", {f"p{i:02d}.png": impeller(bg=160 + i) for i in range(30)})
    (folder / "empty.png").write_bytes(b"")
    for name in ("cut.png", "notes.jpg"):
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(folder)])
    assert r.exit_code == 6, r.output
    assert f"{folder / 'empty.png'}: empty file" in r.output and str(folder / "notes.jpg") in r.output
    assert "fix or remove the unreadable files" in r.output and "adjust light and framing" not in r.output
    huge = tmp_path / "huge"
    huge.mkdir()
    (huge / "big.png").write_bytes(cv2.imencode(".png", np.zeros((9000, 8000), np.uint8))[1].tobytes())
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(huge)])
    assert r.exit_code == 3 and "header claims 8000x9000 pixels" in r.output, r.output


def test_the_summary_file_keeps_why_items_looked_unlike_the_training_images(tmp_path: Path):
    """The summary on stderr named the reasons ("background brighter than any training image (1)"); --summary
    FILE.json, which a station's script reads, had only the count ("unlike_training": 1)."""
    model = model_with_profile(tmp_path / "m.onnx")
    parts = write(tmp_path / "parts", {"a_grey.png": impeller(bg=165), "b_white.png": impeller(bg=240)})
    out = tmp_path / "summary.json"
    r = CliRunner().invoke(main, ["--model", str(model), "--source", str(parts), "--summary", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads(out.read_text())
    assert summary["unlike_training"] == 1
    assert summary["unlike_reasons"]["background brighter than any training image"] == 1
    warning = next(line for line in r.stderr.splitlines() if line.startswith("WARNING:"))
    assert all(f"{kind} (1)" in warning for kind in summary["unlike_reasons"])  # the same reasons as on stderr


def test_a_failed_station_check_points_to_each_files_reasons(tmp_path: Path):
    """The report counts reasons; which files were flagged it did not say, nor where to find out."""
    model = model_with_profile(tmp_path / "m.onnx")
    new = write(tmp_path / "new", {f"{i}.png": impeller(bg=238, core=80) for i in range(3)})
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(new)])
    assert r.exit_code == 6, r.output
    assert "which files, with their figures: edge-infer --source DIR --json, the unlike_training field" in r.output
    r = CliRunner().invoke(main, ["--model", str(model), "--source", str(new), "--json"])  # what it points to
    records = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 3 and all("background brighter" in " ".join(x["unlike_training"]) for x in records)


def test_a_station_check_stopped_midway_reports_the_images_it_had_checked(tmp_path: Path, monkeypatch):
    """Ctrl-C at image 4000 of a 5000-image folder printed only "error: interrupted: the station check stopped
    before its report": every image checked so far was lost. Now their report, with how far it got and no verdict."""
    import edge_runtime.station_check as station_check

    checked = station_check.run_reasons
    calls = []

    def stop_at_the_third(*args: object) -> list[str]:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return checked(*args)

    monkeypatch.setattr(station_check, "run_reasons", stop_at_the_third)
    model = model_with_profile(tmp_path / "m.onnx")
    folder = write(tmp_path / "cam", {"a.png": impeller(bg=165), "b.png": impeller(bg=240),
                                      "c.png": impeller(bg=165), "d.png": impeller(bg=165)})  # fmt: skip
    r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(folder)])
    assert r.exit_code == 130, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("station check: 2 images, 1 (50.0%) unlike the 9 training images"), r.output
    assert "background brighter than any training image" in r.stdout
    assert lines[-1].startswith("  -> stopped early (interrupted) after 2 of 4 files")
    assert "look like the training images" not in r.stdout and "do not trust these verdicts" not in r.stdout


def test_the_summarys_share_unlike_training_is_of_the_items_checked_not_of_errors(tmp_path: Path):
    """A file that could not be read was never checked, yet counted as an item like the training images: one white
    image among three unreadable files read "1 of 4 items (25%) looks unlike", so a station mostly unlike training
    looked mostly fine. The share is of the items checked now, and the line says how many were not."""
    model = model_with_profile(tmp_path / "m.onnx")
    folder = write(tmp_path / "cam", {"b_white.png": impeller(bg=240)})
    for name in ("c.png", "d.png", "e.png"):
        (folder / name).write_bytes(b"not an image")
    out = tmp_path / "summary.json"
    r = CliRunner().invoke(main, ["--model", str(model), "--source", str(folder), "--json", "--summary", str(out)])
    assert r.exit_code == 0, r.stderr
    assert sum(json.loads(line)["error"] is not None for line in r.stdout.splitlines()) == 3
    warning = next(line for line in r.stderr.splitlines() if line.startswith("WARNING:"))
    assert warning.startswith("WARNING: 1 of 1 item (100%) looks unlike the training images: background brighter")
    assert "; 3 items with an error were not checked (check the station" in warning
    summary = json.loads(out.read_text())  # a station's script computes the share as the line does
    assert (summary["items"], summary["station_checked"], summary["unlike_training"]) == (4, 1, 1)


def test_check_station_on_a_file_says_to_pass_its_folder(tmp_path: Path):
    """--check-station cam.mp4 (or one image) was click's "Directory 'cam.mp4' is a file", exit 2: neither what to
    pass nor how to judge that file."""
    model = model_with_profile(tmp_path / "m.onnx")
    folder = write(tmp_path / "cam", {"a.png": impeller(bg=165)})
    (folder / "cam.mp4").write_bytes(b"\0\0\0\x18ftypmp42")
    for name in ("cam.mp4", "a.png"):
        r = CliRunner().invoke(main, ["--model", str(model), "--check-station", str(folder / name)])
        assert r.exit_code == 3, r.output
        assert r.stderr.strip() == (f"error: {folder / name}: is a file, not a folder; pass --check-station the "
                                    f"folder of the new camera's images (edge-infer --source {folder / name} "
                                    "judges this one file)")  # fmt: skip
        assert r.stdout == ""


def test_no_station_check_says_which_flags_it_keeps(tmp_path: Path):
    """--help said --no-station-check still flags "a frame without a part"; it flagged a part too small in the image
    (and a second part) too, so its WARNING surprised the engineer who had turned the check off."""
    model = model_with_profile(tmp_path / "m.onnx")
    far = write(tmp_path / "far", {"far.png": cv2.resize(impeller(bg=165), (8, 8), interpolation=cv2.INTER_AREA)})
    r = CliRunner().invoke(main, ["--model", str(model), "--source", str(far), "--no-station-check"])
    assert r.exit_code == 0, r.output
    assert "WARNING: 1 of 1 item (100%) looks unlike the training images" in r.stderr and "part too small" in r.stderr
    helped = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    assert "a frame without a part, with more than one, or with a part too small in the image is still flagged" in (
        helped
    )
