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
VIDEOMAE = "vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400"
CONFIGS = {
    # overrides, the test input's shape per video, views the head scores (after consensus)
    TSN: ([f"experiment={TSN}"], [250, 3, 224, 224], 1),  # 25 clips x 10 crops, one consensus
    TSM: (["protocol=tsm_1x1x8"], [80, 3, 224, 224], 10),  # 10 crops of 8 shifted segments
    I3D: (["protocol=i3d_32x2x1"], [30, 3, 32, 256, 256], 30),  # 10 clips x 3 crops
    SLOWONLY: (["protocol=slowonly_4x16x1"], [30, 3, 4, 256, 256], 30),
    VIDEOMAE: (["protocol=videomae_16x4x1"], [15, 3, 16, 224, 224], 15),  # 5 clips x 3 crops
}
CROPS = {"TenCrop": "actionrec.data.views.TenCrop", "ThreeCrop": "actionrec.data.views.ThreeCrop"}
MIN_CORR = 0.9999  # the parity check's bound on the centred log-probability correlation
# Configs whose wrong protocols fall less far: a random ViT mean-pools 1568 tokens and has no
# BatchNorm to calibrate, so one frame later moves it 28 times the bound's distance, a clip
# fewer 14 times (the CNNs: 77 at least).
NEAR_MISS_MARGIN = {VIDEOMAE: 10}


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
    assert shapes["cls_head.fc_cls.weight"][0] == ref["num_classes"]  # any feature width
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
