"""Loggers: a CSV file that a resumed run continues, and W&B decided at run time."""

from __future__ import annotations

import csv
import logging
import netrc
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from actionrec.sweeps import in_multirun

log = logging.getLogger(__name__)


def wandb_has_account() -> bool:
    """Whether W&B can reach an account: an API key in the environment or from `wandb login`."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc(Path.home() / ".netrc")
    except (OSError, netrc.NetrcParseError):
        return False
    return any(host.startswith("api.wandb") for host in auth.hosts)


# The W&B run of a run directory, so that resuming the run (ckpt_path) continues it.
RUN_ID_FILE = "wandb_run_id.txt"


def wandb_logger(offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """A :class:`WandbLogger` that runs offline, and says how to sync, when there is no account.

    In a multirun, each job is a W&B run named by its overrides (``hydra.job.override_dirname``)
    in a group named after the sweep directory, unless ``name`` / ``group`` are given. The run's
    id is kept in ``save_dir/wandb_run_id.txt``: a resumed run, which writes into the same
    directory, continues the same W&B run.

    Args:
        offline: force online/offline; None decides by :func:`wandb_has_account` and
            ``WANDB_MODE``.
        kwargs: passed to :class:`WandbLogger` (``project``, ``name``, ``group``, ``id`` ...).
    """
    if in_multirun():
        hydra = HydraConfig.get()
        kwargs["name"] = kwargs.get("name") or hydra.job.override_dirname or f"job {hydra.job.num}"
        kwargs["group"] = kwargs.get("group") or Path(hydra.sweep.dir).name
    if kwargs.get("id") is None and rank_zero_only.rank == 0:
        # WandbLogger passes resume="allow": a known id continues that run.
        kwargs["id"], resumed = run_id(Path(kwargs.get("save_dir") or "."))
        if resumed:
            log.info("continuing W&B run %s", kwargs["id"])
    if offline is None:
        offline = os.environ.get("WANDB_MODE") in ("offline", "dryrun") or not wandb_has_account()
    if offline:
        log.info(
            "W&B runs offline (no account configured); upload later with "
            "`wandb sync %s/wandb/offline-run-*`",
            kwargs.get("save_dir", "."),
        )
    return WandbLogger(offline=offline, **kwargs)


def run_id(run_dir: Path) -> tuple[str, bool]:
    """The W&B run id of ``run_dir`` and whether it had one; a new id is saved there."""
    path = run_dir / RUN_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip(), True
    new = secrets.token_hex(6)  # W&B's ids are short [a-z0-9] strings too
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(new + "\n")
    return new, False


def finish_wandb(exit_code: int) -> None:
    """End this process's W&B run, if any, as succeeded (0) or failed (non-zero).

    Lightning leaves the run open when training ends; the next job of a multirun would log
    into it, and a failed run would show as finished.
    """
    wandb = sys.modules.get("wandb")  # never imported: no run to finish
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


class ContinuedCSVLogger(CSVLogger):
    """Lightning's CSV logger, continuing the ``metrics.csv`` of a resumed run.

    Lightning's deletes an existing ``metrics.csv`` when it starts writing, so a run resumed
    in its own directory lost the metrics of its first epochs. Here the file is kept and new
    rows are appended under its columns (:func:`actionrec.resume.rewind_logs` first drops what
    the killed run logged after its checkpoint).
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ContinuedWriter(log_dir=self.log_dir)
        return self._experiment


class ContinuedWriter(ExperimentWriter):
    """An :class:`ExperimentWriter` that keeps the rows and columns already in its file."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])
