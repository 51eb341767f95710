"""Folders a NAS or an operating system makes inside shared folders hold no parts: passed over, and named.

Synology's ``@eaDir/<picture>/SYNOPHOTO_THUMB_{S,M,XL}.jpg`` are thumbnails named like pictures: ``edge-infer
--source`` on such a share judged every part four times, and train-model trained on the thumbnails. A zip made on
a Mac adds ``__MACOSX/``, which train-model took for a third class folder and refused the data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from edge_runtime import datasets
from edge_runtime.cli import main
from tests.conftest import REPO

SAMPLES = REPO / "edge_runtime" / "samples" / "test"


def nas_copy(src: Path, dst: Path) -> list[str]:
    """``src``'s pictures copied into ``dst`` with the thumbnails a Synology NAS adds beside them; their names."""
    dst.mkdir(parents=True)
    names = []
    for picture in sorted(src.glob("*.jpeg")):
        shutil.copy(picture, dst / picture.name)
        thumbs = dst / "@eaDir" / picture.name
        thumbs.mkdir(parents=True)
        for size in ("S", "M", "XL"):
            shutil.copy(picture, thumbs / f"SYNOPHOTO_THUMB_{size}.jpg")
        names.append(picture.name)
    return names


def test_edge_infer_on_a_nas_folder_judges_each_part_once(tmp_path: Path):
    names = nas_copy(SAMPLES / "def_front", tmp_path / "line")
    r = CliRunner().invoke(main, ["--source", str(tmp_path / "line"), "--json"])
    assert r.exit_code == 0, r.output
    records = [json.loads(x) for x in r.output.splitlines() if x.startswith("{")]
    assert [Path(rec["source"]).name for rec in records] == names
    assert "not inspected, not images or hidden: @eaDir/" in r.output


def test_training_data_from_a_nas_or_a_mac_zip_is_read_as_its_two_classes(tmp_path: Path):
    root = tmp_path / "data"
    counts = {name: len(nas_copy(SAMPLES / name, root / "train" / name)) for name in ("def_front", "ok_front")}
    (root / "train" / "__MACOSX" / "ok_front").mkdir(parents=True)
    (root / "train" / "__MACOSX" / "ok_front" / "._cast_ok_0_7560.jpeg").write_bytes(b"\0\5\26\7 AppleDouble")
    assert [p.name for p in datasets.class_dirs(root / "train")] == ["def_front", "ok_front"]
    for name, n in counts.items():
        assert len(datasets.list_images(root / "train" / name)) == n
