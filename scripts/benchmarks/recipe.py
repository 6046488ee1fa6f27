"""Our pipelines as the recipe configures them: conf/data's YAMLs, pointed at a media set."""

from __future__ import annotations

import functools
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from actionrec.data.datamodule import VideoDataModule

from .media import ROOT, MediaSet

SPLITS = ("train", "val", "test")


def build_datamodule(media: MediaSet, workdir: Path, **overrides) -> VideoDataModule:
    """The data config the recipe uses, pointed at this set through a generated list."""
    conf = "kinetics400_video.yaml" if media.kind == "video" else "kinetics400.yaml"
    cfg = OmegaConf.load(ROOT / "conf" / "data" / conf)
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
