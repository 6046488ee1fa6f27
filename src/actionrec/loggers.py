"""Logger factories that need a decision at run time."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

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


def wandb_logger(offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """A :class:`WandbLogger` that runs offline, and says how to sync, when there is no account.

    Args:
        offline: force online/offline; None decides by :func:`wandb_has_account` and
            ``WANDB_MODE``.
        kwargs: passed to :class:`WandbLogger` (``project``, ``name``, ``group``, ...).
    """
    if offline is None:
        offline = os.environ.get("WANDB_MODE") in ("offline", "dryrun") or not wandb_has_account()
    if offline:
        log.info(
            "W&B runs offline (no account configured); upload later with "
            "`wandb sync %s/wandb/offline-run-*`",
            kwargs.get("save_dir", "."),
        )
    return WandbLogger(offline=offline, **kwargs)
