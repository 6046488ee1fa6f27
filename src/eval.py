"""Evaluate a checkpoint on the test list: `python src/eval.py ckpt_path=RUN/checkpoints/best.ckpt`.

The data, model and optim configs come from the checkpoint (our checkpoints carry the run's
config); command-line overrides such as `data.test_num_clips=25` still apply on top. Writes
metrics.json and the confusion matrix (CSV, PNG) into the run directory of this evaluation;
`out=scores.pkl` (or .json, .npz) also writes every video's class scores in annotation order, and
with `feature_extraction=true` their pooled features instead.
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

from actionrec import reports, runs
from actionrec.checkpoints import load_every_weight, load_weights
from actionrec.console import FILE_ONLY

log = logging.getLogger("actionrec.eval")


def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Test the checkpoint (or ``load_from`` weights) with the test pipeline; returns metrics.

    ``overrides`` are the command line's, re-applied over the config restored from the
    checkpoint.
    """
    check_weights_given(cfg)
    out = reports.results_path(cfg.out) if cfg.get("out") else None  # a bad suffix fails now
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("ckpt_path"):
        cfg = runs.restore_run_config(cfg, cfg.ckpt_path, list(overrides))
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")  # a missing list or bad line stops here, before any weights load
    model = runs.build_module(cfg, feature_extraction=bool(cfg.get("feature_extraction")))
    # The network's weights are all we need from the file; loading them here keeps Lightning
    # from reading it again (with its notices about callbacks that an evaluation has none of).
    if cfg.get("ckpt_path"):
        load_every_weight(model.net, cfg.ckpt_path, "ckpt_path")
    else:
        load_weights(model.net, cfg.load_from)
    callbacks = runs.build_callbacks(cfg.get("callbacks"))
    loggers = runs.build_loggers(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    trainer.test(model, datamodule=datamodule)
    metrics = runs.collect_metrics(trainer)
    results = model.test_results or {}
    if "index" in results:
        metrics["test/num_videos"] = float(len(results["index"]))
    if out and trainer.is_global_zero:
        path = reports.save_results(out, per_video_results(results, datamodule))
        log.info("per-video results: %s", path)
    return metrics


def check_weights_given(cfg: DictConfig) -> None:
    """Exactly one of ``ckpt_path`` and ``load_from`` names the weights to evaluate."""
    if not cfg.get("ckpt_path") and not cfg.get("load_from"):
        raise ValueError(
            "nothing to evaluate: give ckpt_path=RUN/checkpoints/best.ckpt (a checkpoint, with "
            "its run's data and model) or load_from=WEIGHTS (with data= and model= named here)"
        )
    if cfg.get("ckpt_path") and cfg.get("load_from"):
        raise ValueError(
            f"ckpt_path={cfg.ckpt_path} and load_from={cfg.load_from} both name the weights "
            "to evaluate: give one of them"
        )


def per_video_results(results: dict, datamodule: L.LightningDataModule) -> dict:
    """The test's outputs with each video's path and the class names, for ``out=FILE``."""
    results = dict(results)
    dataset = getattr(datamodule, "datasets", {}).get("test")
    if dataset is not None and "index" in results:
        results["video"] = [dataset.records[i].path for i in results["index"].tolist()]
    names = getattr(datamodule, "class_names", None)
    if names:
        results["class_names"] = names
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        metrics = evaluate(cfg, HydraConfig.get().overrides.task)
    except runs.USER_ERRORS as err:
        log.error("%s", err, extra=FILE_ONLY)  # the console gets the one line below
        runs.remove_if_untrained(cfg.paths.output_dir)  # an evaluation that wrote nothing
        sys.exit(f"error: {err}")
    if L.fabric.utilities.rank_zero.rank_zero_only.rank == 0:
        runs.write_metrics(metrics, cfg.paths.output_dir)
        print(f"Run directory: {cfg.paths.output_dir}")


if __name__ == "__main__":
    main()
