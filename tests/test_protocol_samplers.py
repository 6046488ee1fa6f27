"""The protocol's samplers: every option reachable from a composed config, doing what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tests.conftest import CONF_DIR

from actionrec.data.decoding import open_video
from actionrec.data.sampling import DenseSampleFrames, SampleFrames

PROTOCOLS = sorted(p.stem for p in (CONF_DIR / "protocol").glob("*.yaml"))
TRAIN = "data.train_sampler"


def samplers(compose_train, *overrides: str) -> dict:
    return instantiate(compose_train(*overrides).data).samplers


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_samples_as_its_four_keys_say(compose_train, protocol) -> None:
    # What the data module built from the scalars alone before the sampler nodes existed.
    for extra in ([], ["data.num_clips=8", "data.test_num_clips=2", "data.frame_interval=3"]):
        cfg = compose_train(f"protocol={protocol}", *extra)
        got = instantiate(cfg.data).samplers
        d = cfg.data
        # target_fps is a protocol's own key (torchvision's weights, X3D): it follows the protocol.
        fps = {s: d[f"{s}_sampler"].target_fps for s in ("train", "val", "test")}
        clip = (d.clip_len, d.frame_interval)
        assert repr(got["train"]) == repr(SampleFrames(*clip, d.num_clips, target_fps=fps["train"]))
        assert repr(got["val"]) == repr(
            SampleFrames(*clip, d.num_clips, test_mode=True, target_fps=fps["val"])
        )
        assert repr(got["test"]) == repr(
            SampleFrames(*clip, d.test_num_clips, test_mode=True, target_fps=fps["test"])
        )


def test_an_override_on_a_resolved_config_reaches_the_sampler(compose_train) -> None:
    # eval.py restores a checkpoint's resolved config, then applies data.test_num_clips=...
    cfg = compose_train("protocol=i3d_32x2x1")
    OmegaConf.resolve(cfg)
    cfg.data.test_num_clips = 2
    assert instantiate(cfg.data).samplers["test"].num_clips == 2


def test_a_stable_key_set_on_the_sampler_names_the_key_to_use(compose_train) -> None:
    cfg = compose_train(f"+{TRAIN}.num_clips=5")
    with pytest.raises(InstantiationException, match=r"override data\.num_clips instead"):
        instantiate(cfg.data)
    cfg = compose_train("+data.test_sampler.num_clips=5")
    with pytest.raises(InstantiationException, match=r"override data\.test_num_clips instead"):
        instantiate(cfg.data)


def test_dense_sampling_from_the_command_line(compose_train) -> None:
    got = samplers(
        compose_train,
        "protocol=slowonly_4x16x1",
        "data.num_clips=2",
        f"{TRAIN}._target_=actionrec.data.sampling.DenseSampleFrames",
        f"+{TRAIN}.sample_range=32",
    )["train"]
    assert isinstance(got, DenseSampleFrames) and got.sample_range == 32
    expected = DenseSampleFrames(4, 16, 2, sample_range=32)
    for seed in range(5):
        inds = got(200, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(inds, expected(200, rng=np.random.default_rng(seed)))
        assert inds[4] - inds[0] == 16  # clip starts sample_range // num_clips apart, mod 200


def test_temporal_jitter_from_the_command_line(compose_train) -> None:
    plain = samplers(compose_train, "protocol=i3d_32x2x1")["train"]
    jittered = samplers(compose_train, "protocol=i3d_32x2x1", f"{TRAIN}.temporal_jitter=true")
    jittered = jittered["train"]
    shifts = [
        jittered(1000, rng=np.random.default_rng(s)) - plain(1000, rng=np.random.default_rng(s))
        for s in range(20)
    ]
    assert {int(x) for shift in shifts for x in shift} == {0, 1}  # [0, frame_interval=2)


def test_keep_tail_frames_from_the_command_line(compose_train) -> None:
    # 1x1x3 on 10 frames: segments of 3 whole frames never reach frame 9; float ones do.
    for keep_tail, last in ((False, 8), (True, 9)):
        got = samplers(compose_train, f"{TRAIN}.keep_tail_frames={str(keep_tail).lower()}")
        draws = np.stack([got["train"](10, rng=np.random.default_rng(s)) for s in range(300)])
        assert draws.max() == last


def test_target_fps_from_the_command_line_reads_each_videos_rate(
    compose_train, samples_dir
) -> None:
    cfg = compose_train(
        "protocol=slowonly_4x16x1",
        "data=kinetics400_video",
        f"data.data_root_val={samples_dir}",
        f"data.ann_file_val={samples_dir}/annotations/video_test_list.txt",
        "data.val_pipeline=[]",
        "data.val_sampler.target_fps=15",
    )
    dataset = instantiate(cfg.data).build_dataset("val")
    # test.mp4: 300 frames at 30 fps; at 15 fps a 4x16 clip spans 128 frames, centred.
    inds = [86, 128, 170, 213]
    with open_video(samples_dir / "test.mp4") as video:
        assert video.fps == 30.0
        np.testing.assert_array_equal(dataset.sampler(300, fps=video.fps), inds)
        assert torch.equal(dataset[0]["imgs"], video.read(np.array(inds)))


def test_target_fps_on_frame_folders_says_they_have_no_rate(compose_train, samples_dir) -> None:
    cfg = compose_train(
        "data=kinetics400",
        f"data.data_root_val={samples_dir}",
        f"data.ann_file_val={samples_dir}/annotations/rawframe_test_list.txt",
        "data.val_sampler.target_fps=30",
    )
    dataset = instantiate(cfg.data).build_dataset("val")
    with pytest.warns(UserWarning, match="frame folders have none"):
        assert dataset[0]["imgs"].shape[0] == 3
