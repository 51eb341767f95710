"""A system clock that was never set (a cheap edge box without a clock battery, booted offline, says 1970): the
records were stamped 1970 without a word, and once the clock was right a --log-keep deleted them all as old."""

from __future__ import annotations

import types

from click.testing import CliRunner

from edge_runtime import clock
from edge_runtime.cli import main
from tests.edge_runtime.conftest import write_parts


def run(tiny_model, folder) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(folder), "--json"])
    return result.exit_code, result.stderr.splitlines()


def test_a_clock_that_says_1970_is_said_before_the_records_it_stamps(tmp_path, tiny_model, monkeypatch):
    write_parts(tmp_path / "parts", [10, 220])
    monkeypatch.setattr(clock, "time", types.SimpleNamespace(time=lambda: 3600.0))
    code, err = run(tiny_model, tmp_path / "parts")
    assert code == 0
    assert err[0].startswith("warning: the system clock says 1970-01-01T01:00Z, before 2026"), err
    assert "set the clock (timedatectl set-ntp true" in err[0]


def test_a_set_clock_gets_no_warning(tmp_path, tiny_model):
    write_parts(tmp_path / "parts", [10, 220])
    code, err = run(tiny_model, tmp_path / "parts")
    assert code == 0 and not any("system clock" in line for line in err), err
