"""The trained localisation head: synthetic defects land where their targets say, the head learns to point at
them, and it travels in the checkpoint without touching the verdict network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge_runtime.errors import ModelError
from edge_runtime.preprocess import PreprocessSpec
from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.checkpoint_save import atomic_torch_save
from train.loc_head import HeadRecord, LocHead, features_and_logit, paste_defect, taps, train_loc_head
from train.model import build_model

SIZE = 64
SPEC = PreprocessSpec(size=SIZE)


def part(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A bright disc with rings on grey, as the part-centred crop shows a casting."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx - size / 2, yy - size / 2)
    img = np.where(r < 0.42 * size, 170 + 25 * np.cos(r / 2.0), 120) + rng.normal(0, 3, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_a_pasted_defect_changes_the_image_where_its_target_is():
    rng = np.random.default_rng(3)
    for _ in range(20):
        clean = part(rng).astype(np.float32)
        img, target = paste_defect(clean, rng, SIZE // 4)
        changed = np.abs(img - clean) > 8
        assert changed.any() and target.max() >= 0.6
        ys, xs = np.nonzero(changed)
        rows, cols = np.nonzero(target >= 0.5)
        # cell (r, c) is centred on input pixel (4r, 4c): the marked cells are centred on the defect's pixels
        assert abs(4 * rows.mean() - ys.mean()) <= 3 and abs(4 * cols.mean() - xs.mean()) <= 3
        assert np.hypot(xs.mean() - SIZE / 2, ys.mean() - SIZE / 2) < 0.45 * SIZE  # on the part


def test_the_head_reads_the_quarter_and_eighth_stages_and_gives_a_quarter_map():
    net = build_model("defectnet", {"size": SIZE}).eval()
    layers, _ = taps(net, SIZE, 1)
    feats, logit = features_and_logit(net, layers, torch.zeros(2, 1, SIZE, SIZE))
    assert [f.shape[-1] for f in feats] == [SIZE // 4, SIZE // 8] and logit.shape == (2,)
    head = LocHead([f.shape[1] for f in feats])
    assert head(*feats).shape == (2, 1, SIZE // 4, SIZE // 4)
    with pytest.raises(ModelError, match="feature stages"):
        taps(build_model("seed"), 224, 3)


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, HeadRecord]:
    torch.manual_seed(0)
    net = build_model("defectnet", {"size": SIZE}).eval()  # a random, frozen backbone is enough for holes
    rng = np.random.default_rng(0)
    ok = np.stack([part(rng) for _ in range(64)])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    record = train_loc_head(net, ok, SPEC, epochs=120, seed=0, log=lambda m: None)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "the verdict network changed"
    return net, record


def test_the_trained_head_points_at_a_new_pasted_defect(trained):
    """On a random frozen backbone (no verdict training here) the head's peak falls on 40% of new pasted
    defects, against 10% for the same head untrained; on the shipped model's real backbone see
    benchmarks/localisation.py."""
    net, record = trained

    def hits(head: torch.nn.Module) -> int:
        rng, n = np.random.default_rng(42), 0
        for _ in range(40):
            img, target = paste_defect(part(rng).astype(np.float32), rng, SIZE // 4)
            with torch.no_grad():
                x = torch.from_numpy(img / 255.0)[None, None].float()
                feats, _ = features_and_logit(net, record.layers, x)
                m = head(*feats)[0, 0].numpy()
            r, c = np.unravel_index(int(np.argmax(m)), m.shape)
            n += bool(target[r, c] >= 0.5)
        return n

    torch.manual_seed(1)
    trained_hits, untrained_hits = hits(record.module()), hits(LocHead(record.channels).eval())
    assert trained_hits >= 12 and trained_hits >= 2 * untrained_hits + 4, (trained_hits, untrained_hits)


def test_the_head_travels_in_the_checkpoint(trained, tmp_path: Path):
    net, record = trained
    d = record.to_dict()
    again = HeadRecord.from_dict(d)
    x = torch.rand(1, 1, SIZE, SIZE)
    with torch.no_grad():
        feats, _ = features_and_logit(net, record.layers, x)
        assert torch.equal(record.module()(*feats), again.module()(*feats))
    with pytest.raises(ModelError, match="unknown localisation head"):
        HeadRecord.from_dict({**d, "kind": "something-else"})
    # stored beside the weights, covered by the content hash, and the weights are untouched
    from train.checkpoint import model_checkpoint
    from train.config import Arch

    ckpt = model_checkpoint(
        net,
        arch=Arch.DEFECTNET,
        model_args={"size": SIZE},
        spec=SPEC,
        class_names=("ok", "def"),
        threshold=0.5,
        fingerprint="x",
        metrics={},
        data={},
        epoch=1,
    )
    atomic_torch_save({**ckpt, "loc_head": d}, tmp_path / "best.pt")
    loaded = load_checkpoint(tmp_path / "best.pt")
    assert loaded.loc_head is not None and HeadRecord.from_dict(loaded.loc_head).layers == record.layers
    assert all(torch.equal(v, model_from_checkpoint(loaded).state_dict()[k]) for k, v in net.state_dict().items())
    raw = torch.load(tmp_path / "best.pt", weights_only=True)
    raw["loc_head"]["state_dict"]["fine.0.bias"] += 1.0
    torch.save(raw, tmp_path / "tampered.pt")
    with pytest.raises(ModelError, match="hash mismatch"):
        load_checkpoint(tmp_path / "tampered.pt")


def test_the_command_refuses_a_bad_checkpoint_in_one_line(tmp_path: Path):
    from click.testing import CliRunner

    from train.loc_head import main

    bad = tmp_path / "best.pt"
    bad.write_bytes(b"not a checkpoint")
    r = CliRunner().invoke(main, [str(bad)])
    assert r.exit_code == 4 and r.output.count("\n") == 1 and "not a readable defect-edge checkpoint" in r.output
    assert "Traceback" not in r.output


def test_cli_bad_seed_is_a_usage_error_and_debug_is_an_option(tmp_path: Path):
    from click.testing import CliRunner

    from edge_runtime.errors import ExitCode
    from train.loc_head import main

    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"not read: the options are checked first")
    r = CliRunner().invoke(main, [str(ckpt), "--seed", "-1"])
    assert r.exit_code == ExitCode.USAGE and "--seed" in r.output, r.output  # was a numpy traceback, exit 1
    r = CliRunner().invoke(main, [str(ckpt), "--debug"])
    assert r.exit_code == ExitCode.BAD_MODEL and "Traceback" in r.stderr and "ModelError" in r.stderr  # --debug
    r = CliRunner().invoke(main, [str(ckpt)])
    assert r.exit_code == ExitCode.BAD_MODEL and r.output.startswith("error: ") and "Traceback" not in r.output
    assert "Exit codes" in CliRunner().invoke(main, ["--help"]).output


def test_ok_images_in_sub_folders_of_the_class_folder_train_the_head(tmp_path: Path):
    """train-model reads class folders recursively, but the head took only images directly in ok_front/: with them
    in ok_front/a/b/ a whole run ended "its OK training images are not reachable", exit 3."""
    import shutil

    from tests.conftest import make_dataset
    from train.config import TrainConfig
    from train.main import main

    data = make_dataset(tmp_path / "data", n_train=12, n_test=4)
    nested = data / "train" / "ok_front" / "a" / "b"
    nested.mkdir(parents=True)
    for f in (data / "train" / "ok_front").glob("*.png"):
        shutil.move(f, nested / f.name)
    logs: list[str] = []
    cfg = TrainConfig(data=data, out=tmp_path / "run", epochs=1, img_size=32, batch_size=8, quiet=True, threads=2,
                      loc_head_epochs=1)  # fmt: skip
    main(cfg, log=logs.append)
    assert load_checkpoint(tmp_path / "run" / "best.pt").loc_head is not None
    n_train_ok = sum(1 for f in load_checkpoint(tmp_path / "run" / "best.pt").data.train_files if "ok_front" in f)
    assert f"localisation head: {n_train_ok} OK training images" in logs
