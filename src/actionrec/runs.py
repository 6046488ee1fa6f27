"""What src/train.py and src/eval.py share: building a run's parts from a composed config."""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from actionrec import trust
from actionrec.checkpoints import CheckpointError, read_checkpoint
from actionrec.data.dataset import MediaError
from actionrec.models.backbones import PretrainedWeightsError

log = logging.getLogger(__name__)

# Mistakes in config or data whose message already says what to fix: shown without a traceback.
USER_ERRORS = (
    InstantiationException,
    ValueError,
    FileNotFoundError,
    PretrainedWeightsError,
    CheckpointError,
    MediaError,
)


def build_module(cfg: DictConfig, **kwargs: Any) -> L.LightningModule:
    """The LightningModule of ``cfg.model`` with the optimizer and scheduler of ``cfg.optim``.

    ``optim.warmup`` (a per-step scheduler factory), ``optim.param_groups`` (a factory of
    parameter groups) and ``optim.auto_scale_lr`` (mmaction2's ``{enable, base_batch_size}``,
    scaled by ``data.videos_per_gpu``) go to the module too, and so do ``kwargs`` (src/eval.py's
    ``feature_extraction``). When ``ckpt_path`` or ``load_from`` names the weights, the network
    is built without its pretrained ones (see :func:`without_pretrained`).
    """
    weights = cfg.get("ckpt_path") or cfg.get("load_from")
    if weights:
        cfg = without_pretrained(cfg, weights)
    optim = cfg.get("optim") or {}
    auto_scale = optim.get("auto_scale_lr") or {}
    return instantiate(
        cfg.model,
        _convert_="all",  # plain lists in the checkpoint's hyperparameters, loadable weights_only
        optimizer=instantiate(optim.get("optimizer")) if optim.get("optimizer") else None,
        scheduler=instantiate(optim.get("scheduler")) if optim.get("scheduler") else None,
        warmup=instantiate(optim.get("warmup")) if optim.get("warmup") else None,
        param_groups=instantiate(optim.get("param_groups")) if optim.get("param_groups") else None,
        lr_base_batch_size=auto_scale.get("base_batch_size") if auto_scale.get("enable") else None,
        videos_per_gpu=OmegaConf.select(cfg, "data.videos_per_gpu"),
        **kwargs,
    )


# Arguments with which a network part fetches weights as it is built: ``pretrained`` (our
# ResNet, mmaction2's backbones) and ``weights`` (torchvision's model builders).
PRETRAINED_KEYS = ("pretrained", "weights")


def without_pretrained(cfg: DictConfig, weights: str) -> DictConfig:
    """A copy of ``cfg`` whose ``model.net`` parts fetch no pretrained weights.

    Every ``pretrained`` or ``weights`` argument of a ``_target_`` under ``model.net`` is set to
    null: the network is about to be overwritten from ``weights`` (``ckpt_path`` or
    ``load_from``), so what they would download is never needed.
    """
    net = OmegaConf.select(cfg, "model.net")
    if not isinstance(net, DictConfig):
        return cfg
    keys = list(_pretrained_keys(OmegaConf.to_container(net, resolve=False), "model.net"))
    if not keys:
        return cfg
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        for key in keys:
            OmegaConf.update(cfg, key, None)
    log.info("not fetching %s: the weights come from %s", ", ".join(keys), weights)
    return cfg


def _pretrained_keys(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, dict):
        if "_target_" in node:
            for key in PRETRAINED_KEYS:
                if node.get(key) is not None:
                    yield f"{path}.{key}"
        for key, value in node.items():
            yield from _pretrained_keys(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _pretrained_keys(value, f"{path}.{i}")


RESTORED_GROUPS = ("data", "model", "optim")


def restore_run_config(cfg: DictConfig, ckpt_path: str | Path, overrides: list[str]) -> DictConfig:
    """``cfg`` with the data, model and optim of the run that wrote ``ckpt_path``.

    A group the command line chose (``data=...``) is kept as composed; then every dotted
    override of the command line (``data.test_num_clips=25``) is applied again on top, so
    the user's words win over the checkpoint's. Nothing read from the file chooses code: each
    ``_target_`` it names that is still in the result must be allowed (see
    :mod:`actionrec.trust`), interpolations in it are refused, and its ``data.prepare`` step
    (which writes files) is left out.

    Raises:
        CheckpointError: for a file that is missing or not a checkpoint, and (its subclass
            UntrustedCheckpointError) for a target the file may not name.
    """
    source = f"ckpt_path={ckpt_path}"
    saved = read_run_config(ckpt_path)
    if saved is None:
        log.warning("%s holds no run config; using the composed one", ckpt_path)
        return cfg
    parsed = OverridesParser.create().parse_overrides(overrides)
    chosen = {o.key_or_group for o in parsed}
    taken = {g: saved[g] for g in RESTORED_GROUPS if g in saved and g not in chosen}
    trust.refuse_interpolations(taken, "", source)
    if isinstance(taken.get("data"), dict) and taken["data"].get("prepare") is not None:
        # A preparation step writes files where it says (the toy data's renderer): evaluating
        # needs the data in place, not a checkpoint choosing where to write.
        taken["data"] = {**taken["data"], "prepare": None}
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        for group, node in taken.items():
            cfg[group] = node
        for override in parsed:
            if override.key_or_group.split(".", 1)[0] in RESTORED_GROUPS:
                apply_override(cfg, override)
    # A target the command line set or replaced is the user's; the others came from the file.
    user_keys = set(user_target_keys(parsed))
    from_file = {
        key: target
        for key, target in trust.find_targets(taken, "")
        if key not in user_keys and OmegaConf.select(cfg, key, default=None) == target
    }
    trust.check_targets(from_file, source, trust.trusted_targets(cfg.get(trust.TRUST_KEY)))
    return cfg


def apply_override(cfg: DictConfig, override: Override) -> None:
    """Apply one dotted command-line override (``a.b=v``, ``+a.b=v``, ``~a.b``) to ``cfg``."""
    key = override.key_or_group
    if "." not in key:
        return  # a group choice (``data=...``): Hydra composed it already
    if not override.is_delete():
        OmegaConf.update(cfg, key, override.value(), force_add=True)
        return
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key)
    if isinstance(parent, DictConfig) and name in parent:
        del parent[name]


