"""Station views and the flange-edge relight: what training sees of a station camera."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge_runtime.framing import find_part
from edge_runtime.preprocess import CropMode, PreprocessSpec, resize_to_input
from train import engine
from train.augment import AugmentConfig, relight_from_edges
from train.station import flange_edges, station_view, station_views

SPEC = PreprocessSpec(size=160, channels=1, crop=CropMode.PART)


def casting_like(size: int = 300, *, background: int = 170) -> np.ndarray:
    """A turned part seen from above: bright flange, dark core, a bright hub, machining rings."""
    im = np.full((size, size), background, np.uint8)
    c = size // 2
    cv2.circle(im, (c, c), int(0.4 * size), 215, -1)
    for r in range(int(0.25 * size), int(0.4 * size), 6):
        cv2.circle(im, (c, c), r, 190, 1)
    cv2.circle(im, (c, c), int(0.21 * size), 25, -1)
    cv2.circle(im, (c, c), int(0.08 * size), 200, -1)
    return im


@pytest.mark.parametrize("radius", [0.70, 0.78, 0.86])
def test_flange_edge_is_found_where_the_disc_ends_despite_a_glint(radius: float):
    im = np.full((160, 160), 120, np.uint8)
    cv2.circle(im, (80, 80), round(radius * 80), 210, -1)
    cv2.ellipse(im, (80, 80), (60, 60), 0, 10, 40, 255, 6)  # a glint across a few rays
    assert abs(float(flange_edges(im[None])[0]) - radius) <= 0.02


def test_station_views_are_still_found_and_framed_by_the_runtime():
    """A view the runtime could not frame would teach the network on pictures no station gives it: whatever the
    view (relit, zoomed until the flange crosses the border, 512 px, sharpened, glints), the framed input shows
    the part centred at the scale of the dataset image's own input."""
    im = casting_like()
    plain = find_part(resize_to_input(im, SPEC))
    rng = np.random.default_rng(3)
    for _ in range(20):
        view = station_view(im, rng)
        assert view.dtype == np.uint8 and view.ndim == 2 and find_part(view).found
        framed = find_part(resize_to_input(view, SPEC))
        assert abs(framed.cx - 79.5) <= 3 and abs(framed.cy - 79.5) <= 3, (framed, plain)
        assert abs(framed.radius / plain.radius - 1) <= 0.05, (framed, plain)


def test_station_views_change_background_framing_and_detail():
    im = casting_like()
    rng = np.random.default_rng(0)
    views = [station_view(im, rng) for _ in range(30)]
    corners = [float(np.median(v[:8, :8])) for v in views]
    assert max(corners) >= 195 and min(corners) <= 150  # relit near white and darker than the dataset's 170
    assert any(v.shape == (512, 512) for v in views)  # a camera's resolution (whole frame or zoomed in)
    assert any(v.shape == im.shape for v in views)


def test_station_views_of_a_folder_are_the_same_for_a_seed(tmp_path: Path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), casting_like(background=150 + 10 * i))
    files = [f"p{i}.png" for i in range(3)]
    a = station_views(tmp_path, files, SPEC, k=2, seed=5)
    assert a.shape == (2, 3, 160, 160) and a.dtype == np.uint8
    assert np.array_equal(a, station_views(tmp_path, files, SPEC, k=2, seed=5, workers=1))
    assert not np.array_equal(a, station_views(tmp_path, files, SPEC, k=2, seed=6))


def test_background_relight_starts_at_each_parts_own_edge():
    x = torch.full((2, 1, 160, 160), 0.6)
    cfg = AugmentConfig(background_prob=1.0, background_white=1.0, background_white_level=(0.95, 0.95))
    edges = torch.tensor([0.70, 0.85])
    out = relight_from_edges(x, edges, cfg, torch.Generator().manual_seed(0))
    u = (torch.arange(160) + 0.5) / 80 - 1.0
    r = torch.sqrt(u.view(1, -1) ** 2 + u.view(-1, 1) ** 2)
    for i, e in enumerate(edges.tolist()):
        inside, beyond = r < e - 0.03, r > e + 0.09
        assert torch.allclose(out[i, 0][inside], x[i, 0][inside])  # the part is untouched
        assert torch.allclose(out[i, 0][beyond], torch.tensor(0.95), atol=1e-4)  # relit right up to it


def test_a_share_of_each_batch_is_swapped_for_station_views(monkeypatch):
    seen = []

    def spy(x, cfg, gen, edges=None):
        seen.append(x.clone())
        return x

    monkeypatch.setattr(engine, "augment", spy)
    images = torch.full((64, 16, 16), 10, dtype=torch.uint8)
    views = torch.full((2, 64, 16, 16), 200, dtype=torch.uint8)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 1), torch.nn.Flatten(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)
    spec = PreprocessSpec(size=16, channels=1, crop=CropMode.PART)
    labels = torch.arange(64) % 2
    for share, expected in ((0.0, (0, 0)), (1.0, (64, 64)), (0.5, (16, 48))):
        seen.clear()
        engine.train_one_epoch(
            model, opt, sched, images, labels, spec=spec, batch_size=64, gen=torch.Generator().manual_seed(0),
            aug=AugmentConfig(), views=views, view_share=share,
        )  # fmt: skip
        swapped = int((seen[0][:, 0, 0, 0] > 0.5).sum())
        assert expected[0] <= swapped <= expected[1], (share, swapped)


@pytest.mark.slow
def test_station_training_runs_and_records_its_views(casting_dir: Path, tmp_path: Path):
    from train.config import TrainConfig
    from train.main import main

    logs: list[str] = []
    cfg = TrainConfig(
        data=casting_dir, out=tmp_path / "run", epochs=1, max_images_per_class=30, quiet=True, threads=2,
        loc_head_epochs=0, station_views=1,
    )  # fmt: skip
    report = main(cfg, log=logs.append)
    assert any(line.startswith("made 1 station views of each training image") for line in logs), logs
    assert report["config"]["station_views"] == 1
    assert (tmp_path / "run" / "best.pt").stat().st_size > 0


def test_station_training_of_a_whole_frame_model_is_refused_before_anything_is_written(tmp_path: Path):
    from edge_runtime.errors import DataError
    from train.config import Arch, TrainConfig
    from train.main import main

    cfg = TrainConfig(data=tmp_path, out=tmp_path / "run", arch=Arch.SEED, station_views=2)
    with pytest.raises(DataError, match="--station-views"):
        main(cfg, log=lambda _m: None)
    assert not (tmp_path / "run").exists()
