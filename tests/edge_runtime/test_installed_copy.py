"""The README's paths into the package (edge_runtime/samples, train/default_model/best.pt) typed outside a checkout,
as on an edge box after a pip install: the error named the path and nothing else; it now names the installed copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import edge_runtime
from edge_runtime.cli import main
from edge_runtime.errors import ExitCode

SAMPLES = Path(edge_runtime.__file__).resolve().parent / "samples"


def test_the_bundled_samples_typed_elsewhere_name_the_installed_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["--source", "edge_runtime/samples/test"])
    assert r.exit_code == ExitCode.BAD_DATA, r.output
    line = r.stderr.strip().splitlines()[-1]
    assert line == (
        f"error: edge_runtime/samples/test: no such file or folder (the copy installed with defect-edge is "
        f"{SAMPLES / 'test'})"
    )
    r = CliRunner().invoke(main, ["--source", str(SAMPLES / "test"), "--json"])  # the copy named works
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 5, r.output


def test_other_missing_paths_get_no_such_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from edge_runtime.errors import installed_copy_hint

    monkeypatch.chdir(tmp_path)
    for path in ("parts", "edge_runtime/no_such_folder", "../edge_runtime/samples", "/edge_runtime/samples"):
        assert installed_copy_hint(path) == "", path
    (tmp_path / "edge_runtime" / "samples").mkdir(parents=True)  # a folder of that name here is the one meant
    assert installed_copy_hint("edge_runtime/samples") == ""
    assert installed_copy_hint(tmp_path / "train" / "default_model" / "best.pt").startswith(" (the copy installed")


def test_a_missing_extra_outside_a_checkout_names_the_wheel_not_the_checkout(tmp_path: Path):
    """Installed from a wheel (no checkout on the edge box), a missing extra said "install the extra in the
    defect-edge checkout with: pip install ... '.[station]'", which there is nothing to run in."""
    site = tmp_path / "site"  # the package as a wheel puts it: no pyproject.toml beside it
    shutil.copytree(SAMPLES.parent, site / "edge_runtime", ignore=shutil.ignore_patterns("samples", "models"))
    code = (
        "import sys, edge_runtime.errors as e\n"
        "assert e.__file__.startswith(sys.argv[1]), e.__file__\n"
        "try:\n    e.require_extra('no_such_module_x', 'station')\n"
        "except e.MissingExtraError as x:\n    print(x)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run(
        [sys.executable, "-c", code, str(site)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        "no_such_module_x is not installed; install the extra from the wheel defect-edge was installed from: pip "
        f"install -c constraints.txt 'defect_edge-{edge_runtime.__version__}-py3-none-any.whl[station]' "
        "(in a checkout: '.[station]')"
    )
