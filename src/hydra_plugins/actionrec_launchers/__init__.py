"""submitit launchers whose requeued jobs resume their runs (see :mod:`actionrec.requeue`).

Hydra finds launchers in the ``hydra_plugins`` namespace only; the logic is in actionrec.
``conf/hydra/launcher/slurm.yaml`` selects :class:`RequeueingSlurmLauncher`. Without the
``slurm`` extra (hydra-submitit-launcher) there is nothing to define.
"""

from __future__ import annotations

from typing import Any

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        LocalLauncher,
        SlurmLauncher,
    )
except ImportError:  # pragma: no cover - the slurm extra is not installed
    pass
else:

    class RequeueingSlurmLauncher(SlurmLauncher):
        """submitit's SLURM launcher; a preempted or timed-out job resumes when requeued."""

        def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
            from actionrec.requeue import checkpoint_args

            return super().checkpoint(*checkpoint_args(args), **kwargs)

    class RequeueingLocalLauncher(LocalLauncher):
        """The same on this machine (submitit's local executor), for trying the requeue path."""

        def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
            from actionrec.requeue import checkpoint_args

            return super().checkpoint(*checkpoint_args(args), **kwargs)
