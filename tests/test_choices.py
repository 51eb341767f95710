"""The CLIs spell their choices out (importing the enums would slow --help); each list must stay what the code
accepts, so that a new provider, scheme or architecture is not left unreachable from the command line."""

from __future__ import annotations

import pytest


def test_edge_infer_choices_are_the_runtimes():
    from edge_runtime.cli import PROVIDERS, main
    from edge_runtime.priority import Priority
    from edge_runtime.providers import Provider

    assert [p.value for p in Provider] == PROVIDERS
    priority = next(p for p in main.params if p.name == "priority")
    assert list(priority.type.choices) == [p.value for p in Priority]


def test_export_and_train_choices_are_their_configs():
    pytest.importorskip("torch", reason="export-onnx and train-model need the [train] extra")
    from edge_runtime.model_info import Precision
    from export.cli import QUANTIZE_CHOICES, SCHEME_CHOICES
    from export.config import Int8Scheme
    from train.cli import ARCH_CHOICES
    from train.config import Arch

    assert [s.value for s in Int8Scheme] == SCHEME_CHOICES
    assert [p.value for p in Precision if p is not Precision.FP32] == QUANTIZE_CHOICES
    assert [a.value for a in Arch] == ARCH_CHOICES
