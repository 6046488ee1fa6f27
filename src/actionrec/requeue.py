"""Preempted and timed-out SLURM jobs: requeued, they resume from their own ``last.ckpt``.

submitit (``hydra/launcher=slurm``) asks SLURM for a signal before a job is preempted or hits
its time limit, then calls the launcher's ``checkpoint`` hook for what to run when the job is
requeued. The launchers of ``hydra_plugins.actionrec_launchers`` answer with the job's own
overrides plus ``ckpt_path=last``, which in a multirun job means the job's own directory
(:func:`actionrec.resume.resume_checkpoint`): the requeued job continues its run exactly where
its last completed epoch left it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from actionrec.resume import LAST_CKPT

log = logging.getLogger(__name__)


def requeue_overrides(overrides: Sequence[str], job_dir: str | Path) -> list[str]:
    """The overrides a requeued job runs with: the job's own, resuming from ``job_dir``'s
    ``last.ckpt`` when it has one (a job stopped within its first epoch starts over)."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "ckpt_path"]
    if not (Path(job_dir) / LAST_CKPT).is_file():
        return list(overrides)
    return [*kept, "ckpt_path=last"]


def current_job_dir() -> Path:
    """The output directory of the Hydra job running in this process."""
    return Path(HydraConfig.get().runtime.output_dir)


def checkpoint_args(args: tuple) -> tuple:
    """The arguments of a submitit launcher's job call, with :func:`requeue_overrides` applied.

    ``args`` are ``(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)``, as
    hydra-submitit-launcher passes them to its launcher's ``__call__``.
    """
    overrides, *rest = args
    job_dir = current_job_dir()
    new = requeue_overrides(overrides, job_dir)
    log.warning("requeueing job %s with %s", job_dir, " ".join(new) or "its overrides")
    return (new, *rest)
