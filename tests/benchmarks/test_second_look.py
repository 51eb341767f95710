"""The looks' cost benchmark: every setting timed on the same files, and the verdicts of each."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

from benchmarks.second_look import main

LEFT = Path(__file__).resolve().parents[1] / "models" / "tiny_left.onnx"  # scores the left half; second look


def write_parts(root: Path) -> Path:
    """def_front: parts bright on the left only (defective to one view, OK to both); ok_front: dark parts."""
    for cls, levels in (("def_front", [(140, 92)] * 3), ("ok_front", [(40, 40)] * 3)):
        (root / cls).mkdir(parents=True)
        for i, (left, right) in enumerate(levels):
            im = np.full((64, 64), right, np.uint8)
            im[:, :32] = left
            cv2.imwrite(str(root / cls / f"p{i}.png"), im)
    return root


def test_every_setting_is_timed_alike_and_their_verdicts_differ(tmp_path: Path):
    data = write_parts(tmp_path / "d")
    out = tmp_path / "look.json"
    r = CliRunner().invoke(main, ["--data", str(data), "--model", str(LEFT), "--rounds", "2", "--json", str(out)])
    assert r.exit_code == 0, r.output
    both, on, off = json.loads(out.read_text())
    assert [(s["second_look"], s["symmetry_look"]) for s in (both, on, off)] == [
        (True, True),
        (True, False),
        (False, False),
    ]
    assert on["looked_twice"] == 0.5 and off["looked_twice"] == 0.0  # the three bright-left parts
    s_all = (both, on, off)
    assert all(len(s[k]) == 2 for s in s_all for k in ("folder_images_per_s", "file_p50_ms", "file_p99_ms"))
    # One view calls the lopsided parts defective; both views call them OK (here: "missed").
    assert (off["missed_defects"], on["missed_defects"]) == (0, 3)
    # tiny_left is not part-centred: it carries no symmetry look, so nothing is measured
    assert both["symmetry_measured"] == 0.0 and both["missed_defects"] == 3
    assert "| second look | 50.0% | 0.0% |" in r.output and "| one view | 0.0% | 0.0% |" in r.output


def test_a_folder_without_images_is_a_clear_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(main, ["--data", str(tmp_path / "empty"), "--model", str(LEFT)])
    assert r.exit_code == 3 and "no images found" in r.output and "Traceback" not in r.output


def test_json_in_a_folder_not_made_yet_is_written_and_an_unwritable_one_refused_before_the_timing(tmp_path: Path):
    """``--json sl/second_look.json`` with ``sl/`` missing ran the whole benchmark, then exit 7."""
    data = write_parts(tmp_path / "d")
    out = tmp_path / "sl" / "look.json"
    r = CliRunner().invoke(main, ["--data", str(data), "--model", str(LEFT), "--rounds", "2", "--json", str(out)])
    assert r.exit_code == 0 and len(json.loads(out.read_text())) == 3, r.output
    (tmp_path / "file").write_text("")
    bad = tmp_path / "file" / "look.json"  # its folder is a file
    r = CliRunner().invoke(main, ["--data", str(data), "--model", str(LEFT), "--rounds", "2", "--json", str(bad)])
    assert r.exit_code == 7 and "cannot write here" in r.output and "| second look |" not in r.output


def test_a_stdout_that_cannot_be_written_still_gets_the_json_written(tmp_path: Path):
    """``> /dev/full``: the report's print failed first and the run ended "unexpected OSError", exit 1, its --json
    never written; the file is written, then one line says stdout failed, exit 7."""
    import subprocess
    import sys

    data = write_parts(tmp_path / "d")
    out = tmp_path / "look.json"
    cmd = [sys.executable, "-m", "benchmarks.second_look", "--data", str(data), "--model", str(LEFT), "--rounds", "2"]
    with open("/dev/full", "w") as full:
        r = subprocess.run([*cmd, "--json", str(out)], stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 7, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: stdout: cannot write (No space left on device); free space where stdout goes, or send it elsewhere"
    ]
    assert len(json.loads(out.read_text())) == 3
