"""Every YAML in conf/ composes and instantiates; the recipe carries mmaction2's values."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tests.conftest import CONF_DIR

from actionrec import runs

# Group options that need more than composing (a second config group, a device).
NEEDS = {
    "trainer/gpu.yaml": "a CUDA device",
}
OFFLINE = "model.net.backbone.pretrained=null"
# Experiments whose network has no pretrained weights to switch off (trained from scratch).
FROM_SCRATCH = {
    "mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb",
    "tv_r2plus1d_18_references-8xb24-16x1x1-45e_kinetics400",  # backbone.weights: null already
}


def group_options() -> list[str]:
    options = []
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        rel = path.relative_to(CONF_DIR)
        if len(rel.parts) == 2 and rel.parts[0] not in ("hydra", "paths", "schedule"):
            options.append(rel.as_posix())
    return options


def overrides_for(option: str) -> list[str]:
    group, name = option.removesuffix(".yaml").split("/")
    extra = [f"{group}={name}"]
    if (group == "experiment" and name not in FROM_SCRATCH) or name.startswith(
        ("tsn_r", "tsm_r", "i3d_r", "slowonly_r")
    ):
        extra.append(OFFLINE)
    return extra


@pytest.mark.parametrize("option", group_options())
def test_every_group_option_composes_and_instantiates(option: str, compose_train, tmp_path) -> None:
    if option in NEEDS:
        pytest.skip(f"{option} needs {NEEDS[option]}")
    cfg = compose_train(*overrides_for(option))
    OmegaConf.resolve(cfg)
    datamodule = instantiate(cfg.data)
    module = runs.build_module(cfg)
    callbacks = runs.build_callbacks(cfg.get("callbacks"))
    loggers = runs.build_loggers(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    assert datamodule.num_classes == module.net.num_classes == cfg.data.num_classes
    assert isinstance(trainer, L.Trainer)


def test_eval_config_composes(tmp_path) -> None:
    from tests.conftest import compose_config

    cfg = compose_config("eval", ["ckpt_path=x.ckpt"], tmp_path)
    assert cfg.ckpt_path == "x.ckpt"
    assert runs.build_module(cfg) is not None


def test_default_is_the_toy_and_recipe_pair_is_mmaction2s(compose_train) -> None:
    toy = compose_train()
    assert toy.data.num_classes == 6 and "toy" in toy.data.ann_file_train
    recipe = compose_train("model=tsn_r50", "data=kinetics400")
    assert recipe.optim.optimizer.lr == 0.01
    assert recipe.optim.optimizer.momentum == 0.9
    assert recipe.optim.optimizer.weight_decay == 1e-4
    assert list(recipe.optim.scheduler.milestones) == [40, 80]
    assert recipe.trainer.max_epochs == 100
    assert recipe.trainer.gradient_clip_val == 40
    assert recipe.trainer.check_val_every_n_epoch == 5
    assert recipe.callbacks.checkpoints.every_n_epochs == 5
    assert recipe.data.videos_per_gpu == 32 and recipe.data.workers_per_gpu == 2
    assert recipe.data.val_videos_per_gpu == 1 and recipe.data.test_videos_per_gpu == 2
    assert recipe.model.net.head.dropout_ratio == 0.4
    assert recipe.model.net.backbone.pretrained == "IMAGENET1K_V1"


def test_experiment_equals_the_pair_but_for_its_name_and_topk(compose_train) -> None:
    pair = compose_train("model=tsn_r50", "data=kinetics400")
    exp = compose_train("experiment=tsn_r50_1x1x3_100e_kinetics400_rgb")
    assert list(exp.model.topk) == [1, 3]
    for key in ("data", "optim", "trainer"):
        assert OmegaConf.to_container(exp[key]) == OmegaConf.to_container(pair[key]), key


def test_recipe_yaml_lines_say_where_they_come_from() -> None:
    text = (CONF_DIR / "data" / "kinetics400.yaml").read_text()
    text += (CONF_DIR / "protocol" / "tsn_1x1x3.yaml").read_text()
    commented = [line for line in text.splitlines() if "# mmaction2" in line]
    assert len(commented) >= 20


def test_data_paths_can_be_overridden(compose_train, tmp_path: Path) -> None:
    cfg = compose_train(
        "data=kinetics400",
        f"data.data_root={tmp_path}",
        "data.ann_file_train=/x/train.txt",
        "data.num_clips=8",
        "data.videos_per_gpu=4",
    )
    assert cfg.data.data_root == str(tmp_path)
    assert cfg.data.ann_file_train == "/x/train.txt"
    assert cfg.data.num_clips == 8 and cfg.data.videos_per_gpu == 4


@pytest.mark.parametrize("name", ["ucf101", "hmdb51", "sthv2"])
def test_one_data_root_moves_train_and_val(compose_train, name: str) -> None:
    cfg = compose_train(f"data={name}", "data.data_root=/fast/disk/frames")
    assert cfg.data.data_root_val == "/fast/disk/frames"


def test_split_selects_the_official_list(compose_train) -> None:
    cfg = compose_train("data=ucf101", "data.split=3")
    assert cfg.data.ann_file_train.endswith("ucf101_train_split_3_rawframes.txt")


@pytest.mark.parametrize(
    ("overrides", "start_index"),
    [
        (["data=kinetics400"], 1),  # frame folders are named from 1
        (["data=kinetics400", "data.dataset_type=video"], 0),  # a video's frames count from 0
        (["data=kinetics400_video", "data.dataset_type=rawframes"], 1),
        (["data=kinetics400", "data.dataset_type=video", "data.start_index=1"], 1),  # explicit
        (["data=ucf101"], 1),
        (["data=toy"], 0),
    ],
)
def test_start_index_follows_the_format(compose_train, overrides, start_index) -> None:
    datamodule = instantiate(compose_train(*overrides).data)
    assert datamodule.media.start_index == start_index


def test_switching_a_recipe_to_videos_reads_the_frames_mmaction2_reads(
    compose_train, samples_dir
) -> None:
    """mmaction2's VideoDataset counts from 0: the val clip of test.mp4 through the recipe
    switched to videos decodes exactly the frames SampleFrames picks from 0."""
    import numpy as np

    from actionrec.data.decoding import open_video

    cfg = compose_train(
        "data=kinetics400",
        "data.dataset_type=video",
        f"data.data_root_val={samples_dir}",
        f"data.ann_file_val={samples_dir}/annotations/video_test_list.txt",
        "data.val_pipeline=[]",
    )
    datamodule = instantiate(cfg.data)
    dataset = datamodule.build_dataset("val")
    with open_video(samples_dir / "test.mp4") as video:
        inds = dataset.sampler(video.num_frames, 0, np.random.default_rng(0))
        expected = video.read(inds)
    assert datamodule.media.start_index == 0
    assert torch.equal(dataset[0]["imgs"], expected)


PROTOCOL_KEYS = {
    "clip_len", "frame_interval", "num_clips", "test_num_clips", "train_pipeline", "val_pipeline",
    "test_pipeline", "lazy", "videos_per_gpu", "val_videos_per_gpu", "test_videos_per_gpu",
}  # fmt: skip


@pytest.mark.parametrize("path", sorted((CONF_DIR / "data").glob("*.yaml")), ids=lambda p: p.stem)
def test_a_data_file_holds_dataset_facts_only(path: Path) -> None:
    # Sampling, pipelines and batches belong to the model's protocol: a new model family
    # changes nothing here.
    assert not PROTOCOL_KEYS & set(OmegaConf.load(path)), path.name


@pytest.mark.parametrize("data", ["toy", "kinetics400", "ucf101", "sthv2"])
def test_the_model_picks_the_protocol_whatever_the_data(compose_train, data) -> None:
    toy = compose_train(f"data={data}")
    assert toy.data.test_pipeline[-1].crop_size == 64 and toy.data.test_num_clips == 5
    tsn = compose_train("model=tsn_r50", f"data={data}")
    assert tsn.data.test_pipeline[-1]._target_.endswith("TenCrop")
    assert tsn.data.test_num_clips == 25 and tsn.model.frames_per_view is None
    chosen = compose_train("model=tsn_r50", f"data={data}", "protocol=tsn_1x1x8_sthv2")
    assert chosen.data.num_clips == 8  # the command line wins over the model's choice


@pytest.mark.parametrize(
    ("experiment", "data", "values"),
    [
        (
            "tsn_r50_1x1x3_75e_ucf101_rgb",
            "ucf101",
            {"num_clips": 3, "test_num_clips": 25, "test_crop": ("ThreeCrop", 256), "lr": 0.00128},
        ),
        (
            "tsn_r50_1x1x8_50e_hmdb51_imagenet_rgb",
            "hmdb51",
            {"num_clips": 8, "test_num_clips": 8, "test_crop": ("CenterCrop", 256), "lr": 0.025},
        ),
        (
            "tsn_r50_1x1x8_50e_sthv2_rgb",
            "sthv2",
            {"num_clips": 8, "test_num_clips": 8, "test_crop": ("ThreeCrop", 256), "lr": 0.02},
        ),
    ],
)
def test_dataset_recipes_are_experiments(compose_train, experiment, data, values) -> None:
    cfg = compose_train(f"experiment={experiment}")
    assert cfg.task_name == experiment and data in cfg.data.ann_file_train
    assert cfg.data.num_clips == values["num_clips"]
    assert cfg.data.test_num_clips == values["test_num_clips"]
    crop = cfg.data.test_pipeline[-1]
    assert (crop._target_.rsplit(".", 1)[1], crop.crop_size) == values["test_crop"]
    assert cfg.optim.lr == values["lr"]
    flips = [t for t in cfg.data.train_pipeline if t._target_.endswith("Flip")]
    assert (not flips) == (data == "sthv2")  # mirroring changes left/right classes there
