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


def _missing_extra_line(tmp_path: Path, cwd: Path) -> str:
    """The line of a missing extra, from a copy of the package as pip puts it (no pyproject.toml beside it), run in
    ``cwd``."""
    site = tmp_path / "site"
    shutil.copytree(SAMPLES.parent, site / "edge_runtime", ignore=shutil.ignore_patterns("samples", "models"))
    code = (
        "import sys, edge_runtime.errors as e\n"
        "assert e.__file__.startswith(sys.argv[1]), e.__file__\n"
        "try:\n    e.require_extra('no_such_module_x', 'station')\n"
        "except e.MissingExtraError as x:\n    print(x)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run([sys.executable, "-c", code, str(site)], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_a_missing_extra_outside_a_checkout_names_the_wheel_not_the_checkout(tmp_path: Path):
    """Installed from a wheel (no checkout on the edge box), a missing extra said "install the extra in the
    defect-edge checkout with: pip install ... '.[station]'", which there is nothing to run in."""
    assert _missing_extra_line(tmp_path, tmp_path) == (
        "no_such_module_x is not installed; install the extra from the wheel defect-edge was installed from: pip "
        f"install -c constraints.txt 'defect_edge-{edge_runtime.__version__}-py3-none-any.whl[station]' "
        "(in a checkout: '.[station]')"
    )


def test_a_missing_extra_after_the_runtime_install_in_the_checkout_names_the_checkout(tmp_path: Path):
    """The README's runtime install (``pip install -c constraints.txt .`` in the checkout) copies the packages into
    site-packages; ``train-model`` typed there said to install the extra "from the wheel defect-edge was installed
    from", a wheel that was never made."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "pyproject.toml", checkout / "pyproject.toml")
    assert _missing_extra_line(tmp_path, checkout) == (
        "no_such_module_x is not installed; install the extra in the defect-edge checkout with: pip install -c "
        "constraints.txt '.[station]'"
    )
