"""Shared fixtures: the real casting images (skipped with a reason when absent) and tiny synthetic datasets."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CASTING = Path(os.environ.get("DEFECT_EDGE_DATA", REPO.parent / "shared" / "data" / "casting"))
CASTING_REASON = f"real casting images not found at {CASTING} (set DEFECT_EDGE_DATA or place ../shared beside the repo)"


@pytest.fixture(scope="session")
def casting_dir() -> Path:
    if not (CASTING / "train" / "def_front").is_dir():
        pytest.skip(CASTING_REASON)
    return CASTING


def one_core_prefix() -> list[str]:
    """``taskset -c N``: this process's first allowed CPU alone; skips where that leaves no fewer cores than the
    machine's (no taskset, one CPU, or one physical core)."""
    from edge_runtime.cpu_quota import allowed_cpus, physical_cores

    if shutil.which("taskset") is None:
        pytest.skip("taskset is not installed (util-linux)")
    if len(allowed_cpus()) < 2 or physical_cores(range(os.cpu_count() or 1)) < 2:
        pytest.skip("one CPU core only: a process cannot be given fewer cores than --threads 2 asks for")
    return ["taskset", "-c", str(min(allowed_cpus()))]


def synthetic_part(rng: np.random.Generator, *, defective: bool, size: int = 96) -> np.ndarray:
    """A gray round 'part' on a background; defective ones carry dark pits on the rim."""
    img = np.full((size, size), int(rng.integers(150, 190)), np.uint8)
    c = size // 2 + int(rng.integers(-3, 4))
    cv2.circle(img, (c, c), int(size * 0.4), int(rng.integers(200, 235)), -1)
    cv2.circle(img, (c, c), int(size * 0.18), 40, -1)
    if defective:
        for _ in range(3):
            a = rng.uniform(0, 2 * np.pi)
            r = size * 0.3
            cv2.circle(img, (int(c + r * np.cos(a)), int(c + r * np.sin(a))), max(2, size // 24), 20, -1)
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def make_dataset(
    root: Path,
    *,
    n_train: int = 24,
    n_test: int = 8,
    classes: tuple[str, str] = ("def_front", "ok_front"),
    seed: int = 0,
) -> Path:
    """Write DIR/{train,test}/{classes}/*.png with synthetic parts; the first class is the defective one."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for k, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                cv2.imwrite(str(d / f"{cls}_{i:03d}.png"), synthetic_part(rng, defective=(k == 0)))
    return root


@pytest.fixture
def synthetic_data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")
