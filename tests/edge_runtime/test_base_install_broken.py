"""A base package gone from the runtime install, as the GPU swap leaves it when its last step fails (it uninstalls
onnxruntime before installing onnxruntime-gpu), or emptied by uninstalling one of the two onnxruntime wheels
installed side by side. edge-infer had printed a 30-line traceback (exit 1), or "unexpected AttributeError ...
report it" (exit 1), for a broken install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.errors import ExitCode
from tests.conftest import REPO
from tests.edge_runtime.conftest import write_parts

BLOCK = textwrap.dedent(
    """
    import sys
    GONE = sys.argv.pop(1)
    class _Gone:
        def find_spec(self, name, path=None, target=None):
            if name == GONE:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, _Gone())
    from edge_runtime.cli import main
    main()
    """
)


def test_a_missing_onnxruntime_is_one_line_naming_it(tmp_path: Path, tiny_model: Path):
    write_parts(tmp_path / "parts", [10])
    args = ["--model", str(tiny_model), "--source", str(tmp_path / "parts")]
    r = subprocess.run(
        [sys.executable, "-c", BLOCK, "onnxruntime", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert r.returncode == ExitCode.MISSING_EXTRA, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: onnxruntime is not installed (onnxruntime, part of the base install): ")
    assert "pip install -c constraints.txt onnxruntime, or onnxruntime-gpu for the GPU" in r.stderr


def test_an_emptied_onnxruntime_says_which_wheel_to_reinstall(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
):
    leftovers = types.ModuleType("onnxruntime")  # what `import onnxruntime` gives where pip left only capi/
    leftovers.__path__ = [str(tmp_path / "onnxruntime")]
    monkeypatch.setitem(sys.modules, "onnxruntime", leftovers)
    write_parts(tmp_path / "parts", [10])
    r = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(tmp_path / "parts")])
    assert r.exit_code == ExitCode.MISSING_EXTRA, r.output
    line = r.stderr.strip()
    assert line.startswith("error: onnxruntime is installed but its files are gone") and "\n" not in line
    assert "pip install --force-reinstall --no-deps -c constraints.txt onnxruntime-gpu (or onnxruntime)" in line
