"""edge-log summary's text: one line per model, whatever its file is named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner

from edge_runtime.station.log import InspectionLog, LogConfig
from edge_runtime.station.log_cli import main
from tests.edge_runtime.station.conftest import RUN, write_items


def test_a_newline_in_a_model_file_name_keeps_its_models_seen_line_whole(log_path: Path):
    log = InspectionLog(LogConfig(log_path, station="line-3"))
    log.start_run(replace(RUN, model_file="/models/defect\nnet.onnx"))  # edge-infer --model "$(ls models/*)"
    write_items(log, 4)
    log.close()
    result = CliRunner().invoke(main, ["summary", str(log_path)])
    assert result.exit_code == 0, result.output
    models = result.output.split("models seen:\n")[1].splitlines()
    # the line broke after "defect", its second half "net.onnx  int8 ..." read as a line of its own
    assert len(models) == 1 and "defect\\nnet.onnx  int8" in models[0]


def test_an_hour_and_a_model_of_one_item_say_1_item(log_path: Path):
    """A log of one item said "1 items" in its hour line and its models-seen line."""
    log = InspectionLog(LogConfig(log_path, station="line-3"))
    log.start_run(RUN)
    write_items(log, 1)
    log.close()
    result = CliRunner().invoke(main, ["summary", str(log_path)])
    assert result.exit_code == 0, result.output
    hours, models = result.output.split("defect rate per hour (UTC):\n")[1].split("models seen:\n")
    assert "1 items" not in result.output
    assert "       1 item   " in hours and "  1 item  " in models


def test_hour_lines_keep_their_columns_whatever_the_count(log_path: Path):
    log = InspectionLog(LogConfig(log_path, station="line-3"))
    log.start_run(RUN)
    write_items(log, 1, t0=1_780_000_000.0)
    write_items(log, 12, t0=1_780_000_000.0 + 7200)
    log.close()
    result = CliRunner().invoke(main, ["summary", str(log_path)])
    hours = result.output.split("defect rate per hour (UTC):\n")[1].split("models seen:")[0].splitlines()
    assert len(hours) == 2 and hours[0].index("defective") == hours[1].index("defective")
    assert "1 item " in hours[0] and "12 items" in hours[1]
