"""The VideoMAE ViT against mmaction2's own outputs and layer-decay groups, kept as fixtures by
``scripts/mmaction2_vit_reference.py``: a small ViT of the same structure by default, ViT-B/16
(slow)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tests.fixtures.mmaction2.weights import FIXTURES, read_shapes, seeded_state_dict

from actionrec.export import ExportableRecognizer, export_onnx, missing_onnx_packages, run_onnx
from actionrec.models.backbones import PretrainedWeightsError
from actionrec.models.vit import RecognizerViT, TimeSformerHead, VisionTransformer
from actionrec.module import Recognizer
from actionrec.optim import apply_multipliers, layer_decay_param_groups

NUM_CLASSES = 5  # the reference script's
# The reference script's small ViT: mmaction2's structure at a size that runs in milliseconds.
SMALL = dict(img_size=32, embed_dims=64, depth=2, num_heads=2, num_frames=4)
SIZES = {"vit_small": SMALL, "vit_b16": {}}


def reference(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"videomae_{name}_outputs.npz") as data:
        return dict(data)


def seeded_input(shape) -> torch.Tensor:
    """The script's input: ``randn`` of its shape, torch's CPU generator, seed 0."""
    return torch.randn(tuple(int(s) for s in shape), generator=torch.Generator().manual_seed(0))


def make_net(name: str = "vit_small", **kwargs) -> RecognizerViT:
    backbone = VisionTransformer(**SIZES[name], **kwargs)
    return RecognizerViT(backbone, TimeSformerHead(NUM_CLASSES, backbone.num_features))


def seeded_net(name: str) -> RecognizerViT:
    """Our network with the script's stand-in weights (its own fixed position table)."""
    net = make_net(name).eval()
    state = seeded_state_dict(read_shapes(FIXTURES / f"videomae_{name}_keys.json"))
    state["backbone.pos_embed"] = net.backbone.pos_embed
    net.load_state_dict(net.convert_mmaction_state_dict(state))
    return net


def assert_close_to(actual: torch.Tensor, expected: np.ndarray) -> None:
    expected = torch.from_numpy(expected)
    atol = 1e-5 * expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=atol)


def check_parity(name: str) -> None:
    ref = reference(name)
    net = seeded_net(name)
    if "pos_embed" in ref:  # the small one's
        torch.testing.assert_close(net.backbone.pos_embed, torch.from_numpy(ref["pos_embed"]))
    with torch.no_grad():
        for label in ("", "resized_"):  # the native grid, then a resized position table
            x = seeded_input(ref[f"{label}input_shape"])
            feats = net.forward_features(x)
            assert_close_to(feats, ref[f"{label}features"])
            assert_close_to(net.forward_head(feats), ref[f"{label}logits"])


def test_small_vit_reproduces_mmaction2() -> None:
    check_parity("vit_small")


@pytest.mark.slow
def test_vit_b16_reproduces_mmaction2() -> None:
    check_parity("vit_b16")


@pytest.mark.parametrize("name", list(SIZES))
def test_every_mmaction2_key_has_exactly_one_of_ours(name: str) -> None:
    with torch.device("meta"):  # shapes only: ViT-B without its 86M initialised weights
        net = make_net(name)
    shapes = read_shapes(FIXTURES / f"videomae_{name}_keys.json")
    converted = net.convert_mmaction_state_dict({k: torch.empty(v) for k, v in shapes.items()})
    own = net.state_dict()
    assert len(converted) == len(shapes)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in own.items()
    }


def test_the_model_config_builds_vit_b16(compose_train) -> None:
    cfg = compose_train("model=videomae_vit_b16", f"data.num_classes={NUM_CLASSES}")
    with torch.device("meta"):
        net = instantiate(cfg.model.net, _convert_="all")
    shapes = read_shapes(FIXTURES / "videomae_vit_b16_keys.json")
    converted = net.convert_mmaction_state_dict(shapes)
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == converted
    assert cfg.model.frames_per_view == cfg.data.clip_len == net.backbone.grid[0] * 2


