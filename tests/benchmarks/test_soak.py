"""The soak benchmark end to end with a small count: its report has every figure the README quotes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from benchmarks.soak import main
from tests.conftest import REPO


def test_soak_reports_memory_descriptors_threads_and_p99_over_time(tmp_path):
    model = REPO / "tests" / "models" / "tiny.onnx"
    args = ["--frames", "1000", "--window", "500", "--fps", "2000", "--model", str(model), "--out", str(tmp_path)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "soak.json").read_text())
    assert data["frames"] == 1000 and data["exit_code"] == 0
    assert [w["frames"] for w in data["windows"]] == [500, 1000]
    for key in ("rss_mib_after_warmup", "rss_mib_end", "fds_start", "fds_end", "threads_start", "threads_end"):
        assert isinstance(data[key], int | float), key
    assert data["fds_end"] == data["fds_start"] and data["threads_end"] == data["threads_start"]
    assert "p99 latency per 500 frames" in (tmp_path / "soak.md").read_text()
