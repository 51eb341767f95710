"""What a wheel and an sdist built from a checkout carry, built from a copy of it in which a developer has followed
the README (export-onnx --quantize wrote train/default_model/best_int8.onnx; make demo wrote runs/).

The wheel shipped that local INT8 export (0.4 MB, never checked as the bundled models are) inside the train package;
the sdist came without constraints.txt, which every install command of the README passes with -c."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from tests.conftest import REPO

PACKAGES = ("edge_runtime", "train", "export", "benchmarks")
FILES = ("pyproject.toml", "README.md", "constraints.txt", "MANIFEST.in", "LICENSE")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], set[str], int]:
    """The file names in the wheel and in the sdist, and the wheel's size, built without network or pip."""
    setuptools = pytest.importorskip("setuptools", reason="builds with setuptools' own backend")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} is older than pyproject.toml's build requirement (77)")
    src, out = tmp_path_factory.mktemp("checkout"), tmp_path_factory.mktemp("dist")
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in PACKAGES:
        shutil.copytree(REPO / name, src / name, ignore=junk)
    for name in FILES:
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "tests", src / "tests", ignore=junk)
    shutil.copy(REPO / "edge_runtime/models/defectnet_int8.onnx", src / "train/default_model/best_int8.onnx")
    (src / "runs/demo").mkdir(parents=True)
    (src / "runs/demo/verdicts.csv").write_text("source,label\n")
    for hook in ("build_wheel", "build_sdist"):  # one process each: in one, the sdist went to the wheel's folder
        proc = subprocess.run(
            [sys.executable, "-c", f"import setuptools.build_meta as b, sys; b.{hook}(sys.argv[1])", str(out)],
            cwd=src, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as z:
        in_wheel = set(z.namelist())
    with tarfile.open(sdist) as t:
        in_sdist = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    return in_wheel, in_sdist, wheel.stat().st_size


def test_the_wheel_ships_what_the_runtime_needs_and_no_local_export(built):
    in_wheel, _, size = built
    shipped = {
        "edge_runtime/models/defectnet_int8.onnx",
        "edge_runtime/models/defectnet_fp32.onnx",
        "edge_runtime/samples/test/def_front/cast_def_0_495.jpeg",
        "edge_runtime/station/static/index.html",
        "edge_runtime/station/static/station.js",
        "train/default_model/best.pt",
    }
    assert shipped <= in_wheel
    assert "train/default_model/best_int8.onnx" not in in_wheel
    assert not [n for n in in_wheel if n.startswith(("tests/", "runs/"))]
    assert size < 3_000_000  # 2.3 MB: models, samples, the default checkpoint and the code


def test_the_sdist_carries_the_constraints_file_and_no_tests(built):
    _, in_sdist, _ = built
    assert {"constraints.txt", "pyproject.toml", "README.md"} <= in_sdist
    assert "train/default_model/best_int8.onnx" not in in_sdist
    assert not [n for n in in_sdist if n.startswith(("tests/", "runs/"))]


def test_both_carry_the_licence_pyproject_names(built):
    """pyproject.toml says Apache-2.0; a wheel or sdist without the licence's text gave a user no terms to read."""
    in_wheel, in_sdist, _ = built
    assert "LICENSE" in in_sdist
    assert [n for n in in_wheel if n.endswith(".dist-info/licenses/LICENSE")]
    assert "Apache License" in (REPO / "LICENSE").read_text().split("\n", 3)[1]
