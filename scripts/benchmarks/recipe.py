"""Our pipelines as the recipe configures them: conf/data's facts and the TSN 1x1x3 protocol
(conf/protocol/tsn_1x1x3.yaml), composed as a user gets them, pointed at a media set."""

from __future__ import annotations

import functools
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from actionrec.data.datamodule import VideoDataModule

from .media import ROOT, MediaSet

SPLITS = ("train", "val", "test")
PROTOCOL = "tsn_1x1x3"  # the sampling and pipelines mmaction2's baseline runs too


def build_datamodule(media: MediaSet, workdir: Path, **overrides) -> VideoDataModule:
    """The data config the recipe uses, pointed at this set through a generated list."""
    data = "kinetics400_video" if media.kind == "video" else "kinetics400"
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={data}", f"protocol={PROTOCOL}"]).data
    lines = [
        f"{item['path']} 0" if media.kind == "video" else f"{item['path']} {item['total_frames']} 0"
        for item in media.items
    ]
    ann = workdir / f"{media.name}_list.txt"
    ann.write_text("\n".join(lines) + "\n")
    paths = {f"ann_file_{split}": str(ann) for split in SPLITS}
    return instantiate(cfg, data_root="", data_root_val="", **paths, **overrides)


@functools.cache
def our_decoder() -> str:
    """The video backend the recipe's data config picks (``data.decoder``)."""
    return OmegaConf.load(ROOT / "conf" / "data" / "kinetics400_video.yaml").decoder