def read_run_config(ckpt_path: str | Path) -> dict | None:
    """The ``run_config`` a checkpoint carries (None when it has none)."""
    ckpt = read_checkpoint(ckpt_path, "ckpt_path")
    saved = ckpt.get("run_config") if isinstance(ckpt, dict) else None
    if saved is not None and not isinstance(saved, dict):
        raise CheckpointError(f"ckpt_path={ckpt_path}: its run_config is not a mapping")
    return saved


def user_target_keys(overrides: list[Override]) -> Iterator[str]:
    """The ``_target_`` keys that the command line's overrides set, at any depth of a value."""
    for override in overrides:
        if override.is_delete():
            continue
        key = override.key_or_group
        if key.rsplit(".", 1)[-1] == "_target_":
            yield key
        for sub, _ in trust.find_targets(override.value(), key):
            yield sub


def check_schedule(cfg: DictConfig) -> None:
    """Stop on a training schedule that would train nothing, before anything is built."""
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if cfg.get("train") and max_epochs == 0:
        raise ValueError(
            "trainer.max_epochs=0 trains nothing: set trainer.max_epochs to 1 or more "
            "(or train=false test=true to only test a checkpoint, or use src/eval.py)"
        )


def check_trainer(cfg: DictConfig, trainer: L.Trainer) -> None:
    """Stop, before any process starts, on trainer settings that cannot work on this machine."""
    # torch's SyncBatchNorm syncs only GPU tensors; on CPU processes DDP refuses to wrap the
    # model with a message that does not name the setting.
    on_cpu = isinstance(trainer.accelerator, CPUAccelerator)
    if cfg.trainer.get("sync_batchnorm") and on_cpu and trainer.world_size > 1:
        raise ValueError(
            "trainer.sync_batchnorm=true needs GPUs: torch's SyncBatchNorm does not run on CPU "
            "processes; set trainer.sync_batchnorm=false (e.g. with trainer=ddp_cpu)"
        )


def build_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    return [instantiate(c) for c in (cfg or {}).values() if c is not None and "_target_" in c]


def build_loggers(cfg: DictConfig | None) -> list[Logger]:
    return [instantiate(c) for c in (cfg or {}).values() if c is not None and "_target_" in c]


def log_config(cfg: DictConfig, loggers: list[Logger]) -> None:
    """Send the whole composed config to every logger (W&B's config tab, TensorBoard hparams)."""
    params = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(params)


def collect_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The scalar metrics the trainer last saw, as plain floats."""
    out = {}
    for key, value in trainer.callback_metrics.items():
        if torch.is_tensor(value) and value.numel() == 1:
            value = float(value)
        if isinstance(value, float) and math.isfinite(value):
            out[key] = value
    return out


def read_metrics(output_dir: str | Path) -> dict[str, float]:
    """A run's ``metrics.json``, or an empty dict when it has none."""
    path = Path(output_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# What a run writes once it runs: a failed run that has none of these leaves nothing of value.
RUN_OUTPUTS = ("metrics.json", "checkpoints", "csv/metrics.csv", "tensorboard", "wandb")


def remove_if_untrained(output_dir: str | Path) -> bool:
    """Delete the directory of a run (or evaluation) that failed before it ran: no checkpoint,
    no metrics, nothing logged; only Hydra's config and log.

    Such a directory holds nothing of value (the error was printed), and would count as the
    task's latest run for ``ckpt_path=last``. Returns whether it was removed.
    """
    run = Path(output_dir)
    if not run.is_dir():
        return False
    for name in RUN_OUTPUTS:
        path = run / name
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            return False
    shutil.rmtree(run, ignore_errors=True)
    return True


def write_metrics(metrics: dict[str, Any], output_dir: str | Path) -> Path:
    """Write ``metrics.json``: a flat JSON object of the run's final metrics."""
    path = Path(output_dir) / "metrics.json"
    path.write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")
    return path
