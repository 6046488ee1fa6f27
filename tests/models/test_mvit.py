"""MViTv2 (torchvision's MViT with mmaction2's layout, init and keys) against mmaction2's own
outputs, kept as fixtures by ``scripts/mmaction2_mvit_reference.py``."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from tests.fixtures.mmaction2.weights import (
    FIXTURES,
    read_shapes,
    seeded_state_dict,
    write_checkpoint,
)

from actionrec.checkpoints import load_weights, to_network_keys
from actionrec.models.mvit import MViTv2
from actionrec.module import Recognizer

NUM_CLASSES = 5  # the reference script's
# The reference script's reduced model: three downscales, k/v strides 8 -> 1, 64 px, 8 frames.
TOY = {
    "arch": {"embed_dims": 16, "num_layers": 5, "num_heads": 1, "downscale_indices": [1, 2, 4]},
    "spatial_size": 64,
    "temporal_size": 8,
}


def reference(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}_outputs.npz") as data:
        return dict(data)


def seeded_input(ref: dict[str, np.ndarray]) -> torch.Tensor:
    """The script's input: ``randn`` of its shape, torch's CPU generator, seed 0."""
    shape = tuple(int(s) for s in ref["input_shape"])
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def mmaction2_weights(net: MViTv2, name: str, seed: int = 0) -> MViTv2:
    shapes = read_shapes(FIXTURES / f"{name}_keys.json")
    net.load_state_dict(to_network_keys(seeded_state_dict(shapes, seed), net))
    return net.eval()


def assert_matches_mmaction2(net: MViTv2, name: str) -> None:
    ref = reference(name)
    with torch.no_grad():
        feats = net.forward_features(seeded_input(ref))
        logits = net.forward_head(feats)
    torch.testing.assert_close(feats, torch.from_numpy(ref["features"]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, torch.from_numpy(ref["logits"]), rtol=1e-4, atol=1e-5)


def test_every_mmaction2_key_has_exactly_one_of_ours() -> None:
    net = MViTv2(NUM_CLASSES, **TOY)
    shapes = read_shapes(FIXTURES / "mvit_toy_keys.json")
    converted = net.convert_mmaction_state_dict(seeded_state_dict(shapes))
    own = net.state_dict()
    assert len(converted) == len(shapes)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in own.items()
    }


def test_reduced_model_reproduces_mmaction2() -> None:
    assert_matches_mmaction2(mmaction2_weights(MViTv2(NUM_CLASSES, **TOY), "mvit_toy"), "mvit_toy")


@pytest.mark.slow
def test_mvit_v2_s_reproduces_mmaction2(compose_train) -> None:
    from hydra.utils import instantiate

    cfg = compose_train("model=mvit_v2_s", f"data.num_classes={NUM_CLASSES}")
    net = instantiate(cfg.model.net, _convert_="all")
    assert_matches_mmaction2(mmaction2_weights(net, "mvit_v2_s"), "mvit_v2_s")


@pytest.mark.slow
def test_small_arch_is_torchvisions_mvit_v2_s() -> None:
    def layout(net: torch.nn.Module) -> list:
        attn = [b.attn for b in net.blocks]
        strides = [(a.num_heads, a.pool_q.pool.stride, a.pool_k.pool.stride) for a in attn]
        return strides + [tuple(p.shape) for p in net.parameters()]

    assert layout(MViTv2(400)) == layout(torchvision.models.video.mvit_v2_s())


def test_from_scratch_init_is_mmaction2s() -> None:
    net = MViTv2(NUM_CLASSES, **TOY)
    assert net.pos_encoding.class_token.abs().sum() == 0  # mmaction2 never draws it
    block = net.blocks[1]
    torch.testing.assert_close(block.norm1.bias, torch.full_like(block.norm1.bias, 0.02))
    torch.testing.assert_close(block.attn.qkv.bias, torch.full_like(block.attn.qkv.bias, 0.02))
    torch.testing.assert_close(net.head[1].bias, torch.full_like(net.head[1].bias, 0.02))
    assert net.conv_proj.bias.abs().sum() == 0
    for weight in (net.conv_proj.weight, block.attn.pool_q.pool.weight, block.mlp[0].weight):
        assert 0.015 < weight.std() < 0.025 and weight.abs().max() <= 2


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reduced MViT checkpoint as mmaction2's model zoo ships it (``meta``, ``state_dict``)."""
    shapes = read_shapes(FIXTURES / "mvit_toy_keys.json")
    return write_checkpoint(tmp_path_factory.mktemp("zoo") / "mvit.pth", shapes, seed=2)


@pytest.mark.parametrize("num_classes", [NUM_CLASSES, 3])
def test_load_from_an_mmaction2_checkpoint(toy_checkpoint: Path, num_classes: int) -> None:
    net = MViTv2(num_classes, **TOY)
    load_weights(net, toy_checkpoint)
    shapes = read_shapes(FIXTURES / "mvit_toy_keys.json")
    expected = net.convert_mmaction_state_dict(seeded_state_dict(shapes, seed=2))
    own = net.state_dict()
    for key, value in expected.items():
        if num_classes == NUM_CLASSES or not key.startswith("head."):
            torch.testing.assert_close(own[key], value, msg=key)
    assert own["head.1.weight"].shape == (num_classes, 128)


def test_bf16_autocast_and_channels_last_3d_agree_with_fp32() -> None:
    net = mmaction2_weights(MViTv2(NUM_CLASSES, **TOY), "mvit_toy")
    x = seeded_input(reference("mvit_toy"))
    with torch.no_grad():
        expected = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = net(x)
        net.to(memory_format=torch.channels_last_3d)
        last = net(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(last, expected, rtol=1e-4, atol=1e-4)
    assert half.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: the logits within a few percent of their spread.
    torch.testing.assert_close(half.float(), expected, rtol=0, atol=0.1 * expected.abs().max())


def test_a_training_step_through_the_lightning_module() -> None:
    module = Recognizer(
        MViTv2(3, **TOY),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        mean=[114.75] * 3,
        std=[57.375] * 3,
        frames_per_view=8,
        average_clips="prob",
    )
    module.log = lambda *args, **kwargs: None
    batch = {
        "imgs": torch.randint(0, 256, (2, 8, 3, 64, 64), dtype=torch.uint8),  # (B, T, C, H, W)
        "label": torch.tensor([0, 2]),
    }
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(module.net.blocks[0].attn.rel_pos_t.grad).all()


@pytest.mark.slow
def test_torch_export_gives_the_same_logits() -> None:
    net = MViTv2(NUM_CLASSES, **TOY).eval()
    x = net.example_input(2)
    program = torch.export.export(net, (x,))
    torch.testing.assert_close(program.module()(x), net(x))


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match=r"arch='huge'"):
        MViTv2(NUM_CLASSES, arch="huge")
    with pytest.raises(ValueError, match=r"spatial_size=100"):
        MViTv2(NUM_CLASSES, spatial_size=100)
