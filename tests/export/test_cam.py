"""The localisation map in the exported graph: present by default, optional, right shape, read at the right
layer with gradient weights, kept in float in INT8, geometry as the runtime assumes, and hot where a defect is."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from edge_runtime.model import EdgeModel, Provider, RuntimeConfig
from edge_runtime.model_info import MAP_OUTPUT_NAME, OUTPUT_NAME
from edge_runtime.preprocess import PreprocessSpec, preprocess, read_image
from export.cam import ProbabilityAndMap, build_map_head, gradient_weights, map_layer, supports_map
from export.quantize import map_only_nodes
from tests.conftest import synthetic_part
from tests.export.conftest import TINY_MAX_DROP, export_cli
from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.model import build_model

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "edge_runtime" / "samples"
OK_SAMPLE = SAMPLES / "test" / "ok_front" / "cast_ok_0_7560.jpeg"


def run_both(path: Path, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    model = EdgeModel(path, RuntimeConfig(provider=Provider.CPU))
    scores, maps = model.run(batch)
    assert maps is not None
    return scores, maps


def test_default_export_has_the_map_and_the_metadata_says_so(tiny_fp32: Path, tiny_run: Path):
    proto = onnx.load(str(tiny_fp32))
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME, MAP_OUTPUT_NAME]
    model = EdgeModel(tiny_fp32, RuntimeConfig(provider=Provider.CPU))
    assert model.has_map and model.info.outputs == (OUTPUT_NAME, MAP_OUTPUT_NAME)
    batch = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    scores, maps = model.run(batch)
    # train-model trained a localisation head: its logit map, one cell per 4 input pixels
    assert maps.shape == (3, 1, 8, 8) and maps.dtype == np.float32 and np.isfinite(maps).all()
    assert scores.shape == (3,)
    assert "trained localisation head" in model.info.producer["defect_map"]  # how the map was made travels with it
    assert model.info.map_full_scale == 4.0  # logits: drawn at full heat from 4


def test_a_checkpoint_without_a_head_exports_a_grad_cam(gradcam_run: Path, tiny_fp32: Path, tmp_path: Path):
    out = tmp_path / "cam.onnx"
    r = export_cli(gradcam_run, "--out", out)
    assert r.exit_code == 0, r.output
    model = EdgeModel(out, RuntimeConfig(provider=Provider.CPU))
    batch = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    scores, maps = model.run(batch)
    assert maps.shape == (3, 1, 4, 4) and np.isfinite(maps).all()  # 32 px / 8: one stage before the last
    assert "Grad-CAM at features[" in model.info.producer["defect_map"] and model.info.map_full_scale is None
    np.testing.assert_allclose(scores, run_both(tiny_fp32, batch)[0], atol=1e-6)  # the head never changes verdicts


def test_no_map_gives_the_single_output_model_and_both_run(tiny_run: Path, tiny_fp32: Path, tmp_path: Path):
    out = tmp_path / "lean.onnx"
    r = export_cli(tiny_run, "--no-map", "--out", out)
    assert r.exit_code == 0, r.output
    lean = EdgeModel(out, RuntimeConfig(provider=Provider.CPU))
    assert [o.name for o in onnx.load(str(out)).graph.output] == [OUTPUT_NAME] and not lean.has_map
    batch = np.random.default_rng(1).random((4, 1, 32, 32), dtype=np.float32)
    scores, maps = lean.run(batch)
    assert maps is None
    np.testing.assert_allclose(scores, run_both(tiny_fp32, batch)[0], atol=1e-6)  # same verdicts either way
    assert lean.predict_inputs((batch[:, 0] * 255).astype(np.uint8), with_map=True)[0].heatmap is None


@pytest.mark.parametrize("head", ["trained", "grad-cam"])
def test_int8_keeps_the_map_in_float_and_close_to_fp32(head: str, tiny_run: Path, gradcam_run: Path, tmp_path: Path):
    run = tiny_run if head == "trained" else gradcam_run
    fp32, out = tmp_path / "f.onnx", tmp_path / "q.onnx"
    assert export_cli(run, "--out", fp32).exit_code == 0
    r = export_cli(run, "--quantize", "int8", "--out", out, "--max-drop", TINY_MAX_DROP)
    assert r.exit_code == 0, r.output
    proto = onnx.load(str(out))
    producer = {o: n for n in proto.graph.node for o in n.output}
    last = producer[MAP_OUTPUT_NAME]  # the map's last node runs in float: the map is not 8-bit steps
    assert last.op_type == ("Add" if head == "trained" else "Conv")
    if head == "grad-cam":
        weight = last.input[1]
        assert weight not in producer or producer[weight].op_type != "DequantizeLinear"  # float weights, not INT8
    # Parts like the calibration images (INT8 ranges are calibrated on those; pure noise lies outside them).
    rng = np.random.default_rng(2)
    parts = [synthetic_part(rng, defective=bool(i % 2)) for i in range(6)]
    batch = EdgeModel(fp32, RuntimeConfig(provider=Provider.CPU)).prepare(parts)
    _, m8 = run_both(out, batch)
    _, m32 = run_both(fp32, batch)
    # 8-bit features under a float map: a few steps of error on this 32 px toy (measured up to 18% of the map's
    # scale); a broken map (quantized output, wrong range or sign) is far outside. Real-model INT8 vs FP32
    # localisation is scored in benchmarks/localisation.py.
    assert np.abs(m8 - m32).max() <= 0.3 * np.abs(m32).max() + 0.05
    assert np.corrcoef(m8.ravel(), m32.ravel())[0, 1] > 0.5


def test_fp16_has_the_map_in_float32(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "h.onnx"
    r = export_cli(tiny_run, "--quantize", "fp16", "--out", out, "--max-drop", TINY_MAX_DROP)
    assert r.exit_code == 0, r.output
    _, maps = run_both(out, np.zeros((2, 1, 32, 32), np.float32))
    assert maps.shape == (2, 1, 8, 8) and maps.dtype == np.float32 and np.isfinite(maps).all()


def test_map_only_nodes_finds_the_cam_branch_not_the_score_path():
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Relu", ["x"], ["f"], name="features"),
        helper.make_node("GlobalAveragePool", ["f"], ["g"], name="pool"),
        helper.make_node("Sigmoid", ["g"], [OUTPUT_NAME], name="score"),
        helper.make_node("Neg", ["f"], [MAP_OUTPUT_NAME], name="cam"),
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "g", [vi("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [vi(OUTPUT_NAME, TensorProto.FLOAT, None), vi(MAP_OUTPUT_NAME, TensorProto.FLOAT, None)],
    )  # fmt: skip
    assert map_only_nodes(helper.make_model(graph)) == ["cam"]


def test_seed_arch_has_no_map_and_says_so():
    assert supports_map(build_model("defectnet")) and not supports_map(build_model("seed"))
    with pytest.raises(Exception, match="--no-map"):
        map_layer(build_model("seed"), channels=3, size=224)


def test_map_is_read_at_the_last_layer_with_twice_the_final_resolution():
    net = build_model("defectnet").eval()
    assert map_layer(net, channels=1, size=160) == 5  # stage 3's last conv: 20 x 20, 48 channels
    batch = np.random.default_rng(3).random((5, 1, 160, 160), dtype=np.float32)
    head = build_map_head(net, batch, channels=1, size=160)
    assert head.layer == 5 and head.weights.shape == (48,) and head.images == 5
    # Grad-CAM's weights: the logit's gradient w.r.t. each channel, summed over positions, averaged over images
    f = net.features[:6](torch.from_numpy(batch[:1])).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(net.head(net.pool(net.features[6:](f)).flatten(1)).sum(), f)
    np.testing.assert_allclose(gradient_weights(net, 5, batch[:1]).numpy(), g.sum(dim=(0, 2, 3)).numpy(), rtol=1e-5)
    p, maps = ProbabilityAndMap(net, head)(torch.from_numpy(batch))
    assert maps.shape == (5, 1, 20, 20)
    torch.testing.assert_close(p, torch.sigmoid(net(torch.from_numpy(batch))))  # the verdict is unchanged


def test_cell_centres_are_where_the_runtime_puts_them():
    """edge_runtime.heatmap assumes cell (i, j) is centred on input pixel (stride j, stride i), stride 8 here."""
    torch.manual_seed(0)
    net = build_model("defectnet").eval()
    x = torch.rand(1, 1, 160, 160, requires_grad=True)
    head = build_map_head(net, x.detach().numpy(), channels=1, size=160)
    _, cam = ProbabilityAndMap(net, head)(x)
    assert cam.shape == (1, 1, 20, 20)
    ys, xs = np.mgrid[0:160, 0:160]
    for i, j in [(6, 6), (10, 12), (12, 8)]:
        (g,) = torch.autograd.grad(cam[0, 0, i, j], x, retain_graph=True)
        a = g[0, 0].abs().numpy()
        a = np.where(a > 0.05 * a.max(), a, 0)  # the receptive field, not the per-image standardisation's tail
        assert abs((a * xs).sum() / a.sum() - 8 * j) < 3 and abs((a * ys).sum() / a.sum() - 8 * i) < 3


@pytest.mark.parametrize("where", [(232, 110), (70, 200), (150, 40), (240, 200)])
def test_committed_model_map_is_hot_on_a_pasted_defect(where: tuple[int, int]):
    """A dark blow hole pasted onto an OK part: the map's hottest cell is the one over it (weights from the
    12 sample training images shipped in the package)."""
    ckpt = load_checkpoint(REPO / "train" / "default_model" / "best.pt")
    net = model_from_checkpoint(ckpt).eval()
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    calib = preprocess([read_image(p) for p in sorted((SAMPLES / "train").glob("*/*.jpeg"))], spec)
    wrapper = ProbabilityAndMap(net, build_map_head(net, calib, channels=1, size=spec.size))
    ok = read_image(OK_SAMPLE)
    bad = ok.copy()
    cv2.circle(bad, where, 7, 20, -1)  # 300 px source, 15 px a cell
    with torch.no_grad():
        p, cams = wrapper(torch.from_numpy(preprocess([ok, bad], spec)))
    assert p[1] > p[0]
    r, c = np.unravel_index(int(np.argmax(cams[1, 0].numpy())), cams.shape[2:])
    cell = 300 / cams.shape[3]
    assert abs(c * cell - where[0]) <= cell and abs(r * cell - where[1]) <= cell  # the hottest cell is the hole's
    rise = (cams[1, 0] - cams[0, 0]).numpy()
    rr, rc = np.unravel_index(int(np.argmax(rise)), rise.shape)
    assert abs(rc - c) <= 1 and abs(rr - r) <= 1 and rise.max() > 0.3 * cams[0, 0].max()  # the map rose there
