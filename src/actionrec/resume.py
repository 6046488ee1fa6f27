"""Resuming a training run in its own directory: ``ckpt_path=last`` or ``ckpt_path=PATH``.

A run resumes from ``RUN/checkpoints/*.ckpt`` and goes on writing into ``RUN``: its
checkpoints, logger files, ``metrics.json`` and log. Two OmegaConf resolvers, used by
``conf/hydra/train.yaml`` and registered when this module is imported, point Hydra there.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from actionrec.checkpointing import completed_epochs, replace_atomically
from actionrec.checkpoints import check_checkpoint
from actionrec.sweeps import in_multirun

log = logging.getLogger(__name__)

LAST_CKPT = Path("checkpoints") / "last.ckpt"


class RunFinished(ValueError):
    """A resumed run that has already trained all its epochs: nothing is trained or rewritten."""


def run_dirs(task_dir: str | Path) -> list[Path]:
    """The run directories of a task: ``runs/*/`` and multirun jobs ``multiruns/*/*/``."""
    task_dir = Path(task_dir)
    found = [*task_dir.glob("runs/*/.hydra"), *task_dir.glob("multiruns/*/*/.hydra")]
    return sorted(path.parent for path in found)


def last_active(run_dir: Path) -> float:
    """When ``run_dir`` was last written to: its log, its config or its ``last.ckpt``."""
    paths = [*run_dir.glob("*.log"), run_dir / ".hydra" / "config.yaml", run_dir / LAST_CKPT]
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def find_last_checkpoint(task_dir: str | Path, exclude: Sequence[Path] = ()) -> Path:
    """``ckpt_path=last``: the ``last.ckpt`` of the task's most recently active run.

    Looks at ``task_dir/runs/*/`` and ``task_dir/multiruns/*/*/`` (``task_dir`` is
    ``paths.log_dir/task_name``) less ``exclude``. It never falls back to another run: when
    that run has no ``last.ckpt`` (it stopped before its first epoch ended), it says so; when
    it has trained all its epochs, :func:`check_unfinished` says that.

    Raises:
        FileNotFoundError: when there is no run, or the latest has no ``last.ckpt``.
    """
    task_dir = Path(task_dir)
    skip = {Path(p).resolve() for p in exclude}
    candidates = [d for d in run_dirs(task_dir) if d.resolve() not in skip]
    if not candidates:
        raise FileNotFoundError(
            f"ckpt_path=last: no run in {task_dir}/runs/* or {task_dir}/multiruns/*/* (the runs "
            f"of task_name={task_dir.name} under paths.log_dir); give the checkpoint's path "
            "instead: ckpt_path=RUN/checkpoints/last.ckpt"
        )
    latest = max(candidates, key=last_active)
    ckpt = latest / LAST_CKPT
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"ckpt_path=last: the latest run of task_name={task_dir.name}, {latest}, has no "
            "checkpoints/last.ckpt (it stopped before its first epoch ended), and no other run "
            "is picked in its place: start a new run, or resume another by its checkpoint: "
            "ckpt_path=RUN/checkpoints/last.ckpt"
        )
    return ckpt


def checkpoint_run_dir(ckpt_path: str | Path) -> Path | None:
    """The run directory that wrote ``ckpt_path`` (``RUN/checkpoints/x.ckpt``), else None."""
    path = Path(ckpt_path)
    return path.parent.parent if path.parent.name == "checkpoints" and path.is_file() else None


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    """The checkpoint that ``cfg.ckpt_path`` names: None, a file, or for ``last`` the run's.

    ``last`` is the checkpoint of the run this process continues (its output directory, which
    ``conf/hydra/train.yaml`` points at that run); in a multirun job, the job's own.

    Raises:
        FileNotFoundError: for a path that does not exist, or ``last`` without a checkpoint.
        CheckpointError: for a file that is not a checkpoint loadable with weights_only=True.
        RunFinished: for a checkpoint whose run has trained ``trainer.max_epochs`` epochs.
    """
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path:
        return None
    own_dir = Path(cfg.paths.output_dir)
    if ckpt_path == "last":
        path = own_dir / LAST_CKPT
        if not path.is_file() and in_multirun():
            raise FileNotFoundError(
                f"ckpt_path=last in a multirun resumes each job from its own directory, and "
                f"{own_dir} has no checkpoints/last.ckpt: run the sweep again into its directory "
                "(hydra.sweep.dir=SWEEP), or resume one job with "
                "ckpt_path=SWEEP/JOB/checkpoints/last.ckpt"
            )
        if not path.is_file():  # this process's directory is new: say why none was found
            path = find_last_checkpoint(task_dir(cfg), exclude=[own_dir])
    else:
        path = Path(ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    check_checkpoint(path, "ckpt_path")  # a file that is no checkpoint, or pickles code
    check_unfinished(path, cfg)
    return path


def check_unfinished(path: Path, cfg: DictConfig) -> None:
    """Refuse a checkpoint that has trained all of ``trainer.max_epochs``: resuming it would
    train nothing and rewrite the run's results."""
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if max_epochs is None or max_epochs < 0:
        return
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: Lightning's load reports it
        return
    done = completed_epochs(ckpt) if isinstance(ckpt, dict) else 0
    if done >= max_epochs:
        run = checkpoint_run_dir(path) or path.parent
        raise RunFinished(
            f"{path} has trained {done} epochs, all of trainer.max_epochs={max_epochs}: nothing "
            f"to resume, and {run}/metrics.json keeps the run's results. To train it further, "
            f"raise trainer.max_epochs; to evaluate it: python src/eval.py ckpt_path={path}; to "
            "resume another run: ckpt_path=RUN/checkpoints/last.ckpt"
        )


