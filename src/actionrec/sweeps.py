"""Multiruns: which job is which, and the table of a sweep's results.

``python src/train.py -m optim.lr=0.01,0.02 data.num_clips=3,8`` runs each job in
``SWEEP/<job number>/`` with its own ``metrics.json``; :class:`SweepSummary` (a Hydra callback,
see ``conf/hydra/default.yaml``) then prints each job's overrides against its metrics and saves
the table as ``SWEEP/sweep_results.csv`` and ``.md``.
"""

from __future__ import annotations

import atexit
import csv
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def read_jobs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per job directory of a sweep: ``job``, ``status``, ``overrides``, ``metrics``.

    A job is a ``SWEEP/*/`` folder with ``.hydra/overrides.yaml``; ``status`` is ``ok`` when
    it wrote ``metrics.json``, ``failed`` otherwise. Rows come in job-number order.
    """
    rows = []
    for path in Path(sweep_dir).glob("*/.hydra/overrides.yaml"):
        job_dir = path.parents[1]
        overrides = yaml.safe_load(path.read_text()) or []
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        rows.append(
            {
                "job": job_dir.name,
                "status": "ok" if metrics_file.is_file() else "failed",
                "overrides": dict(o.split("=", 1) for o in overrides if "=" in o),
                "metrics": metrics,
            }
        )
    return sorted(
        rows,
        key=lambda r: (
            not r["job"].isdigit(),
            int(r["job"]) if r["job"].isdigit() else 0,
            r["job"],
        ),
    )


def varying_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The override keys whose values differ between jobs (all of them for a single job)."""
    keys = list(dict.fromkeys(k for row in rows for k in row["overrides"]))
    if len(rows) < 2:
        return keys
    return [k for k in keys if len({row["overrides"].get(k) for row in rows}) > 1]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return "" if value is None else str(value)


def summary_table(
    rows: list[dict[str, Any]], metrics: Sequence[str]
) -> tuple[list[str], list[list]]:
    """The header and rows of the table: job, status, the varying overrides, ``metrics``."""
    keys = varying_keys(rows)
    header = ["job", "status", *keys, *metrics]
    body = [
        [row["job"], row["status"], *(row["overrides"].get(k) for k in keys)]
        + [row["metrics"].get(m) for m in metrics]
        for row in rows
    ]
    return header, body


def markdown(header: list[str], body: list[list]) -> str:
    cells = [header, *[[_cell(v) for v in row] for row in body]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: str | Path, metrics: Sequence[str]) -> str:
    """Write ``sweep_results.csv`` (every metric) and ``.md`` (``metrics``); return the table."""
    sweep_dir = Path(sweep_dir)
    rows = read_jobs(sweep_dir)
    every = list(dict.fromkeys([*metrics, *sorted(k for r in rows for k in r["metrics"])]))
    header, body = summary_table(rows, every)
    with open(sweep_dir / "sweep_results.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *body])
    shown = [m for m in metrics if any(m in r["metrics"] for r in rows)] or every
    table = markdown(*summary_table(rows, shown))
    (sweep_dir / "sweep_results.md").write_text(table)
    return table


class SweepSummary(Callback):
    """A Hydra callback: the table of a multirun's jobs, their overrides and their metrics.

    After each job it rewrites ``sweep_results.csv`` and ``sweep_results.md`` in the sweep
    directory (so an interrupted sweep keeps its results); when the sweep ends, or stops
    because jobs failed, it prints the table. Failed jobs are listed as ``failed``.

    Args:
        metrics: the metric columns of the printed table (the CSV holds every metric).
    """

    def __init__(self, metrics: Sequence[str] = ("val/top1", "val/top1_best")) -> None:
        self.metrics = list(metrics)
        self._sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(config.hydra.sweep.dir)
        # Hydra skips on_multirun_end when a failed job stops the sweep: print then too.
        atexit.register(self._report)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        write_summary(sweep_dir, self.metrics)
        if job_return.status.name == "FAILED":
            log.error(
                "job %s failed (its log: %s); results so far in %s",
                config.hydra.job.num,
                Path(config.hydra.runtime.output_dir) / f"{config.hydra.job.name}.log",
                sweep_dir / "sweep_results.csv",
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._report()

    def _report(self) -> None:
        if self._sweep_dir is None or not self._sweep_dir.is_dir():
            return
        sweep_dir, self._sweep_dir = self._sweep_dir, None  # once
        atexit.unregister(self._report)
        table = write_summary(sweep_dir, self.metrics)
        print(f"\nSweep results ({sweep_dir}/sweep_results.csv):\n{table}", flush=True)
