"""mmaction2's recorded test protocol (tests/fixtures/mmaction2/reference), checked without it.

``scripts/mmaction2_reference.py`` ran each mmaction2 1.x config's own test pipeline and model
on the two sample videos, with seeded stand-in weights whose BatchNorm statistics and classifier
bias were calibrated on those clips, and wrote per config:

* ``<config>_keys.json``: mmaction2's state-dict keys and shapes, in order (16 classes);
* ``<config>_bn.npz``: float16 tensors that replace the seeded ones (every BN ``running_mean``
  and ``running_var``, and ``cls_head.fc_cls.bias``);
* ``<config>_scores.json``: per video the ``frame_inds`` its test SampleFrames drew, the number
  of views its head scored, the class scores after ``average_clips`` and their logs, top-1;
  and ``sensitivity``: how far wrong protocols (every index one frame later; one clip fewer or
  TSM's twice_sample) fall from the reference, measured with mmaction2 itself.

A parity test writes the checkpoint with :func:`checkpoint_for`, evaluates it, and compares with
:func:`assert_parity`. This file checks that the fixtures hang together, that they can reject a
wrong protocol, and that actionrec's sampler draws mmaction2's test frame indices; the TSN
end-to-end comparison runs ``src/eval.py`` (slow).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from tests.test_train import eval_run_dir, run_script

from actionrec.data.sampling import SampleFrames

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mmaction2"
REFERENCE = FIXTURES / "reference"

# config -> how to compose its protocol here, and what its test feeds the head.
TSN = "tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb"
TSM = "tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb"
I3D = "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb"
SLOWONLY = "slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-rgb"
R2PLUS1D = "r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb"
MVIT = "mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb"
VIDEOMAE = "vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400"
CONFIGS = {
    # overrides, the test input's shape per video, views the head scores (after consensus)
    TSN: ([f"experiment={TSN}"], [250, 3, 224, 224], 1),  # 25 clips x 10 crops, one consensus
    TSM: (["protocol=tsm_1x1x8"], [80, 3, 224, 224], 10),  # 10 crops of 8 shifted segments
    I3D: (["protocol=i3d_32x2x1"], [30, 3, 32, 256, 256], 30),  # 10 clips x 3 crops
    SLOWONLY: (["protocol=slowonly_4x16x1"], [30, 3, 4, 256, 256], 30),
    R2PLUS1D: (["protocol=r2plus1d_8x8x1"], [30, 3, 8, 256, 256], 30),
    MVIT: (["protocol=mvit_16x4x1"], [5, 3, 16, 224, 224], 5),  # 5 clips x CenterCrop 224
    VIDEOMAE: (["protocol=videomae_16x4x1"], [15, 3, 16, 224, 224], 15),  # 5 clips x 3 crops
}
CROPS = {
    "TenCrop": "actionrec.data.views.TenCrop",
    "ThreeCrop": "actionrec.data.views.ThreeCrop",
    "CenterCrop": "actionrec.data.transforms.CenterCrop",
}
# The transformers' scores move less under a wrong protocol (random weights, averaged tokens):
# mmaction2's own wrong protocols fall 9.8 and 15 (MViT), 14 and 28 (VideoMAE) times the bound.
NEAR_MISS_MARGIN = {MVIT: 5, VIDEOMAE: 10}
MIN_CORR = 0.9999  # the parity check's bound on the centred log-probability correlation


def _weights():
    spec = importlib.util.spec_from_file_location("fixture_weights", FIXTURES / "weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference(name: str) -> dict:
    return json.loads((REFERENCE / f"{name}_scores.json").read_text())


def bn_stats(name: str) -> dict[str, np.ndarray]:
    with np.load(REFERENCE / f"{name}_bn.npz") as npz:
        return {k: npz[k] for k in npz.files}


def checkpoint_for(name: str, path: Path) -> Path:
    """The checkpoint mmaction2 scored for ``name``: seeded weights plus the calibrated tensors."""
    weights = _weights()
    shapes = weights.read_shapes(REFERENCE / f"{name}_keys.json")
    return weights.write_checkpoint(
        path, shapes, bn_stats=bn_stats(name), seed=reference(name)["seed"]
    )


def centred_corr(a, b) -> float:
    """Pearson correlation of two log-probability vectors, each centred over its classes."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    return float(a @ b / math.sqrt((a @ a) * (b @ b)))


