"""What a checkpoint may have us build: the ``_target_``s allowed in its ``run_config``.

A checkpoint carries its run's data, model and optim config, from which eval, predict and export
rebuild the run. A ``_target_`` names code to call, so a value read from a file must not choose
any: from a checkpoint we build only this package's own classes and the targets listed below.
Anything else is refused, naming the target, the file and the key, unless the user lists it in
``trust_checkpoint_targets=[...]`` on the command line: trusting a file is a deliberate act.
What the user's own command line or YAML names is the user's choice and is not checked here.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from actionrec.checkpoints import CheckpointError

TRUST_KEY = "trust_checkpoint_targets"
PACKAGE = "actionrec"

# The targets other than this package's classes that conf/data, conf/model and conf/optim use
# (tests/test_trust.py keeps the two in step), and the losses README.md shows for model.loss.
# Not data.prepare's (the toy renderer writes files): it is never taken from a checkpoint.
ALLOWED_TARGETS = frozenset(
    {
        "actionrec.optim.tsm_param_groups",
        "actionrec.optim.warmup_multistep",
        "torch.nn.BCEWithLogitsLoss",
        "torch.nn.CrossEntropyLoss",
        "torch.optim.AdamW",
        "torch.optim.SGD",
        "torch.optim.lr_scheduler.CosineAnnealingLR",
        "torch.optim.lr_scheduler.MultiStepLR",
        "actionrec.optim.decay_param_groups",
        "actionrec.optim.layer_decay_param_groups",
    }
)


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint's run config names code that is not allowed to be built from a file."""


def is_project_class(target: str) -> bool:
    """Whether ``target`` is the full path of a class defined in this package.

    The class must be defined in the module the path names: ``actionrec.x.torch.load`` (a
    module's import of ``torch``) or a function does not pass.
    """
    module_name, _, name = target.rpartition(".")
    if not module_name.startswith(PACKAGE + "."):
        return False
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    obj = getattr(module, name, None)
    return isinstance(obj, type) and obj.__module__ == module_name and obj.__qualname__ == name


def is_allowed(target: Any, trusted: Collection[str] = ()) -> bool:
    """Whether a checkpoint may name ``target``: allow-listed, a project class, or trusted."""
    if not isinstance(target, str):
        return False
    return target in ALLOWED_TARGETS or target in trusted or is_project_class(target)


def find_targets(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(key, target)`` for every ``_target_`` in plain containers, at any depth.

    Also in lists and under ``_partial_`` or ``_args_``: whatever ``instantiate`` could reach.
    ``key`` is the dotted path of the ``_target_`` itself, e.g. ``model.net.backbone._target_``.
    """
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "_target_":
                yield join_key(path, key), value
            else:
                yield from find_targets(value, join_key(path, key))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from find_targets(value, join_key(path, i))


def refuse_interpolations(node: Any, path: str, source: str) -> None:
    """Raise for any ``${...}`` in a checkpoint's config.

    A run config is saved resolved, so a genuine one holds none; an interpolation could call a
    resolver or pull a ``_target_`` in from elsewhere, out of sight of the target check.
    """
    if isinstance(node, str) and "${" in node:
        raise UntrustedCheckpointError(
            f"{source}: run_config.{path} holds the interpolation {node[:80]!r}; actionrec "
            "saves run configs resolved, so this file was not written by it: refused"
        )
    if isinstance(node, Mapping):
        for key, value in node.items():
            refuse_interpolations(value, join_key(path, key), source)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            refuse_interpolations(value, join_key(path, i), source)


def join_key(path: str, key: Any) -> str:
    """``path.key`` (``key`` alone at the top)."""
    return f"{path}.{key}" if path else str(key)


def check_targets(targets: Mapping[str, Any], source: str, trusted: Collection[str] = ()) -> None:
    """Raise :class:`UntrustedCheckpointError` for the first target not allowed.

    Args:
        targets: ``{key: target}`` read from the checkpoint (see :func:`find_targets`).
        source: the setting and file they came from, e.g. ``ckpt_path=RUN/best.ckpt``.
        trusted: targets the user allowed on purpose (``trust_checkpoint_targets``).
    """
    for key, target in targets.items():
        if not is_allowed(target, trusted):
            raise UntrustedCheckpointError(
                f"{source}: run_config.{key.removesuffix('._target_')} names _target_ "
                f"{target!r}, which actionrec does not build from a checkpoint (only its own "
                "classes and the torch classes its configs use): refused. If you trust this "
                f"file, allow it on purpose: {TRUST_KEY}=[{target}]"
            )


def trusted_targets(value: Any) -> list[str]:
    """The user's ``trust_checkpoint_targets`` as a list of names (one name is a list of one)."""
    if value is None:
        return []
    names = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{TRUST_KEY}={value!r} must be a list of full import paths")
    return names