def rewind_logs(loggers: Sequence[Logger], ckpt_path: Path) -> None:
    """Forget what a killed run logged after ``ckpt_path``: the resumed run logs it again.

    Rows are logged with the number of optimizer steps taken, and everything logged before a
    checkpoint has a step below the checkpoint's ``global_step`` (its loggers were flushed when
    it was written). So CSV rows from that step on are dropped (the file is rewritten in
    place, atomically) and TensorBoard purges its events from that step (``purge_step``).
    W&B cannot rewind a run: there the repeated steps show twice.
    """
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        step = int(ckpt["global_step"])
    except Exception:  # unreadable: Lightning's load reports it
        return
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            trim_csv(Path(logger.log_dir) / "metrics.csv", step)
        elif isinstance(logger, TensorBoardLogger) and logger._experiment is None:
            logger._kwargs["purge_step"] = step  # SummaryWriter's argument, used when created


def trim_csv(path: Path, step: int) -> None:
    """Drop the rows of a CSV metrics file whose ``step`` is ``step`` or later."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    kept = [row for row in rows if not row.get("step") or int(float(row["step"])) < step]
    if fields is None or len(kept) == len(rows):
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    replace_atomically(tmp, path)
    log.info("resuming at step %d: dropped %d rows of %s", step, len(rows) - len(kept), path)


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
    the resumed run's goes to ``.hydra/resumed_{stamp}/``. A multirun job resumes with
    ``ckpt_path=last`` in its own directory (a requeued SLURM job, a sweep run again into its
    directory).
    """
    if str(OmegaConf.select(_root_, "hydra.mode")) == "RunMode.MULTIRUN":
        sweep = OmegaConf.select(_root_, "hydra.sweep")
        own = Path(str(sweep.dir)) / str(sweep.subdir) / LAST_CKPT
        resumed = _root_.get("ckpt_path") == "last" and own.is_file()
    else:
        resumed = _resumed_run_dir(_root_) is not None
    return f"{subdir}/resumed_{stamp}" if resumed else subdir


for _name, _resolver in (("run_dir", run_dir), ("config_subdir", config_subdir)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
