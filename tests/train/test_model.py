import pytest
import torch

from train.config import Arch
from train.model import ARCHS, DefectNet, build_model, count_flops, count_params


def test_origin_network_matches_the_notebook():
    m = build_model(Arch.SEED)
    flops = count_flops(m, (3, 224, 224))
    assert 1.80e9 < flops < 1.90e9
    assert 5.1e6 < count_params(m) < 5.3e6
    assert m(torch.zeros(2, 3, 224, 224)).shape == (2,)


def test_default_model_is_at_most_a_fifteenth_of_the_origin_compute():
    size = ARCHS[Arch.DEFECTNET][1]
    ours = count_flops(build_model(Arch.DEFECTNET), (1, size, size))
    seed = count_flops(build_model(Arch.SEED), (3, 224, 224))
    assert ours * 15 <= seed


def test_global_average_pool_head_allows_class_activation_maps():
    m = DefectNet().eval()
    x = torch.rand(1, 1, 128, 128)
    fmap = m.features(x)  # (1, C, h, w)
    cam = torch.einsum("c,chw->hw", m.head.weight[0], fmap[0]) + m.head.bias[0]
    assert torch.allclose(cam.mean(), m(x)[0], atol=1e-5)


def test_input_standardisation_makes_the_model_indifferent_to_gain_and_offset():
    m = DefectNet().eval()
    x = torch.rand(2, 1, 128, 128) * 0.5 + 0.2
    with torch.no_grad():
        assert torch.allclose(m(x), m(x * 1.6 - 0.1), atol=1e-3)


def test_build_model_from_stored_args_round_trips():
    m = build_model("defectnet", {"in_channels": 1, "widths": [8, 16]})
    assert ARCHS[Arch.DEFECTNET][1] == 160
    assert m.head.in_features == 16


def test_hard_defect_weight_pulls_harder_on_defects_the_model_still_misses():
    from train.engine import training_loss

    y = torch.tensor([1.0, 1.0, 0.0])

    def grads(w: float) -> torch.Tensor:
        logits = torch.tensor([-3.0, 4.0, 1.0], requires_grad=True)  # a missed defect, a caught one, an OK part
        training_loss(logits, y, hard_defect_weight=w).backward()
        return logits.grad

    plain, weighted = grads(0.0), grads(4.0)
    assert torch.allclose(plain * 3, torch.sigmoid(torch.tensor([-3.0, 4.0, 1.0])) - y)  # plain BCE, mean of 3
    # the missed defect's pull grows about 1 + 4 * 0.95^2 = 4.6 times; the caught defect and the OK part stay
    assert weighted[0] / plain[0] == pytest.approx(1 + 4 * (1 - torch.sigmoid(torch.tensor(-3.0)).item()) ** 2)
    assert weighted[1] / plain[1] == pytest.approx(1.0, abs=0.01) and weighted[2] == pytest.approx(plain[2].item())
