"""What a model file's bytes say before onnxruntime reads them: a file that is no single ONNX model is named for what
it is, with what to do, where onnxruntime's own line ("protobuf parsing failed", "External data path ... escapes
working directory") named neither.

>>> check_model_bytes(Path("best.pt").read_bytes(), Path("best.pt"))    # doctest: +SKIP
ModelError: best.pt: is a PyTorch checkpoint (train-model's best.pt), not an ONNX model; export it first ...
"""

from __future__ import annotations

import shlex
from pathlib import Path

from edge_runtime import integrity
from edge_runtime.errors import ModelError, printable

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's file (a zip archive) since torch 1.6
GRAPH_FIELD, INITIALIZER_FIELD = 7, 5  # ModelProto.graph, GraphProto.initializer
EXTERNAL_DATA_FIELD = 13  # TensorProto.external_data: StringStringEntryProto key/value pairs ("location", ...)
IR_VERSION_KEY = 0x08  # ModelProto.ir_version (field 1, a varint): the first byte of every exported ONNX file


def check_model_bytes(data: bytes, path: Path) -> None:
    """Refuse, with a :class:`ModelError` naming ``path`` and the remedy, an empty file, a PyTorch checkpoint, an
    ONNX file cut short, and a model whose weights lie in another file. Anything else is onnxruntime's to judge."""
    if not data:
        raise ModelError(f"{path}: is empty (0 bytes): a copy or download that did not finish; copy it again, or "
                         "re-export it with export-onnx")  # fmt: skip
    if data.startswith(ZIP_MAGIC) and not _first_zip_name(data).endswith(b"data.pkl"):
        raise ModelError(f"{path}: is a zip archive, not an ONNX model; unzip it and pass the .onnx file inside")
    if data.startswith(ZIP_MAGIC) or (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        raise ModelError(f"{path}: is a PyTorch checkpoint (train-model's best.pt), not an ONNX model; export it "
                         f"first (export-onnx {shlex.quote(str(path))}) and pass the .onnx file it writes")  # fmt: skip
    if data[0] != IR_VERSION_KEY:
        return  # not laid out as an exported model: onnxruntime says what it makes of it
    try:
        graphs = list(integrity.submessages(data, GRAPH_FIELD))
    except integrity.WireError:
        cut = ModelError(f"{path}: the ONNX data stops mid-way ({len(data)} bytes: a copy or download that did not "
                         "finish, or a damaged file); copy it again, or re-export it with export-onnx")  # fmt: skip
        raise cut from None
    places = external_data(graphs)
    if places:
        # onnxruntime is handed the bytes, not the path, so it can never find them; and the content hash covers one
        # file: weights beside it could be swapped unseen
        shown = ", ".join(printable(p) for p in places[:3])
        # onnx.save(model, path) makes one file again, but not the bytes the content hash was stamped over
        raise ModelError(f"{path}: keeps its weights in another file ({shown}: ONNX external data), which "
                         "defect-edge does not read; pass the single .onnx file export-onnx wrote, or re-export "
                         "it")  # fmt: skip


def _first_zip_name(data: bytes) -> bytes:
    """The name of a zip archive's first member (torch.save writes ``<name>/data.pkl`` first)."""
    length = int.from_bytes(data[26:28], "little")  # the local file header's name length; the name follows at 30
    return data[30 : 30 + length]


def external_data(graphs: list[bytes]) -> list[str]:
    """The files the graphs' initializers name as their external data ("?" for one that names none), each once."""
    places: dict[str, None] = {}
    try:
        for graph in graphs:
            for tensor in integrity.submessages(graph, INITIALIZER_FIELD):
                entries = [_key_value(e) for e in integrity.submessages(tensor, EXTERNAL_DATA_FIELD)]
                if entries:
                    places[next((v for k, v in entries if k == "location"), "?")] = None
    except integrity.WireError:
        pass  # a damaged graph: onnxruntime or the content hash refuses it
    return list(places)


def _key_value(entry: bytes) -> tuple[str, str]:
    """A StringStringEntryProto as (key, value), empty strings where a field is missing."""
    key, value = (b"".join(integrity.submessages(entry, n)).decode("utf-8", "replace") for n in (1, 2))
    return key, value
