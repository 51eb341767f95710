"""The shared libraries an ELF file links to (its ``DT_NEEDED`` entries), read from the file without loading it.

Loading onnxruntime's CUDA provider to see whether its libraries are there is no test: it is linked ``BIND_NOW``
against onnxruntime's own symbols, so it fails to load outside onnxruntime even where CUDA is installed.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_HEADER = struct.Struct("<40xQ10xHH")  # Elf64_Ehdr: e_shoff at 0x28, e_shentsize and e_shnum at 0x3A
_SECTION = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
_DYNAMIC = struct.Struct("<qQ")  # Elf64_Dyn
SHT_DYNAMIC, DT_NULL, DT_NEEDED = 6, 0, 1


def needed_libraries(path: Path) -> list[str]:
    """The library names ``path`` links to, in link order; ``[]`` where it is missing, unreadable or not a
    little-endian 64-bit ELF file with section headers (nothing to check there).

    >>> needed_libraries(Path("/nonexistent.so"))
    []
    """
    try:
        with open(path, "rb") as f:
            return _needed(f)
    except (OSError, struct.error, IndexError, ValueError):  # a damaged file: its names cannot be known
        return []


def _needed(f: BinaryIO) -> list[str]:
    head = f.read(_HEADER.size)
    if head[:6] != b"\x7fELF\x02\x01":  # magic, 64-bit, little-endian
        return []
    shoff, shentsize, shnum = _HEADER.unpack_from(head)
    if shentsize != _SECTION.size:
        return []
    f.seek(shoff)
    table = f.read(shentsize * shnum)
    sections = [_SECTION.unpack_from(table, i * shentsize) for i in range(shnum)]
    dynamic = next((s for s in sections if s[1] == SHT_DYNAMIC), None)
    if dynamic is None:
        return []
    strings = sections[dynamic[6]]  # sh_link: the string table the entries point into
    entries, names = _read(f, dynamic[4], dynamic[5]), _read(f, strings[4], strings[5])
    needed = []
    for tag, value in _DYNAMIC.iter_unpack(entries[: len(entries) // _DYNAMIC.size * _DYNAMIC.size]):
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed.append(names[value : names.index(b"\0", value)].decode())
    return needed


def _read(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)
