"""A content hash inside every ONNX file, checked at load: a bit-flipped model is refused (exit 4).

The hash covers the whole file except the hash itself, and needs neither the onnx package nor protobuf (the
runtime has neither): an ONNX file is one protobuf ``ModelProto``, whose top-level fields are read here with a
few lines of wire-format parsing. ``content_sha256`` is SHA-256 over

1. the raw bytes of every top-level field except ``metadata_props`` (field 14), in file order: the graph with
   all its weights, the opset imports, IR version, producer and doc string; then
2. the defect-edge metadata entry as canonical JSON (``json.dumps(d, sort_keys=True, allow_nan=False)``) with
   the ``content_sha256`` key left out, so a flipped threshold or class name is caught too.

Other metadata entries (written by other tools) are not covered. The exporter stamps the hash with
:func:`stamp`; the runtime recomputes it with :func:`verify`.

>>> stamped = stamp(model_bytes)          # doctest: +SKIP
>>> verify(stamped, source="m.onnx")      # doctest: +SKIP
'ok'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from edge_runtime.errors import ModelError

HASH_KEY = "content_sha256"
METADATA_FIELD = 14  # ModelProto.metadata_props
_KEY_FIELD, _VALUE_FIELD = 1, 2  # StringStringEntryProto.key / .value


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each top-level field; ``start:end`` is the whole field
    (key included) and, for length-delimited fields, the payload is the tail after the length."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos > len(data) or number == 0:
            raise WireError("field runs past the end of the data")
        yield number, wire, start, pos


def _payload(data: bytes, start: int, end: int) -> bytes:
    _, pos = _varint(data, start)
    _, pos = _varint(data, pos)
    return data[pos:end]


def submessages(data: bytes, number: int) -> Iterator[bytes]:
    """The payloads of the length-delimited top-level fields numbered ``number``, in file order."""
    for n, wire, start, end in fields(data):
        if n == number and wire == 2:
            yield _payload(data, start, end)


def metadata_entries(data: bytes) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (key -> value), read from the raw bytes."""
    out: dict[str, str] = {}
    for number, wire, start, end in fields(data):
        if number != METADATA_FIELD or wire != 2:
            continue
        entry = _payload(data, start, end)
        kv: dict[int, str] = {}
        for n, w, s, e in fields(entry):
            if w == 2 and n in (_KEY_FIELD, _VALUE_FIELD):
                kv[n] = _payload(entry, s, e).decode("utf-8", "replace")
        out[kv.get(_KEY_FIELD, "")] = kv.get(_VALUE_FIELD, "")
    return out


def canonical_metadata(text: str) -> bytes:
    d = json.loads(text)
    if not isinstance(d, dict):
        raise WireError("metadata is not a JSON object")
    d.pop(HASH_KEY, None)
    return json.dumps(d, sort_keys=True, allow_nan=False).encode("utf-8")


def content_sha256(data: bytes, metadata_key: str) -> str:
    """The hash described in the module docstring, of the file bytes ``data``."""
    h = hashlib.sha256()
    for number, _, start, end in fields(data):
        if number != METADATA_FIELD:
            h.update(data[start:end])
    h.update(b"\0metadata\0")
    h.update(canonical_metadata(metadata_entries(data).get(metadata_key, "{}")))
    return h.hexdigest()


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def with_metadata(data: bytes, key: str, value: str | None) -> bytes:
    """The file bytes with metadata entry ``key`` replaced by ``value`` (appended as the last field), or
    removed when ``value`` is None."""
    kept = bytearray()
    for number, wire, start, end in fields(data):
        if number == METADATA_FIELD and wire == 2:
            entry = _payload(data, start, end)
            keys = [_payload(entry, s, e) for n, w, s, e in fields(entry) if n == _KEY_FIELD and w == 2]
            if keys and keys[0].decode("utf-8", "replace") == key:
                continue
        kept += data[start:end]
    if value is None:
        return bytes(kept)
    entry = _field(_KEY_FIELD, key.encode("utf-8")) + _field(_VALUE_FIELD, value.encode("utf-8"))
    return bytes(kept) + _field(METADATA_FIELD, entry)


def stamp(data: bytes, metadata_key: str) -> bytes:
    """``data`` with ``content_sha256`` written into its ``metadata_key`` JSON entry."""
    try:
        d = json.loads(metadata_entries(data)[metadata_key])
        d[HASH_KEY] = content_sha256(data, metadata_key)
    except (KeyError, ValueError) as exc:
        raise ModelError(f"cannot stamp the model's content hash ({exc}); report this") from exc
    return with_metadata(data, metadata_key, json.dumps(d, sort_keys=True, allow_nan=False))


def verify(data: bytes, metadata: dict, metadata_key: str, *, source: str) -> bool:
    """Check the recorded hash; raise :class:`ModelError` on a mismatch. False when the file records none."""
    recorded = metadata.get(HASH_KEY)
    if recorded is None:
        return False
    try:
        actual = content_sha256(data, metadata_key)
    except (WireError, ValueError) as exc:
        raise ModelError(f"{source}: the model file is damaged ({exc}); re-export or re-download it") from exc
    if not isinstance(recorded, str) or actual != recorded:
        raise ModelError(
            f"{source}: content hash mismatch (the file was modified or damaged after export); "
            "re-export or re-download it"
        )
    return True
