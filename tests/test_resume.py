"""Resuming: `ckpt_path=last` continues the run in its directory and ends where it would have."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from tests.conftest import compose_config, load_entry_point, toy_overrides
from tests.test_train import run_script

from actionrec import resume

# Two epochs of two batches, with workers: data randomness must not live in worker state.
TWO_EPOCHS = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "data.workers_per_gpu=1",
    "data.isolate_decoder=false",
]


class StopAfterFirstEpoch(L.Callback):
    """Ends the fit after its first epoch, as if the run were killed there (the config, and so
    the schedule, stays the one of the whole run)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt["state_dict"]


def test_a_resumed_run_ends_as_the_uninterrupted_one(toy_root, tmp_path) -> None:
    train = load_entry_point("train")
    overrides = [*toy_overrides(toy_root), *TWO_EPOCHS]
    whole = compose_config("train", overrides, tmp_path / "whole")
    expected = json.loads(json.dumps(train.train(whole)))  # as metrics.json holds them

    # The same run, stopped after its first epoch (as if killed), under a log_dir of its own.
    logs = tmp_path / "logs"
    first_dir = logs / "train" / "runs" / "first"
    first = compose_config(
        "train", [*overrides, f"+callbacks.stop._target_={__name__}.StopAfterFirstEpoch"], first_dir
    )
    with open_dict(first):
        first.paths.log_dir = str(logs)
    train.train(first)
    assert not torch.equal(
        *(final_state(d)["net.head.fc_cls.weight"] for d in (first_dir, tmp_path / "whole"))
    )

    result = run_script(["src/train.py", *overrides, "ckpt_path=last", f"paths.log_dir={logs}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Run directory: {first_dir}" in result.stdout  # it went on in the run's directory
    resumed = final_state(first_dir)
    for key, value in final_state(tmp_path / "whole").items():
        assert torch.equal(resumed[key], value), key
    assert json.loads((first_dir / "metrics.json").read_text()) == expected
    assert "differs from its run's" not in result.stdout + result.stderr
    # Resuming without the run's overrides is named, value by value.
    other = compose_config("train", [*overrides, "optim.lr=0.02"], first_dir)
    changes = resume.config_changes(other, first_dir / "checkpoints" / "last.ckpt")
    assert changes == ["optim.lr: 0.003 -> 0.02", "optim.optimizer.lr: 0.003 -> 0.02"]
    # The run's own config stays in .hydra/; the resumed run's goes beside it.
    assert not (first_dir / ".hydra" / "config.yaml").exists()  # composed in-process above
    (resumed_cfg,) = (first_dir / ".hydra").glob("resumed_*/config.yaml")
    assert OmegaConf.load(resumed_cfg).ckpt_path == "last"


def test_last_is_the_newest_checkpoint_of_the_task(tmp_path) -> None:
    task = tmp_path / "train"
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last: no checkpoints/last\.ckpt in"):
        resume.find_last_checkpoint(task)
    older = task / "runs" / "a" / "checkpoints" / "last.ckpt"
    newer = task / "multiruns" / "s" / "3" / "checkpoints" / "last.ckpt"
    for i, path in enumerate([older, newer]):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (time.time() + i, time.time() + i))
    assert resume.find_last_checkpoint(task) == newer
    assert resume.checkpoint_run_dir(newer) == newer.parents[1]
    assert resume.checkpoint_run_dir(tmp_path / "elsewhere.ckpt") is None


def test_the_run_directory_follows_the_checkpoint(tmp_path) -> None:
    ckpt = tmp_path / "logs" / "train" / "runs" / "old" / "checkpoints" / "epoch_3.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")

    def dirs(**top) -> tuple[str, str]:
        cfg = OmegaConf.create(
            {
                "task_name": "train",
                "paths": {"log_dir": str(tmp_path / "logs")},
                **top,
                "hydra": {
                    "run": {"dir": "${run_dir:NEW}"},
                    "output_subdir": "${config_subdir:.hydra,STAMP}",
                },
            }
        )
        return cfg.hydra.run.dir, cfg.hydra.output_subdir

    assert dirs(train=True, ckpt_path=None) == ("NEW", ".hydra")
    assert dirs(train=True, ckpt_path=str(ckpt)) == (str(ckpt.parents[1]), ".hydra/resumed_STAMP")
    assert dirs(train=True, ckpt_path="last") == ("NEW", ".hydra")  # no last.ckpt: train stops
    assert dirs(ckpt_path=str(ckpt)) == ("NEW", ".hydra")  # evaluation: a new directory


def test_resuming_from_nothing_says_where_it_looked(toy_root, tmp_path) -> None:
    cfg = compose_config("train", [*toy_overrides(toy_root), "ckpt_path=last"], tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "logs" / "train" / "runs")):
        load_entry_point("train").train(cfg)
