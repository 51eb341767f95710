"""edge-log on a log file cut short (a copy interrupted, or made onto a full disk)."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from edge_runtime.errors import ExitCode
from edge_runtime.station.log_cli import main
from tests.edge_runtime.station.conftest import write_items


def test_a_log_cut_short_is_told_as_cut_with_its_sizes(station_log, log_path: Path):
    write_items(station_log, 64)
    station_log.close()
    whole = log_path.stat().st_size
    os.truncate(log_path, whole // 2 + 100)  # scp onto a disk that filled up half-way
    for command in (["summary", str(log_path)], ["query", str(log_path), "--csv"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == ExitCode.BAD_DATA
        assert result.output.startswith("error:") and result.output.count("\n") == 1
        # it said "not a defect-edge inspection log, or damaged; pass the file that edge-infer --log wrote"
        assert f"cut short: {whole // 2 + 100} bytes of the {whole}" in result.output, result.output
        assert "pass the file" not in result.output
