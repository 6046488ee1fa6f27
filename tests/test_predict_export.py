"""Inference tools on a briefly trained toy model: predict, export, mmaction2 conversion."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from tests.conftest import CONF_DIR, ROOT
from tests.test_checkpoints import to_mmaction_key, tsn_r18
from tests.test_train import run_script

from actionrec import export, predict, runs
from actionrec.checkpoints import load_weights
from actionrec.data.annotations import read_label_map

# The tiny run skips validation, so the best-checkpoint callback has nothing to monitor.
pytestmark = pytest.mark.filterwarnings("ignore:.*could not find the monitored key")


def load_script(name: str):
    """Import scripts/{name}.py for in-process calls."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_error(script, argv: list[str], monkeypatch) -> str:
    """The ``error: ...`` line a script's main() exits with."""
    monkeypatch.setattr(sys, "argv", ["script", *argv])
    with pytest.raises(SystemExit) as exit_info:
        script.main()
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


@pytest.fixture(scope="session")
def ckpt(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def restored(ckpt):
    """(module, datamodule, cfg) rebuilt from the checkpoint alone."""
    cfg = predict.compose_eval_config(CONF_DIR, [f"ckpt_path={ckpt}"])
    return predict.load_recognizer(cfg), predict.build_datamodule(cfg), cfg


def test_predict_scores_a_video_as_the_test_split_does(restored) -> None:
    module, datamodule, _ = restored
    datamodule.setup("test")
    sample = datamodule.datasets["test"][0]
    path = datamodule.datasets["test"].records[0].path
    views = predict.build_test_views(datamodule, path)
    assert views.dtype == torch.uint8 and views.shape == (3, 5, 3, 64, 64)  # 3 crops x 5 clips
    assert torch.equal(views, sample["imgs"])
    probs = predict.score_views(module, views)
    with torch.no_grad():
        expected = F.softmax(module(sample["imgs"][None]), dim=-1)[0]
    assert probs.shape == (6,) and torch.all(probs >= 0)
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))


def test_predict_on_the_mmaction2_demo_video(restored, samples_dir, ckpt) -> None:
    cfg = predict.compose_eval_config(
        CONF_DIR, [f"ckpt_path={ckpt}", "data.test_num_clips=2", "model.average_clips=prob"]
    )
    module, datamodule = predict.load_recognizer(cfg), predict.build_datamodule(cfg)
    assert module.average_clips == "prob"
    probs = predict.predict_video(module, datamodule, samples_dir / "demo.mp4")
    assert probs.shape == (6,)
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
    names = read_label_map(predict.default_label_map(cfg.data), 6)
    top = predict.top_classes(probs, names, 3)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)


def test_the_predict_command(ckpt, toy_root) -> None:
    video = toy_root / "videos" / "square" / "val_0000.mp4"
    result = run_script(["scripts/predict.py", str(video), f"ckpt_path={ckpt}"])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5, result.stdout
    classes = (toy_root / "classes.txt").read_text().split()
    probs = []
    for line in lines:
        prob, name = line.split(maxsplit=1)
        assert name in classes
        probs.append(float(prob))
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 5e-4


def test_predict_errors_are_one_line(ckpt, toy_root, tmp_path, monkeypatch) -> None:
    script = load_script("predict")
    video = str(toy_root / "videos" / "circle" / "val_0000.mp4")
    missing_video = script_error(script, ["nowhere.mp4", f"ckpt_path={ckpt}"], monkeypatch)
    assert "video not found: nowhere.mp4" in missing_video
    missing = script_error(script, [video, f"ckpt_path={tmp_path}/none.ckpt"], monkeypatch)
    assert "none.ckpt does not exist" in missing
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint")
    unreadable = script_error(script, [video, f"ckpt_path={garbage}"], monkeypatch)
    assert "garbage.ckpt is not a PyTorch checkpoint" in unreadable
    labels = tmp_path / "labels.txt"
    labels.write_text("one\ntwo\n")
    wrong = script_error(script, [video, f"ckpt_path={ckpt}", f"labels={labels}"], monkeypatch)
    assert "has 2 lines, but there are 6 classes" in wrong