def assert_parity(name: str, videos: list[str], scores: np.ndarray) -> None:
    """``scores`` (videos x classes, after average_clips) match mmaction2's for every video."""
    expected = {v["path"]: v for v in reference(name)["videos"]}
    assert sorted(Path(v).name for v in videos) == sorted(expected)
    for video, row in zip(videos, np.asarray(scores, dtype=np.float64), strict=True):
        ref = expected[Path(video).name]
        corr = centred_corr(np.log(row), ref["log_probs"])
        assert int(row.argmax()) == ref["top1"], (video, row.argmax(), ref["top1"], corr)
        assert corr > MIN_CORR, (video, corr)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_fixtures_make_the_checkpoint_mmaction2_scored(name, tmp_path) -> None:
    import torch

    ref = reference(name)
    shapes = _weights().read_shapes(REFERENCE / f"{name}_keys.json")
    stats = bn_stats(name)
    bn_keys = {k for k in shapes if k.endswith((".running_mean", ".running_var"))}
    assert set(stats) == bn_keys | {"cls_head.fc_cls.bias"}  # every BN calibrated
    for key, value in stats.items():
        assert value.dtype == np.float16 and list(value.shape) == shapes[key], key
        assert np.isfinite(value).all(), key
    assert all((stats[k] > 0).all() for k in bn_keys if k.endswith("_var"))
    assert shapes["cls_head.fc_cls.weight"][0] == ref["num_classes"]
    state = torch.load(checkpoint_for(name, tmp_path / "x.pth"), weights_only=True)["state_dict"]
    assert list(state) == list(shapes)
    assert torch.equal(
        state["cls_head.fc_cls.bias"], torch.from_numpy(stats["cls_head.fc_cls.bias"]).float()
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_recorded_scores_are_one_test_view_layout(name) -> None:
    ref = reference(name)
    _, input_shape, views = CONFIGS[name]
    assert [v["path"] for v in ref["videos"]] == ["test.mp4", "demo.mp4"]
    assert ref["versions"]["mmaction2"] == "1.2.0"
    sampler = ref["protocol"]["sample_frames"]
    for video in ref["videos"]:
        assert video["input_shape"] == input_shape
        assert video["num_views"] == views
        assert len(video["frame_inds"]) == sampler["num_clips"] * sampler["clip_len"]
        scores = np.asarray(video["scores"])
        assert scores.shape == (ref["num_classes"],)
        assert scores.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(np.log(scores), video["log_probs"], rtol=0, atol=1e-12)
        assert video["top1"] == int(scores.argmax())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_parity_check_rejects_a_wrong_protocol(name) -> None:
    """One frame later or one clip fewer moves mmaction2's own scores past the bound, and the
    two videos' score vectors differ: the check sees what tells videos apart."""
    ref = reference(name)
    variants = ref["sensitivity"]
    assert len(variants) == 2
    for label, per_video in variants.items():
        rows = [r for k, r in per_video.items() if k != "rejected"]
        assert any(r["corr"] < MIN_CORR or not r["top1_equal"] for r in rows), label
        # not a near miss: 50 times the bound's distance from 1 (measured: 77 times at least)
        margin = NEAR_MISS_MARGIN.get(name, 50)
        assert min(r["corr"] for r in rows) < 1 - margin * (1 - MIN_CORR), label
    assert ref["between_videos_corr"] < 0.9


@pytest.mark.parametrize("name", list(CONFIGS))
def test_our_test_sampler_draws_mmaction2s_frame_indices(name, compose_train) -> None:
    overrides, _, _ = CONFIGS[name]
    cfg = compose_train(*overrides)
    ref = reference(name)
    mm = ref["protocol"]["sample_frames"]
    data = cfg.data
    assert (data.clip_len, data.frame_interval, data.test_num_clips) == (
        mm["clip_len"],
        mm.get("frame_interval", 1),
        mm["num_clips"],
    )
    crop = data.test_pipeline[-1]
    assert crop["_target_"] == CROPS[ref["protocol"]["crop"]]
    assert crop["crop_size"] == ref["protocol"]["crop_size"]
    sampler = SampleFrames(data.clip_len, data.frame_interval, data.test_num_clips, test_mode=True)
    for video in ref["videos"]:
        ours = sampler(video["total_frames"]).tolist()
        assert ours == video["frame_inds"], (video["path"], ours, video["frame_inds"])


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(TSN, marks=pytest.mark.slow),
        TSM,
        pytest.param(I3D, marks=pytest.mark.slow),
        pytest.param(SLOWONLY, marks=pytest.mark.slow),
        pytest.param(R2PLUS1D, marks=pytest.mark.slow),
        pytest.param(MVIT, marks=pytest.mark.slow),
        pytest.param(VIDEOMAE, marks=pytest.mark.slow),
    ],
)
def test_eval_gives_mmaction2s_scores(name, samples_dir, tmp_path) -> None:
    """`python src/eval.py experiment=<config> load_from=<its .pth>` on the sample videos, as
    mmaction2 scored them under that config's own test protocol (mmaction2 decoded with decord;
    the recipe's own decoder, PyAV, gives the same frames)."""
    ref = reference(name)
    weights = checkpoint_for(name, tmp_path / "mmaction2.pth")
    ann = tmp_path / "list.txt"
    ann.write_text("".join(f"{v['path']} {v['label']}\n" for v in ref["videos"]))
    out = tmp_path / "scores.npz"
    result = run_script(
        [
            "src/eval.py",
            f"experiment={name}",
            f"load_from={weights}",
            f"data.num_classes={ref['num_classes']}",
            f"data.data_root_val={samples_dir}",
            f"data.ann_file_test={ann}",
            "data.workers_per_gpu=0",
            f"out={out}",
            f"paths.log_dir={tmp_path}/logs",
        ],
        timeout=900,
    )
    eval_run_dir(result)
    with np.load(out) as npz:
        got = {k: npz[k] for k in npz.files}
    assert_parity(name, [str(v) for v in got["video"]], got["scores"])


