"""Classify one video with a trained checkpoint, under the run's test protocol.

Usage:
    python scripts/predict.py VIDEO ckpt_path=RUN/checkpoints/best.ckpt [labels=FILE] [topk=5]
        [Hydra overrides, e.g. data.test_num_clips=10 model.average_clips=prob]

VIDEO is a video file (or a rawframes folder). The model, sampler, test crops and view averaging
come from the checkpoint's run config; overrides apply on top, as in src/eval.py. Prints the
top-k classes, one per line: ``probability  name``. Names come from ``labels=FILE`` (one name
per line, line i names class i), else from the run's ``classes.txt`` (the toy dataset's), else
``class i``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from actionrec import predict, runs
from actionrec.data.annotations import read_label_map

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ("labels", "topk", "video")
ERRORS = (*runs.USER_ERRORS, HydraException, OmegaConfBaseException)
log = logging.getLogger("actionrec.predict")


def run(argv: list[str]) -> list[tuple[str, float]]:
    """Parse the command line, score the video, return the top-k ``(name, probability)``."""
    positionals, options, overrides = predict.split_cli(argv, OPTIONS)
    videos = positionals + ([options["video"]] if "video" in options else [])
    if len(videos) != 1:
        raise ValueError(f"give exactly one VIDEO (got {len(videos)}); usage: {USAGE}")
    video = Path(videos[0])
    if not video.exists():
        raise FileNotFoundError(f"video not found: {video}")
    topk = int(options.get("topk", 5))
    if topk < 1:
        raise ValueError(f"topk={topk} must be >= 1")

    cfg = predict.compose_eval_config(ROOT / "conf", overrides)
    module = predict.load_recognizer(cfg)
    datamodule = predict.build_datamodule(cfg)
    num_classes = module.net.num_classes
    labels = options.get("labels") or predict.default_label_map(cfg.data)
    names = read_label_map(labels, num_classes) if labels else None
    probs = predict.predict_video(module, datamodule, video)
    return predict.top_classes(probs, names, topk)


USAGE = "python scripts/predict.py VIDEO ckpt_path=PATH [labels=FILE] [topk=5] [overrides]"


def main() -> None:
    for name, prob in predict.run_cli(__doc__, run, ERRORS):
        print(f"{prob:.4f}  {name}")


if __name__ == "__main__":
    main()