def test_torchscript_export_matches_the_module(restored, ckpt, tmp_path) -> None:
    module, _, _ = restored
    files = load_script("export").run(
        [f"ckpt_path={ckpt}", "format=torchscript", f"out_dir={tmp_path}"]
    )
    spec = json.loads((tmp_path / "last.export.json").read_text())
    assert spec["input"]["shape"] == ["B", 3, 3, 64, 64]  # the run's num_clips and test crop
    assert tmp_path / "last.torchscript.pt" in files
    scripted = export.load_torchscript(tmp_path / "last.torchscript.pt")
    for batch in (1, 3):
        imgs = export.example_input(3, 64, batch=batch, seed=batch)
        with torch.no_grad():
            torch.testing.assert_close(scripted(imgs), module(imgs), atol=1e-4, rtol=0)


def test_exported_program_matches_the_module(restored, ckpt, tmp_path) -> None:
    module, _, _ = restored
    files = load_script("export").run([f"ckpt_path={ckpt}", "format=pt2", f"out_dir={tmp_path}"])
    assert files == [tmp_path / "last.pt2", tmp_path / "last.export.json"]
    program = export.load_program(tmp_path / "last.pt2")
    for batch in (1, 3):  # the batch axis is dynamic
        imgs = export.example_input(3, 64, batch=batch, seed=batch)
        with torch.no_grad():
            torch.testing.assert_close(program(imgs), module(imgs), atol=1e-4, rtol=0)


def test_onnx_export_matches_the_module(restored, tmp_path) -> None:
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name, reason=f"ONNX export test needs `pip install {name}`")
    module, _, _ = restored
    model = export.ExportableRecognizer.from_recognizer(module)
    path = export.export_onnx(model, export.example_input(3, 64, batch=2), tmp_path / "m.onnx")
    imgs = export.example_input(3, 64, batch=3, seed=1)  # another batch size: dynamic axis
    with torch.no_grad():
        torch.testing.assert_close(export.run_onnx(path, imgs), module(imgs), atol=1e-4, rtol=0)


def test_onnx_without_its_packages_says_what_to_install(ckpt, monkeypatch) -> None:
    script = load_script("export")
    monkeypatch.setattr(export, "missing_onnx_packages", lambda: ["onnxscript"])
    message = script_error(script, [f"ckpt_path={ckpt}", "format=onnx"], monkeypatch)
    assert "pip install onnx onnxscript" in message


def mmaction_checkpoint(path: Path, num_classes: int = 4) -> torch.nn.Module:
    """Save a TSN-R18 under mmaction2's key names (wrapped as mmcv saves); returns the source."""
    source = tsn_r18(num_classes).eval()
    state = {to_mmaction_key(k): v for k, v in source.state_dict().items()}
    torch.save({"meta": {"epoch": 100, "CLASSES": None}, "state_dict": state}, path)
    return source


def test_convert_mmaction_checkpoint(tmp_path, capsys) -> None:
    source = mmaction_checkpoint(tmp_path / "tsn_mmaction.pth")
    out = tmp_path / "tsn_r18.pth"
    load_script("convert_mmaction_checkpoint").main([str(tmp_path / "tsn_mmaction.pth"), str(out)])
    printed = capsys.readouterr().out
    assert "ResNet-18" in printed and "512 -> 4 classes" in printed
    assert "load_from=" in printed
    target = tsn_r18(4).eval()
    load_weights(target, out)
    imgs = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(target(imgs), source(imgs))


def test_convert_with_another_class_count_leaves_the_head_out(tmp_path, capsys) -> None:
    mmaction_checkpoint(tmp_path / "tsn_mmaction.pth")
    out = tmp_path / "tsn_r18.pth"
    load_script("convert_mmaction_checkpoint").main(
        [str(tmp_path / "tsn_mmaction.pth"), str(out), "--num-classes", "10"]
    )
    assert "left out" in capsys.readouterr().out
    state = torch.load(out, weights_only=True)
    assert not any(k.startswith("head.") for k in state)
    load_weights(tsn_r18(10), out)