# X3D-S: its head's classifier is `fc2` (after fc1 and ReLU) and its test samples at 30 fps, so
# it has its own checks here rather than rows of CONFIGS.
X3D = "x3d_s_13x6x1_facebook-kinetics400-rgb"


def test_the_x3d_fixtures_prove_its_frame_rate_and_normalization(tmp_path) -> None:
    import torch

    ref = reference(X3D)
    shapes = _weights().read_shapes(REFERENCE / f"{X3D}_keys.json")
    stats = bn_stats(X3D)
    bn_keys = {k for k in shapes if k.endswith((".running_mean", ".running_var"))}
    assert set(stats) == bn_keys | {"cls_head.fc2.bias"}  # every BN and the classifier's bias
    assert all(v.dtype == np.float16 and np.isfinite(v).all() for v in stats.values())
    state = torch.load(checkpoint_for(X3D, tmp_path / "x.pth"), weights_only=True)["state_dict"]
    assert list(state) == list(shapes)
    assert ref["protocol"]["sample_frames"]["target_fps"] == 30
    # The sample videos run at 30 and 28 fps. target_fps moves both: it spreads a clip's 13
    # frames over 13 x 6 x fps / 30 frames (test.mp4: 78, where 73 without it).
    assert {v["path"]: v["avg_fps"] for v in ref["videos"]} == {"test.mp4": 30, "demo.mp4": 28}
    for video in ref["videos"]:
        assert video["input_shape"] == [30, 3, 13, 182, 182]  # 10 clips x ThreeCrop 182
        assert video["num_views"] == 30
    sens = ref["sensitivity"]
    assert set(sens) == {"frame_inds+1", "num_clips=9", "target_fps=None", "imagenet_mean_std"}
    for label, per_video in sens.items():
        rows = [r for k, r in per_video.items() if k != "rejected"]
        assert per_video["rejected"], label
        assert min(r["corr"] for r in rows) < 1 - 50 * (1 - MIN_CORR), label  # not a near miss
    for video in ("test.mp4", "demo.mp4"):  # sampling at the video's own rate: both move
        assert sens["target_fps=None"][video]["corr"] < 1 - 50 * (1 - MIN_CORR), video
    assert ref["between_videos_corr"] < 0.9


