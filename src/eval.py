"""Evaluate a checkpoint on the test list: `python src/eval.py ckpt_path=RUN/checkpoints/best.ckpt`.

The data, model and optim configs come from the checkpoint (our checkpoints carry the run's
config); command-line overrides such as `data.test_num_clips=25` still apply on top. Writes
metrics.json into the run directory of this evaluation.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from actionrec import runs
from actionrec.checkpoints import load_weights

log = logging.getLogger("actionrec.eval")


def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Test the checkpoint (or ``load_from`` weights) with the test pipeline; returns metrics.

    ``overrides`` are the command line's, re-applied over the config restored from the
    checkpoint.
    """
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("ckpt_path"):
        cfg = runs.restore_run_config(cfg, cfg.ckpt_path, list(overrides))
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model = runs.build_module(cfg)
    if cfg.get("load_from"):
        load_weights(model.net, cfg.load_from)
    loggers = runs.build_loggers(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False)
    trainer.test(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    return runs.collect_metrics(trainer)


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        metrics = evaluate(cfg, HydraConfig.get().overrides.task)
    except runs.USER_ERRORS as err:
        log.error("%s", err)
        sys.exit(f"error: {err}")
    if L.fabric.utilities.rank_zero.rank_zero_only.rank == 0:
        runs.write_metrics(metrics, cfg.paths.output_dir)
        print(f"Run directory: {cfg.paths.output_dir}")


if __name__ == "__main__":
    main()
