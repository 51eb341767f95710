"""``--version`` on every command: a station's records name the tool's version, not only the model's."""

from __future__ import annotations

import importlib

import pytest
from click.testing import CliRunner

from edge_runtime import __version__

COMMANDS = {
    "edge-infer": "edge_runtime.cli",
    "edge-log": "edge_runtime.station.log_cli",
    "edge-bench": "benchmarks.cli",
    "export-onnx": "export.cli",
    "train-model": "train.cli",
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_says_its_version(name: str):
    main = importlib.import_module(COMMANDS[name]).main  # the extras are imported only when a command runs
    r = CliRunner().invoke(main, ["--version"], prog_name=name)
    assert r.exit_code == 0, r.output  # edge-infer --version was "No such option", exit 2
    assert r.output.strip() == f"{name} (defect-edge) {__version__}"