@pytest.mark.parametrize("name", list(SIZES))
def test_layer_decay_groups_equal_mmaction2s_constructor(name: str) -> None:
    """Per parameter, lr scale and weight decay as mmaction2's LearningRateDecayOptimizerConstructor
    gives them (AdamW, weight decay 0.05, decay rate 0.75)."""
    expected = json.loads((FIXTURES / f"videomae_{name}_param_groups.json").read_text())
    with torch.device("meta"):
        net = make_net(name)
    optimizer = torch.optim.AdamW(layer_decay_param_groups(net, 0.75), lr=1.0, weight_decay=0.05)
    apply_multipliers(optimizer)
    names = {id(p): n for n, p in net.named_parameters()}
    groups = optimizer.param_groups
    ours = {names[id(p)]: [g["lr"], g["weight_decay"]] for g in groups for p in g["params"]}
    renamed = net.convert_mmaction_state_dict(dict.fromkeys(expected, None))
    expected = dict(zip(renamed, expected.values(), strict=True))
    assert ours.keys() == expected.keys()
    for key, (lr, wd) in expected.items():
        assert ours[key] == pytest.approx([lr, wd], rel=1e-12), key


def test_a_videomae_pretraining_checkpoint_initialises_the_encoder(tmp_path) -> None:
    source = make_net().backbone.state_dict()
    names = {
        "patch_embed.weight": "patch_embed.proj.weight",
        "patch_embed.bias": "patch_embed.proj.bias",
    }
    encoder = {f"encoder.{names.get(k, k)}": v for k, v in source.items() if k != "fc_norm.weight"}
    decoder = {"decoder.blocks.0.mlp.fc1.weight": torch.zeros(3), "mask_token": torch.zeros(1)}
    path = tmp_path / "checkpoint-1599.pth"
    torch.save({"model": {**encoder, **decoder}}, path)
    loaded = VisionTransformer(**SMALL, pretrained=str(path)).state_dict()
    for key, value in source.items():
        if not key.startswith("fc_norm."):
            torch.testing.assert_close(loaded[key], value, msg=key)
    torch.save({"model": decoder}, path)
    with pytest.raises(PretrainedWeightsError, match="not a VideoMAE encoder"):
        VisionTransformer(**SMALL, pretrained=str(path))


def test_layer_decay_needs_a_numbered_backbone() -> None:
    with pytest.raises(ValueError, match="layer_id"):
        layer_decay_param_groups(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_drop_path_drops_residual_branches_in_training_only() -> None:
    net = make_net(drop_path_rate=0.5)
    x = net.example_input(4, 32, 4)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), net(x))
        torch.manual_seed(0)
        assert not torch.allclose(net.train()(x), net.eval()(x))
    rates = [getattr(b.drop_path, "p", 0.0) for b in net.backbone.blocks]
    assert rates == pytest.approx([0.0, 0.5])  # the stochastic depth rule: 0 up to the rate


def test_channels_last_3d_and_bfloat16_give_the_same_output() -> None:
    net = seeded_net("vit_small")
    x = net.example_input(2, 32, 4)
    with torch.no_grad():
        expected = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
        net.to(memory_format=torch.channels_last_3d)
        actual = net(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expected, rtol=0.05, atol=0.05 * expected.abs().max())


def exportable() -> tuple[ExportableRecognizer, torch.Tensor]:
    module = Recognizer(make_net(), optimizer=None, frames_per_view=4).eval()
    x = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)  # (B, T, C, H, W)
    return ExportableRecognizer.from_recognizer(module).eval(), x


def test_torch_export() -> None:
    model, x = exportable()
    with torch.no_grad():
        inputs = model.normalizer(x)
        program = torch.export.export(model.net, (inputs,))
        torch.testing.assert_close(program.module()(inputs), model(x))


@pytest.mark.slow
def test_onnx_export(tmp_path) -> None:
    if missing_onnx_packages():
        pytest.skip(f"no {missing_onnx_packages()}")
    model, x = exportable()
    with torch.no_grad():
        expected = model(x)
    path = export_onnx(model, x, tmp_path / "vit.onnx")
    torch.testing.assert_close(run_onnx(path, x), expected, rtol=1e-4, atol=1e-4)


def test_a_training_step_through_the_lightning_module() -> None:
    module = Recognizer(
        make_net(drop_path_rate=0.1),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        frames_per_view=4,
        average_clips="prob",
    )
    module.log = lambda *args, **kwargs: None
    batch = {
        "imgs": torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8),  # (B, T, C, H, W)
        "label": torch.tensor([0, 2]),
    }
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(module.net.backbone.blocks[0].attn.q_bias.grad).all()


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="embed_dims=64 must be a multiple of num_heads=3"):
        VisionTransformer(**{**SMALL, "num_heads": 3})
    with pytest.raises(ValueError, match="img_size=30"):
        VisionTransformer(**{**SMALL, "img_size": 30})
    with pytest.raises(ValueError, match="num_frames=4"):
        make_net()(torch.randn(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match=r"in_channels=32.*64"):
        RecognizerViT(VisionTransformer(**SMALL), TimeSformerHead(3, in_channels=32))
