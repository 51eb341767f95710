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
