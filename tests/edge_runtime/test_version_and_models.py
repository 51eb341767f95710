"""``--version`` on every command, and the bundled models named by precision: what a pip-installed station needs."""

from __future__ import annotations

import importlib
from pathlib import Path

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


def test_the_bundled_models_are_found_by_precision_wherever_the_package_is(tmp_path, monkeypatch):
    """The README's edge_runtime/models/defectnet_fp32.onnx exists only in a checkout: a pip-installed station had
    no way to name the bundled FP32 model ("model file not found", exit 4)."""
    from edge_runtime.cli import main
    from edge_runtime.model import load_model
    from edge_runtime.model_info import Precision

    monkeypatch.chdir(tmp_path)
    assert load_model("fp32").info.precision is Precision.FP32
    assert load_model("int8").info.precision is Precision.INT8
    sample = next((Path(__file__).resolve().parents[2] / "edge_runtime" / "samples").rglob("*.jpeg"))
    r = CliRunner().invoke(main, ["--model", "fp32", "--source", str(sample), "--json"])
    assert r.exit_code == 0, r.output
    assert "defectnet_fp32.onnx" in r.stderr
    (tmp_path / "fp32").write_text("a file of that name in the working folder wins")
    r = CliRunner().invoke(main, ["--model", "fp32", "--source", str(sample)])
    assert r.exit_code == 4, r.output


def test_the_bundled_model_shortcut_is_protected_from_outputs_and_not_shadowed_by_a_folder(tmp_path, monkeypatch):
    """--model fp32 --summary <the bundled FP32 file> replaced the model with a summary (the check saw "fp32")."""
    import shutil

    import edge_runtime.model_file as model_file
    from edge_runtime.cli import main
    from edge_runtime.model import model_path

    models = tmp_path / "models"
    shutil.copytree(model_file.MODELS_DIR, models)
    monkeypatch.setattr(model_file, "MODELS_DIR", models)
    target = models / "defectnet_fp32.onnx"
    before = target.read_bytes()
    sample = next((Path(__file__).resolve().parents[2] / "edge_runtime" / "samples").rglob("*.jpeg"))
    r = CliRunner().invoke(main, ["--model", "fp32", "--source", str(sample), "--summary", str(target)])
    assert r.exit_code == 7, r.output
    assert target.read_bytes() == before
    monkeypatch.chdir(tmp_path)
    (tmp_path / "int8").mkdir()  # a folder of that name: not a model file, the shortcut still works
    assert model_path("int8") == models / "defectnet_int8.onnx"


def test_edge_bench_takes_the_bundled_model_names_too():
    from benchmarks.runner import bundled_models  # noqa: F401 - the same files edge-bench runs by default
    from edge_runtime.model import default_model_path, model_path
    from edge_runtime.model_info import Precision

    assert model_path("FP32") == default_model_path(Precision.FP32)


@pytest.mark.parametrize("typed", ["./fp32", "int8/", "sub/../int8"])
def test_a_path_spelling_of_a_bundled_name_is_a_file_and_a_missing_one_is_refused(tmp_path, monkeypatch, typed):
    """Only the bare name is the shortcut. click's Path type turned ./fp32 into fp32, so a missing ./fp32 (a typo
    for the model file the user meant) ran the bundled model and passed its verdicts off as that file's."""
    from edge_runtime.cli import main
    from edge_runtime.model import model_path

    monkeypatch.chdir(tmp_path)
    assert model_path(Path(typed)) == Path(typed)
    sample = next((Path(__file__).resolve().parents[2] / "edge_runtime" / "samples").rglob("*.jpeg"))
    r = CliRunner().invoke(main, ["--model", typed, "--source", str(sample)])
    assert r.exit_code == 4, r.output
    assert "defectnet_" not in r.output


def test_edge_bench_refuses_a_missing_path_spelling_of_a_bundled_name(tmp_path, monkeypatch):
    from benchmarks.cli import main

    monkeypatch.chdir(tmp_path)
    samples = Path(__file__).resolve().parents[2] / "edge_runtime" / "samples"
    r = CliRunner().invoke(main, ["--model", "./int8", "--data", str(samples), "--json", str(tmp_path / "b.json")])
    assert r.exit_code == 4, r.output  # every model refused
    assert "model file not found" in r.output
    assert not (tmp_path / "b.json").exists()


SCRIPTS = ["benchmarks.localisation", "benchmarks.robustness", "benchmarks.second_look", "benchmarks.soak",
           "benchmarks.station", "benchmarks.station_viewer", "benchmarks.annotate_boxes", "train.loc_head",
           "export.quant_study", "export.ship"]  # fmt: skip


@pytest.mark.parametrize("module", SCRIPTS)
def test_every_script_says_its_version(module: str):
    """`python -m benchmarks.robustness --version` (and the other scripts the README runs) was "No such option",
    exit 2: a results file could not name the defect-edge that made it."""
    if module.split(".")[0] in ("train", "export"):
        pytest.importorskip("torch", reason="needs the [train] extra")
    main = importlib.import_module(module).main
    r = CliRunner().invoke(main, ["--version"], prog_name=f"python -m {module}")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"python -m {module} (defect-edge) {__version__}"


def test_the_wheel_carries_every_data_file_the_installed_commands_read(tmp_path):
    """A non-editable install lacked benchmarks/data/defect_boxes.json: `python -m benchmarks.localisation` failed
    there with "not a readable defect-box file", exit 3."""
    import shutil
    import subprocess
    import sys
    import zipfile

    from tests.conftest import REPO

    setuptools = pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:  # pyproject.toml's build requirement
        pytest.skip(f"setuptools {setuptools.__version__} here; the build needs 77 or later")
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, timeout=60)
    if listed.returncode != 0:
        pytest.skip("needs the git checkout (the tracked files are what a wheel is built from)")
    src = tmp_path / "src"  # the tracked files alone: an editable install's egg-info would list files for setuptools
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)  # fmt: skip
    if built.returncode != 0 and "No module named pip" in built.stderr:
        pytest.skip("no pip in this environment")
    assert built.returncode == 0, built.stderr[-1000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = ["benchmarks/data/defect_boxes.json", "edge_runtime/models/defectnet_int8.onnx",
              "edge_runtime/models/defectnet_fp32.onnx", "edge_runtime/station/static/index.html",
              "train/default_model/best.pt", "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg"]  # fmt: skip
    assert [n for n in needed if n not in names] == []
