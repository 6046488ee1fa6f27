"""Train a video recognizer: `python src/train.py [group=option ...] [key=value ...]`.

With no arguments it trains the toy default; `model=tsn_r50 data=kinetics400` is mmaction2's
TSN recipe. See conf/train.yaml for what can be set.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from actionrec import resume, runs
from actionrec.callbacks import SaveRunConfig
from actionrec.checkpoints import load_every_weight, load_weights
from actionrec.console import FILE_ONLY
from actionrec.loggers import finish_wandb
from actionrec.sweeps import in_multirun

log = logging.getLogger("actionrec.train")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and optionally test) the configured model; returns the final metrics."""
    runs.check_schedule(cfg)
    L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resume.resume_checkpoint(cfg)  # a missing, foreign or finished one stops here
    resume.warn_config_changes(cfg, ckpt_path)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    # Checkpoints carry the resolved config: eval, predict and export rebuild the run from it.
    run_config = SaveRunConfig(OmegaConf.to_container(cfg, resolve=True))
    callbacks = [*runs.build_callbacks(cfg.get("callbacks")), run_config]
    loggers = runs.build_loggers(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    runs.check_trainer(cfg, trainer)
    # Read the annotation lists now, knowing the devices and whether validation is on: a
    # missing file, a bad line or a batch too large stops the run before any weights are built
    # or loaded (Lightning's own later call reuses the parsed lists).
    datamodule.trainer = trainer
    datamodule.prepare_data()
    datamodule.setup("fit" if cfg.get("train") else "test")
    model = runs.build_module(cfg)
    if cfg.get("load_from"):
        load_weights(model.net, cfg.load_from)
    if ckpt_path is not None:
        resume.rewind_logs(loggers, ckpt_path)
    runs.log_config(cfg, loggers)

    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = runs.collect_metrics(trainer)
    best = trainer.checkpoint_callback
    if best is not None and best.best_model_score is not None:
        metrics["val/top1_best"] = float(best.best_model_score)

    if cfg.get("test"):
        if best is not None and best.best_model_path:  # the best weights, else the last
            load_every_weight(model.net, best.best_model_path, "the run's best.ckpt")
        trainer.test(model, datamodule=datamodule)
        metrics.update(runs.collect_metrics(trainer))
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    output_dir = cfg.paths.output_dir
    try:
        metrics = train(cfg)
    except resume.RunFinished as err:  # nothing trained, nothing rewritten
        finish_wandb(exit_code=0)
        if not in_multirun():
            sys.exit(f"error: {err}")
        log.warning("%s", err)  # a sweep run again into its directory: this job is done
        return runs.read_metrics(output_dir).get("val/top1")
    except BaseException as err:  # Ctrl-C and errors alike: the W&B run ends as failed
        finish_wandb(exit_code=1)
        if isinstance(err, runs.USER_ERRORS):
            log.error("%s", err, extra=FILE_ONLY)
            if not in_multirun():  # a multirun lists the job as failed and goes on
                runs.remove_if_untrained(output_dir)
                sys.exit(f"error: {err}")
        raise
    finish_wandb(exit_code=0)
    if L.fabric.utilities.rank_zero.rank_zero_only.rank == 0:
        path = runs.write_metrics(metrics, output_dir)
        log.info("run directory: %s (metrics in %s)", output_dir, path.name, extra=FILE_ONLY)
        print(f"Run directory: {output_dir}")
    # The value an Optuna sweep maximises.
    return metrics.get("val/top1")


if __name__ == "__main__":
    main()