def test_convert_rejects_what_is_not_mmaction2_tsn(ckpt, tmp_path) -> None:
    script = load_script("convert_mmaction_checkpoint")
    with pytest.raises(SystemExit, match="is not an mmaction2 TSN checkpoint"):
        script.main([str(ckpt), str(tmp_path / "out.pth")])
    assert not (tmp_path / "out.pth").exists()


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_depth_guess_from_keys(depth: int) -> None:
    script = load_script("convert_mmaction_checkpoint")
    with torch.device("meta"):
        net = getattr(torchvision.models, f"resnet{depth}")()
    keys = {f"backbone.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    assert script.guess_resnet_depth(keys) == depth


# Each family's model, frames per view and the overrides that keep it offline (nothing to
# download) and quick to trace.
OFFLINE = ["model.net.backbone.pretrained=null"]
MVIT_SMALL = [  # MViTv2-S's structure at a smaller width and depth, 32 px (its size is fixed)
    "model.net.arch={embed_dims:16,num_layers:5,num_heads:1,downscale_indices:[1,2,4]}",
    "model.net.spatial_size=32",
    "data.clip_len=4",
]
VIT_SMALL = [  # VideoMAE's ViT at a smaller width and depth, 32 px
    "model.net.backbone.img_size=32",
    "model.net.backbone.embed_dims=64",
    "model.net.backbone.depth=2",
    "model.net.backbone.num_heads=2",
    "model.net.head.in_channels=64",
    "data.clip_len=4",
    "model.net.backbone.pretrained=null",
]
FAMILY_VIEWS = {
    "tsm_r50": (8, OFFLINE),
    "i3d_r50": (32, OFFLINE),
    "slowonly_r50": (4, OFFLINE),
    "slowfast_r50": (32, OFFLINE),  # one clip, both pathways
    "r2plus1d_r34": (8, OFFLINE),
    "x3d_s": (13, []),
    "mvit_v2_s": (4, MVIT_SMALL),
    "videomae_vit_b16": (4, VIT_SMALL),
    "tv_mc3_18": (16, []),
    "tv_swin3d_t": (32, []),
}
EXPORTERS = {
    "pt2": (export.export_program, export.load_program),
    "onnx": (export.export_onnx, lambda path: lambda imgs: export.run_onnx(path, imgs)),
}


# The default suite exports TSM and SlowOnly (pt2; SlowOnly to ONNX too: torch.export, then the
# translation to ONNX ops); the other families, a minute each here, run in the slow set.
FAST_EXPORTS = {("tsm_r50", "pt2"), ("slowonly_r50", "pt2"), ("slowonly_r50", "onnx")}


@pytest.mark.parametrize(
    ("model", "fmt"),
    [
        pytest.param(m, fmt, marks=[] if (m, fmt) in FAST_EXPORTS else [pytest.mark.slow])
        for m in FAMILY_VIEWS
        for fmt in sorted(EXPORTERS)
    ],
)
def test_every_family_exports_with_its_own_input_layout(compose_train, model, fmt, tmp_path):
    # One view of the family's protocol (TSM's 8 segments, a 3-D clip), uint8 (B, T, C, H, W)
    # as the pipeline gives it, to logits, through torch.export and ONNX with a dynamic batch;
    # 32 px keeps the big networks quick.
    if fmt == "onnx":
        for name in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(name, reason=f"ONNX export test needs `pip install {name}`")
    frames, overrides = FAMILY_VIEWS[model]
    cfg = compose_train(f"model={model}", *overrides)
    module = runs.build_module(cfg).eval()
    assert module.frames_per_view == frames
    exportable = export.ExportableRecognizer.from_recognizer(module).eval()
    save, load = EXPORTERS[fmt]
    path = save(exportable, export.example_input(frames, 32), tmp_path / f"m.{fmt}")
    imgs = export.example_input(frames, 32, batch=2, seed=1)  # another batch size
    with torch.no_grad():
        scores = module.average_views(load(path)(imgs)[:, None])  # its average_clips: prob
        torch.testing.assert_close(scores, module(imgs), atol=1e-5, rtol=1e-4)
