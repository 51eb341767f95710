"""Files given as a model that are no single ONNX model onnxruntime here can run: each is one line that says what
the file is and what to do (onnxruntime's own line had said neither)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from edge_runtime.errors import ExitCode, ModelError
from edge_runtime.model import load_model
from tests.edge_runtime.conftest import MODELS, write_parts
from tests.edge_runtime.faults_common import check, invoke


def _run(tmp_path: Path, model: Path) -> str:
    """edge-infer on two parts with ``model``: exit 4, one error line, no traceback; that line."""
    write_parts(tmp_path / "parts", [10, 200])
    result = invoke(["--model", str(model), "--source", str(tmp_path / "parts")])
    check(result, ExitCode.BAD_MODEL, error_lines=1)
    return result.stderr.strip()


def _checkpoint(path: Path) -> Path:
    """A file laid out as torch.save writes one (a zip whose first member is <name>/data.pkl), without torch."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("best/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("best/data/0", b"\0" * 64)
    return path


def test_a_checkpoint_given_as_the_model_is_named_as_one(tmp_path: Path):
    """It was "onnxruntime cannot load it (... INVALID_PROTOBUF : Failed to load model because protobuf parsing
    failed.); re-export with export-onnx"."""
    (tmp_path / "my run").mkdir()
    line = _run(tmp_path, _checkpoint(tmp_path / "my run" / "best.pt"))
    assert "best.pt: is a PyTorch checkpoint (train-model's best.pt), not an ONNX model" in line
    assert f"export-onnx '{tmp_path / 'my run' / 'best.pt'}'" in line and "protobuf" not in line


def test_an_empty_or_cut_short_model_says_so(tmp_path: Path):
    """They were "No graph was found in the protobuf" and "protobuf parsing failed"; the content hash is never
    reached: onnxruntime refuses them first."""
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert "empty.onnx: is empty (0 bytes)" in _run(tmp_path, empty)
    data = (MODELS / "tiny.onnx").read_bytes()
    for frac in (0.1, 0.5, 0.99):
        cut = tmp_path / f"cut{frac}.onnx"
        cut.write_bytes(data[: int(len(data) * frac)])
        assert f"cut{frac}.onnx: the ONNX data stops mid-way" in _run(tmp_path, cut)
    with pytest.raises(ModelError, match=r"stops mid-way .*copy it again"):
        load_model(cut)


def test_a_zip_that_is_not_a_checkpoint_is_told_to_be_unzipped(tmp_path: Path):
    packed = tmp_path / "model.onnx"
    with zipfile.ZipFile(packed, "w") as z:
        z.write(MODELS / "tiny.onnx", "tiny.onnx")
    assert "model.onnx: is a zip archive, not an ONNX model; unzip it" in _run(tmp_path, packed)


@pytest.mark.parametrize("data_file", ["beside", "missing"])
def test_a_model_with_external_data_is_refused_in_words(tmp_path: Path, data_file: str):
    """onnx.save(..., save_as_external_data=True): with its .data file beside it or not, it was "onnxruntime cannot
    load it (... External data path for model loaded from bytes escapes working directory ...)", which reads as a
    path problem: the runtime hands onnxruntime the bytes it hashed, never a path, so such a file cannot load."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(MODELS / "tiny.onnx"))
    for t in model.graph.initializer:  # onnx moves out only weights stored as raw bytes, as exported ones are
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t), t.name))
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    if data_file == "missing":
        (tmp_path / "ext.onnx.data").unlink()
    line = _run(tmp_path, path)
    assert "ext.onnx: keeps its weights in another file (ext.onnx.data: ONNX external data)" in line
    assert "pass the single .onnx file export-onnx wrote" in line


def _retagged(tmp_path: Path, *, opset: int | None = None, ir_version: int | None = None) -> Path:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(MODELS / "tiny.onnx"))
    for entry in model.opset_import:
        entry.version = opset if opset and entry.domain in ("", "ai.onnx") else entry.version
    model.ir_version = ir_version or model.ir_version
    path = tmp_path / "new.onnx"
    onnx.save(model, str(path))
    return path


def test_a_model_of_an_opset_newer_than_onnxruntime_names_both_and_the_remedy(tmp_path: Path):
    """It was "onnxruntime cannot load it ([ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/onnxruntime/core/graph/
    model_load_utils.h:46 void onnxruntime::model_load_utils::ValidateOpsetForDomain(const std::unordered_map<std::
    __cxx11::basic_st); re-export with export-onnx": a C++ signature cut off before the reason."""
    line = _run(tmp_path, _retagged(tmp_path, opset=99))
    assert "new.onnx: needs ONNX opset 99 (ai.onnx), newer than onnxruntime" in line
    assert "upgrade onnxruntime, or re-export it with a lower export-onnx --opset" in line
    assert "onnxruntime_src" not in line and "std::" not in line


def test_a_model_of_an_ir_version_newer_than_onnxruntime_says_so(tmp_path: Path):
    line = _run(tmp_path, _retagged(tmp_path, ir_version=99))
    assert "new.onnx: is ONNX IR version 99, newer than onnxruntime" in line and "upgrade onnxruntime" in line
    assert "onnxruntime_src" not in line and "std::" not in line
