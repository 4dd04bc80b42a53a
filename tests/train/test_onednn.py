"""Frozen Linear layers through oneDNN on the CPU (train/model/onednn.py): same numbers, same gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lora_tui.train.model import onednn
from lora_tui.train.network.lora import LoRAModule
from tests.train.trainer_helpers import events, run_training, tiny_project, train_argv

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch has no oneDNN linear")


def _frozen_linear(seed: int = 0, bias: bool = True) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(48, 80, bias=bias)
    layer.requires_grad_(False)
    return layer


def _backward_ops(y: torch.Tensor) -> set[str]:
    """The autograd node that made y and the nodes it feeds from (a routed 3-D call ends in a view)."""
    node = y.grad_fn
    return {type(node).__name__, *(type(n).__name__ for n, _ in node.next_functions if n is not None)}


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach(), b.detach()
    return torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize("bias", [True, False])
def test_a_routed_frozen_linear_gives_f_linears_output_and_input_gradient(bias: bool) -> None:
    layer = _frozen_linear(bias=bias)
    assert onednn.route_frozen_layers([layer]) == 1
    x = torch.randn(2, 7, 48, requires_grad=True)
    y = layer(x)
    assert "_FrozenLinearBackward" in _backward_ops(y)
    grad = torch.randn_like(y)
    y.backward(grad)
    ref_x = x.detach().clone().requires_grad_(True)
    ref = F.linear(ref_x, layer.weight, layer.bias)
    ref.backward(grad)
    assert y.shape == ref.shape and _close(y, ref)
    assert _close(x.grad, ref_x.grad)
    assert layer.weight.grad is None


@pytest.mark.parametrize("batch", [1, 3])
def test_a_routed_frozen_1x1_conv_gives_conv2ds_output_and_input_gradient(batch: int) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(24, 40, 1).requires_grad_(False)
    assert onednn.route_frozen_layers([conv]) == 1
    x = torch.randn(batch, 24, 6, 5, requires_grad=True)
    y = conv(x)
    assert "_FrozenConv1x1Backward" in _backward_ops(y)
    grad = torch.randn_like(y)
    y.backward(grad)
    ref_x = x.detach().clone().requires_grad_(True)
    ref = F.conv2d(ref_x, conv.weight, conv.bias)
    ref.backward(grad)
    assert y.shape == ref.shape and _close(y, ref)
    assert _close(x.grad, ref_x.grad)


@pytest.mark.parametrize(("stride", "padding", "batch"), [(1, 1, 1), (2, 1, 2), (1, 0, 1)])
def test_a_frozen_3x3_conv_on_a_small_image_gives_conv2ds_output_and_input_gradient(
        stride: int, padding: int, batch: int) -> None:
    torch.manual_seed(2)
    conv = nn.Conv2d(12, 20, 3, stride=stride, padding=padding).requires_grad_(False)
    assert onednn.route_frozen_layers([conv]) == 1
    x = torch.randn(batch, 12, 9, 7, requires_grad=True)
    y = conv(x)
    assert "_FrozenConvIm2colBackward" in _backward_ops(y)
    grad = torch.randn_like(y)
    y.backward(grad)
    ref_x = x.detach().clone().requires_grad_(True)
    ref = F.conv2d(ref_x, conv.weight, conv.bias, stride=stride, padding=padding)
    ref.backward(grad)
    assert y.shape == ref.shape and _close(y, ref)
    assert _close(x.grad, ref_x.grad)


def test_a_3x3_conv_on_a_large_image_keeps_torchs_convolution() -> None:
    conv = nn.Conv2d(4, 4, 3, padding=1).requires_grad_(False)
    onednn.route_frozen_layers([conv])
    y = conv(torch.randn(1, 4, 17, 16, requires_grad=True))  # 272 output pixels > SMALL_IMAGE
    assert "ConvolutionBackward0" in _backward_ops(y)


def test_grouped_convs_are_not_routed() -> None:
    assert onednn.route_frozen_layers([nn.Conv2d(4, 4, 3, groups=2)]) == 0


def test_a_non_contiguous_input_is_routed_with_the_same_result() -> None:
    layer = _frozen_linear()
    onednn.route_frozen_layers([layer])
    x = torch.randn(48, 5, 3).permute(1, 2, 0)  # (5, 3, 48), not contiguous
    assert _close(layer(x), F.linear(x, layer.weight, layer.bias))


def test_a_trainable_linear_takes_f_linear_and_gets_its_weight_gradient() -> None:
    layer = _frozen_linear()
    onednn.route_frozen_layers([layer])
    layer.weight.requires_grad_(True)
    y = layer(torch.randn(3, 48))
    assert type(y.grad_fn).__name__ == "AddmmBackward0"
    y.sum().backward()
    assert layer.weight.grad is not None


def test_bf16_inputs_and_the_off_switch_take_f_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = _frozen_linear()
    onednn.route_frozen_layers([layer])
    x = torch.randn(3, 48, requires_grad=True)
    assert "_FrozenLinearBackward" not in _backward_ops(layer.to(torch.bfloat16)(x.bfloat16()))
    layer.float()
    monkeypatch.setenv("LORA_TUI_ONEDNN", "0")
    assert type(layer(x).grad_fn).__name__ == "AddmmBackward0"


def test_under_cpu_autocast_a_layer_takes_f_linear() -> None:
    layer = _frozen_linear()
    onednn.route_frozen_layers([layer])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.randn(3, 48))
    assert y.dtype == torch.bfloat16


def test_routing_twice_routes_once() -> None:
    layer = _frozen_linear()
    assert onednn.route_frozen_layers([layer]) == 1
    assert onednn.route_frozen_layers([layer]) == 0


def test_a_lora_over_a_routed_layer_trains_as_over_a_plain_one() -> None:
    def lora_grads(route: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        layer = _frozen_linear(seed=3)
        if route:
            onednn.route_frozen_layers([layer])
        torch.manual_seed(5)
        lora = LoRAModule("lora_unet_x", layer, 4, 1.0)
        nn.init.normal_(lora.lora_up.weight)  # zero-initialised up would hide the path
        lora.apply_to()
        x = torch.randn(2, 9, 48, requires_grad=True)
        y = layer(x)
        y.square().mean().backward()
        return y.detach(), [lora.lora_down.weight.grad, lora.lora_up.weight.grad, x.grad]

    routed, plain = lora_grads(True), lora_grads(False)
    assert _close(routed[0], plain[0])
    for a, b in zip(routed[1], plain[1]):
        assert _close(a, b)


def test_the_trainers_loss_curve_with_onednn_equals_the_one_without(tmp_path: Path, tiny_model_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed seed, text encoder and U-Net trained: the step losses agree to float rounding."""
    curves = {}
    for switch in ("1", "0"):
        monkeypatch.setenv("LORA_TUI_ONEDNN", switch)
        root = tiny_project(tmp_path / f"p{switch}", tiny_model_dir, training={"max_train_steps": 8})
        run_dir = tmp_path / f"run{switch}"
        assert run_training(train_argv(root), run_dir) == 0
        curves[switch] = [e["loss"] for e in events(run_dir) if e["kind"] == "step"]
    assert len(curves["1"]) == 8
    assert curves["1"] == pytest.approx(curves["0"], rel=1e-4)
