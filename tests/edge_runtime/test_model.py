"""Loading a model file: what it says about itself is read and checked; bad files give a named ModelError."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import MissingExtraError, ModelError
from edge_runtime.model import Provider, RuntimeConfig, load_model
from tests.edge_runtime.conftest import make_tiny_model, tiny_info

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
BRIGHTISH = np.full((50, 70, 3), 140, np.uint8)  # score sigmoid(20 * (0.549 - 0.5)) ~ 0.73


def test_predictions_carry_label_score_flag_and_latency(tiny_model: Path):
    model = load_model(tiny_model, provider=Provider.CPU, threads=1)
    dark, bright = model.predict_batch([np.zeros((40, 40), np.uint8), np.full((40, 40), 250, np.uint8)])
    assert (dark.label, dark.defective) == ("ok", False) and dark.score < 0.01
    assert (bright.label, bright.defective) == ("defective", True) and bright.score > 0.99
    assert dark.latency_ms > 0
    assert model.providers == ["CPUExecutionProvider"] and not model.fell_back


def test_a_provider_warning_goes_to_the_stderr_of_the_moment(tiny_model: Path):
    """Seen on a lent H200: the TensorRT fallback warning went to the sys.stderr of import time, so a caller
    that redirects stderr (or pytest's capsys) never saw it."""
    import contextlib
    import io

    model = load_model(tiny_model, provider=Provider.CPU, threads=1)
    model.provider_note = "TensorRT's libraries are not installed; using CUDAExecutionProvider instead"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        model.warn_if_fell_back()
    assert err.getvalue() == f"WARNING: {model.provider_note}\n"


def test_spin_false_lets_idle_threads_sleep_and_keeps_the_verdicts(tiny_model: Path):
    spinning, sleeping = load_model(tiny_model), load_model(tiny_model, spin=False)
    entry = "session.intra_op.allow_spinning"
    assert sleeping.session.get_session_options().get_session_config_entry(entry) == "0"
    assert "(not spinning)" in sleeping.describe() and "(not spinning)" not in spinning.describe()
    image = np.full((64, 64), 120, np.uint8)
    assert sleeping.predict(image).score == pytest.approx(spinning.predict(image).score, abs=1e-6)


def test_spin_takes_none_true_or_false_only(tiny_model: Path):
    """spin=np.False_ had kept the idle threads spinning in silence, and spin="no" was taken."""
    entry = "session.intra_op.allow_spinning"
    sleeping = load_model(tiny_model, spin=np.False_)
    assert sleeping.session.get_session_options().get_session_config_entry(entry) == "0"
    assert "(not spinning)" in sleeping.describe()
    for value in ("no", 0, "false"):
        with pytest.raises(TypeError, match=r"^spin must be True or False, not .*; pass spin=True or spin=False"):
            load_model(tiny_model, spin=value)


def test_the_runtime_config_takes_its_switches_as_true_or_false_only():
    """RuntimeConfig(second_look="no") was taken for its truth, the look on, while 0 turned it off."""
    assert RuntimeConfig(second_look=np.False_, symmetry_look=np.True_) == RuntimeConfig(second_look=False)
    for name in ("second_look", "symmetry_look"):
        with pytest.raises(TypeError, match=rf"^{name} must be True or False, not 'no' \(str\); pass {name}=True"):
            RuntimeConfig(**{name: "no"})


def test_threshold_is_read_from_the_file(tmp_path: Path):
    lenient = load_model(make_tiny_model(tmp_path / "t05.onnx", threshold=0.5))
    strict = load_model(make_tiny_model(tmp_path / "t09.onnx", threshold=0.9))
    assert lenient.predict(BRIGHTISH).defective
    assert not strict.predict(BRIGHTISH).defective
    assert strict.info.threshold == 0.9


def test_prepared_inputs_give_the_same_verdicts_as_whole_images(tiny_model: Path):
    model = load_model(tiny_model)
    images = [np.full((60, 90), v, np.uint8) for v in (20, 128, 131, 240)]
    direct = model.predict_batch(images)
    staged = model.predict_inputs(np.stack([model.input_u8(im) for im in images]))
    assert [p.score for p in direct] == pytest.approx([p.score for p in staged])


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("", "no defect-edge metadata"),
        ("{not json", "not valid JSON"),
        (json.dumps(tiny_info().to_dict() | {"threshold": 1.7}), "not a probability"),
        (json.dumps(tiny_info().to_dict() | {"schema_version": 42}), "schema 42"),
        (json.dumps(tiny_info().to_dict() | {"map_full_scale": -4}), "map_full_scale -4 is not a positive"),
        (json.dumps(tiny_info().to_dict() | {"map_full_scale": "4"}), "map_full_scale 4 is not a positive"),
    ],
)
def test_bad_metadata_is_refused_with_a_reason(tmp_path: Path, metadata: str, message: str):
    path = make_tiny_model(tmp_path / "bad.onnx", metadata=metadata)
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_missing_corrupt_and_foreign_model_files(tmp_path: Path):
    with pytest.raises(ModelError, match="model file not found"):
        load_model(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not protobuf")
    with pytest.raises(ModelError, match="onnxruntime cannot load it"):
        load_model(junk)
    with pytest.raises(ModelError, match="not a defect-edge model"):
        load_model(make_tiny_model(tmp_path / "other.onnx", input_name="pixels"))


def test_input_size_must_match_the_preprocessing_spec(tmp_path: Path):
    with pytest.raises(ModelError, match="disagrees with its preprocessing"):
        load_model(make_tiny_model(tmp_path / "mismatch.onnx", size=64))


def test_asking_for_an_absent_gpu_provider_says_what_to_install(tiny_model: Path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(MissingExtraError, match="onnxruntime-gpu"):  # exit 8; it was ModelError, exit 4
        load_model(tiny_model, provider="cuda")


@pytest.mark.parametrize(
    ("asked", "libraries", "chain", "noted"),
    [
        (Provider.TENSORRT, False, [CUDA, CPU], True),
        (Provider.TENSORRT, True, [TRT, CUDA, CPU], False),
        (Provider.AUTO, False, [CUDA, CPU], False),
        (Provider.AUTO, True, [TRT, CUDA, CPU], False),
        (Provider.CUDA, False, [CUDA, CPU], False),
        (Provider.CPU, True, [CPU], False),
    ],
)
def test_tensorrt_is_only_asked_for_when_its_libraries_load(monkeypatch, asked, libraries, chain, noted):
    """onnxruntime-gpu lists TensorRT even where libnvinfer is missing, then prints a multi-line error and falls
    back to the CPU (seen on an H100 without TensorRT): we ask for it only when it can run, keep the GPU through
    CUDA, and say why in one line."""
    import onnxruntime as ort

    from edge_runtime import providers

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(providers, "tensorrt_libraries", lambda: libraries)
    got, note = providers.provider_chain(asked)
    assert got == chain
    assert bool(note) == noted and (not noted or "libnvinfer" in note and "CUDAExecutionProvider" in note)


def test_a_gpu_provider_this_onnxruntime_lacks_is_exit_8(tmp_path, tiny_model):
    """A missing package (onnxruntime-gpu), as for an extra: it was exit 4, "bad model or checkpoint"."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    from click.testing import CliRunner

    from edge_runtime.cli import main
    from tests.edge_runtime.conftest import write_parts

    write_parts(tmp_path / "parts", [10])
    r = CliRunner().invoke(
        main, ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--provider", "cuda"]
    )
    assert r.exit_code == 8 and "install onnxruntime-gpu" in r.stderr, r.output


def test_a_missing_gpu_provider_names_the_remedy_as_the_caller_gives_it(monkeypatch, tmp_path, tiny_model):
    """load_model(provider="cuda") told a Python caller to "use --provider cpu", an option it has not got; the
    commands keep saying --provider cpu."""
    import onnxruntime as ort
    from click.testing import CliRunner

    from edge_runtime import providers
    from edge_runtime.cli import main
    from tests.edge_runtime.conftest import write_parts

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    monkeypatch.setattr(providers, "_both_wheels", lambda: False)
    with pytest.raises(MissingExtraError) as err:
        load_model(tiny_model, provider="cuda")
    assert str(err.value).endswith('install onnxruntime-gpu (see README, GPU) or use provider="cpu"')
    assert "--provider" not in str(err.value)
    write_parts(tmp_path / "parts", [10])
    r = CliRunner().invoke(
        main, ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--provider", "cuda"]
    )
    assert r.exit_code == 8, r.output
    assert r.stderr.strip().endswith("install onnxruntime-gpu (see README, GPU) or use --provider cpu"), r.stderr


def test_both_onnxruntime_wheels_installed_is_named_with_its_remedy(monkeypatch):
    """After the GPU swap, a later `pip install '.[station]'` put the CPU onnxruntime back beside onnxruntime-gpu:
    CUDA was gone and the message said to install onnxruntime-gpu, which was installed."""
    from importlib import metadata

    import onnxruntime as ort

    from edge_runtime import providers
    from edge_runtime.errors import MissingExtraError

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    monkeypatch.setattr(metadata, "version", lambda name: "1.32.0")  # both wheels "installed"
    with pytest.raises(MissingExtraError, match="are both installed and the CPU one took over") as err:
        providers.provider_chain(Provider.CUDA)
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in str(err.value)

    def only_cpu(name):
        if name == "onnxruntime-gpu":
            raise metadata.PackageNotFoundError(name)
        return "1.32.0"

    monkeypatch.setattr(metadata, "version", only_cpu)
    with pytest.raises(MissingExtraError, match="install onnxruntime-gpu"):
        providers.provider_chain(Provider.CUDA)