def test_our_x3d_test_sampler_draws_mmaction2s_frame_indices(compose_train) -> None:
    from hydra.utils import instantiate

    cfg = compose_train(f"experiment={X3D}")
    ref = reference(X3D)
    data = cfg.data
    mm = ref["protocol"]["sample_frames"]
    assert (data.clip_len, data.frame_interval, data.test_num_clips) == (13, 6, 10)
    assert (mm["clip_len"], mm["frame_interval"], mm["num_clips"]) == (13, 6, 10)
    assert data.test_pipeline[-1]["_target_"] == CROPS[ref["protocol"]["crop"]]
    assert data.test_pipeline[-1]["crop_size"] == ref["protocol"]["crop_size"]
    assert list(cfg.model.mean) == [114.75] * 3 and list(cfg.model.std) == [57.38] * 3
    sampler = instantiate(data).samplers["test"]
    for video in ref["videos"]:
        ours = sampler(video["total_frames"], fps=video["avg_fps"]).tolist()
        assert ours == video["frame_inds"], video["path"]


@pytest.mark.slow
def test_eval_gives_mmaction2s_x3d_scores(samples_dir, tmp_path) -> None:
    test_eval_gives_mmaction2s_scores(X3D, samples_dir, tmp_path)


# SlowFast's head reads 256 + 2048 features (the checkpoint test above expects 2048), so its
# fixtures are checked here by the tests above with its entry put in CONFIGS for the call.
SLOWFAST = "slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb"
SLOWFAST_VIEWS = (["protocol=slowfast_4x16x1"], [30, 3, 32, 256, 256], 30)  # 10 clips x 3 crops


@pytest.fixture
def slowfast(monkeypatch) -> str:
    monkeypatch.setitem(CONFIGS, SLOWFAST, SLOWFAST_VIEWS)
    return SLOWFAST


def test_the_slowfast_fixtures_hang_together(slowfast, compose_train) -> None:
    test_the_recorded_scores_are_one_test_view_layout(slowfast)
    test_the_parity_check_rejects_a_wrong_protocol(slowfast)
    test_our_test_sampler_draws_mmaction2s_frame_indices(slowfast, compose_train)
    shapes = _weights().read_shapes(REFERENCE / f"{slowfast}_keys.json")
    stats = bn_stats(slowfast)
    bn_keys = {k for k in shapes if k.endswith((".running_mean", ".running_var"))}
    assert set(stats) == bn_keys | {"cls_head.fc_cls.bias"}  # every BN of both pathways
    assert shapes["cls_head.fc_cls.weight"] == [reference(slowfast)["num_classes"], 2304]
    for key, value in stats.items():
        assert value.dtype == np.float16 and list(value.shape) == shapes[key], key
        assert np.isfinite(value).all(), key


@pytest.mark.slow
def test_eval_gives_mmaction2s_slowfast_scores(slowfast, samples_dir, tmp_path) -> None:
    test_eval_gives_mmaction2s_scores(slowfast, samples_dir, tmp_path)
