"""Resuming a training run in its own directory: ``ckpt_path=last`` or ``ckpt_path=PATH``.

A run resumes from ``RUN/checkpoints/*.ckpt`` and goes on writing into ``RUN``: its
checkpoints, logger files, ``metrics.json`` and log. Two OmegaConf resolvers, used by
``conf/hydra/train.yaml`` and registered when this module is imported, point Hydra there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from actionrec.sweeps import in_multirun

log = logging.getLogger(__name__)


def find_last_checkpoint(task_dir: str | Path) -> Path:
    """The newest ``checkpoints/last.ckpt`` of the runs and multirun jobs of a task.

    Looks in ``task_dir/runs/*/`` and ``task_dir/multiruns/*/*/`` (``task_dir`` is
    ``paths.log_dir/task_name``) and takes the most recently written.

    Raises:
        FileNotFoundError: when there is none, naming where it looked.
    """
    task_dir = Path(task_dir)
    found = [
        *task_dir.glob("runs/*/checkpoints/last.ckpt"),
        *task_dir.glob("multiruns/*/*/checkpoints/last.ckpt"),
    ]
    if not found:
        raise FileNotFoundError(
            f"ckpt_path=last: no checkpoints/last.ckpt in {task_dir}/runs/* or "
            f"{task_dir}/multiruns/*/* (the runs of this task_name under paths.log_dir); "
            "give the checkpoint's path instead: ckpt_path=RUN/checkpoints/last.ckpt"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def checkpoint_run_dir(ckpt_path: str | Path) -> Path | None:
    """The run directory that wrote ``ckpt_path`` (``RUN/checkpoints/x.ckpt``), else None."""
    path = Path(ckpt_path)
    return path.parent.parent if path.parent.name == "checkpoints" and path.is_file() else None


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    """The checkpoint that ``cfg.ckpt_path`` names: None, a file, or for ``last`` the run's.

    Raises:
        FileNotFoundError: for a path that does not exist, or ``last`` without a checkpoint.
        ValueError: for ``last`` in a multirun.
    """
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        if in_multirun():
            raise ValueError(
                "ckpt_path=last names one run, not one per job of a multirun: resume a job "
                "with ckpt_path=SWEEP/JOB/checkpoints/last.ckpt (without -m)"
            )
        own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        return own if own.is_file() else find_last_checkpoint(task_dir(cfg))
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    return path


def config_changes(
    cfg: DictConfig, ckpt_path: str | Path, groups: Sequence[str] = ("data", "model", "optim")
) -> list[str]:
    """``key: saved -> now`` for each value of ``groups`` that differs from the checkpoint's run.

    Resuming restores the weights and the training state, not the config: a run resumed without
    its overrides would silently go on with other data or another optimizer.
    """
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # Lightning reports an unreadable checkpoint when it loads it
        return []
    saved = ckpt.get("run_config") if isinstance(ckpt, dict) else None
    if not saved:
        return []
    now = OmegaConf.to_container(cfg, resolve=True)
    old = dict(_flatten({g: saved.get(g) for g in groups}))
    new = dict(_flatten({g: now.get(g) for g in groups}))
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def warn_config_changes(cfg: DictConfig, ckpt_path: Path | None) -> None:
    """Log which data/model/optim values of a resumed run differ from the run it continues."""
    changes = config_changes(cfg, ckpt_path) if ckpt_path is not None else []
    if changes:
        shown = [c if len(c) < 120 else c[:117] + "..." for c in changes[:5]]
        more = f" (and {len(changes) - 5} more)" if len(changes) > 5 else ""
        log.warning(
            "resuming %s with a config that differs from its run's in %d value(s): %s%s. "
            "Repeat the run's overrides (in its .hydra/overrides.yaml) to continue it unchanged.",
            ckpt_path,
            len(changes),
            "; ".join(shown),
            more,
        )


def task_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.log_dir) / cfg.task_name


def _resumed_run_dir(root: DictConfig) -> Path | None:
    """The directory a training run that resumes continues in; None for a new run."""
    ckpt_path = root.get("ckpt_path") if root.get("train") else None
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        try:
            return checkpoint_run_dir(find_last_checkpoint(task_dir(root)))
        except FileNotFoundError:
            return None  # src/train.py stops with the message, in a new run's log
    return checkpoint_run_dir(ckpt_path)


def run_dir(new_dir: str, *, _root_: DictConfig) -> str:
    """``hydra.run.dir``: ``new_dir``, or the directory of the run that ``ckpt_path`` resumes.

    A checkpoint outside a ``RUN/checkpoints/`` folder starts a new directory.
    """
    resumed = _resumed_run_dir(_root_)
    return str(resumed) if resumed is not None else new_dir


def config_subdir(subdir: str, stamp: str, *, _root_: DictConfig) -> str:
    """``hydra.output_subdir``: a resumed run saves its config beside the original's.

    ``.hydra/`` keeps the config the run started with (a sweep's table reads its overrides);
    the resumed run's goes to ``.hydra/resumed_{stamp}/``.
    """
    mode = OmegaConf.select(_root_, "hydra.mode")
    if str(mode) == "RunMode.MULTIRUN" or _resumed_run_dir(_root_) is None:
        return subdir
    return f"{subdir}/resumed_{stamp}"


for _name, _resolver in (("run_dir", run_dir), ("config_subdir", config_subdir)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
