"""Optimizer recipes: per-group multipliers (TSM's), lr scaling by batch, and schedulers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

# Layers whose affine parameters mmaction2's TSM recipe keeps free of weight decay.
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
# Layers with a weight and an optional bias, split into weight and bias groups.
WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


def tsm_param_groups(net: nn.Module, fc_lr5: bool = True) -> list[dict]:
    """mmaction2's ``TSMOptimWrapperConstructor`` as parameter groups with multipliers.

    Each group carries ``lr_mult`` and ``decay_mult``, applied to the optimizer's own ``lr``
    and ``weight_decay`` by :func:`apply_multipliers`:

    - ``weight``: conv and linear weights, lr x1, weight decay x1;
    - ``bias``: their biases, lr x2, no weight decay;
    - ``norm``: BatchNorm/GroupNorm/LayerNorm weights and biases, lr x1, no weight decay;
    - ``fc_weight``/``fc_bias``: the classifier (the last conv or linear layer in module
      order, as mmaction2 picks it), lr x5 / x10 with ``fc_lr5``, weight decay x1 / 0.
      Without ``fc_lr5`` they join ``weight`` and ``bias``.

    Frozen parameters are left out. A layer of another kind that holds parameters has no rule
    in the recipe and raises ``ValueError``, as in mmaction2.
    """
    layers = [m for m in net.modules() if isinstance(m, WEIGHT_LAYERS)]
    if not layers:
        raise ValueError("tsm_param_groups found no conv or linear layer (no classifier)")
    fc = layers[-1] if fc_lr5 else None
    weights, biases, norm, fc_weight, fc_bias = [], [], [], [], []
    for name, module in net.named_modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, WEIGHT_LAYERS):
            bias = [module.bias] if module.bias is not None else []
            (fc_weight if module is fc else weights).append(module.weight)
            (fc_bias if module is fc else biases).extend(bias)
        elif isinstance(module, NORM_LAYERS):
            norm.extend(own)
        elif own:
            raise ValueError(
                f"tsm_param_groups has no rule for the parameters of {name!r} "
                f"({type(module).__name__}); drop optim/param_groups or use conv, linear and "
                f"norm layers only"
            )
    groups = [
        {"name": "weight", "params": weights, "lr_mult": 1.0, "decay_mult": 1.0},
        {"name": "bias", "params": biases, "lr_mult": 2.0, "decay_mult": 0.0},
        {"name": "norm", "params": norm, "lr_mult": 1.0, "decay_mult": 0.0},
        {"name": "fc_weight", "params": fc_weight, "lr_mult": 5.0, "decay_mult": 1.0},
        {"name": "fc_bias", "params": fc_bias, "lr_mult": 10.0, "decay_mult": 0.0},
    ]
    for group in groups:
        group["params"] = [p for p in group["params"] if p.requires_grad]
    return [g for g in groups if g["params"]]


def layer_decay_param_groups(net: nn.Module, decay_rate: float = 0.75) -> list[dict]:
    """Layer-wise lr decay (mmaction2's ``LearningRateDecayOptimizerConstructor``, BEiT's rule).

    The backbone numbers its own parameters (``layer_id(name)``: 0 for the embeddings, i for
    block i - 1) and says how many blocks it has (``num_layers``); every other parameter (the
    head) is layer ``num_layers + 1``. A parameter of layer i learns at ``lr_mult =
    decay_rate ** (num_layers + 1 - i)``: the head at the full lr, each block below at
    ``decay_rate`` times the one above. One-dimensional parameters (norms, biases, q/v biases)
    and any ``.bias`` get ``decay_mult`` 0, the rest 1. Frozen parameters are left out.
    """
    if not 0 < decay_rate <= 1:
        raise ValueError(f"decay_rate={decay_rate} must be in (0, 1]")
    backbone = getattr(net, "backbone", None)
    if not hasattr(backbone, "layer_id") or not hasattr(backbone, "num_layers"):
        raise ValueError(
            f"layer_decay_param_groups needs net.backbone with layer_id() and num_layers "
            f"({type(backbone).__name__} has not); drop optim/param_groups for this network"
        )
    top = backbone.num_layers + 1
    groups: dict[str, dict] = {}
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        inner = name.removeprefix("backbone.")
        layer = backbone.layer_id(inner) if inner != name else top
        decay = 0.0 if param.ndim == 1 or name.endswith(".bias") else 1.0
        key = f"layer_{layer}_{'decay' if decay else 'no_decay'}"
        scale = decay_rate ** (top - layer)
        group = groups.setdefault(
            key, {"name": key, "params": [], "lr_mult": scale, "decay_mult": decay}
        )
        group["params"].append(param)
    return list(groups.values())


def apply_multipliers(optimizer: torch.optim.Optimizer) -> None:
    """Multiply each group's ``lr`` and ``weight_decay`` by its ``lr_mult`` / ``decay_mult``.

    Called once, right after the optimizer is built and before any scheduler reads its lrs.
    """
    for group in optimizer.param_groups:
        group["lr"] *= group.get("lr_mult", 1.0)
        if "weight_decay" in group:
            group["weight_decay"] *= group.get("decay_mult", 1.0)


def lr_scale_factor(videos_per_gpu: int, world_size: int, base_batch_size: int) -> float:
    """mmaction2's ``auto_scale_lr``: the real total batch over the batch the lr was set for.

    Gradient accumulation is not counted, as in mmengine.
    """
    if videos_per_gpu < 1 or world_size < 1 or base_batch_size < 1:
        raise ValueError(
            f"auto_scale_lr needs positive sizes; got videos_per_gpu={videos_per_gpu}, "
            f"world_size={world_size}, base_batch_size={base_batch_size}"
        )
    return videos_per_gpu * world_size / base_batch_size


def scale_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Multiply every group's ``lr`` by ``factor`` (before a scheduler is attached)."""
    for group in optimizer.param_groups:
        group["lr"] *= factor


def steps_per_epoch(trainer: L.Trainer) -> int:
    """Optimizer steps in one training epoch, from the epoch's batches (once the trainer has
    loaded the training data).

    Not from ``max_steps``: a warmup's length must not depend on where a run is cut short.
    """
    batches = trainer.num_training_batches
    if math.isfinite(batches):
        return max(1, math.ceil(batches / trainer.accumulate_grad_batches))
    total = trainer.estimated_stepping_batches  # no length: Lightning's estimate
    return max(1, int(total / max(1, trainer.max_epochs or 1)))


def warmup_steps(warmup_epochs: float, steps_per_epoch: int) -> int:
    """The optimizer steps of a warmup of ``warmup_epochs`` epochs (at least one)."""
    if warmup_epochs < 0:
        raise ValueError(f"optim.warmup_epochs={warmup_epochs} must be >= 0")
    return max(1, round(warmup_epochs * steps_per_epoch))


class LinearWarmup:
    """mmaction2's warmup by iterations (``LinearLR``, ``by_epoch=False``): a scheduler factory.

    Every lr is scaled by ``start_factor`` at the first optimizer step and rises linearly to x1
    over ``epochs`` epochs, counted in optimizer steps (``conf/optim``: ``optim.warmup_epochs``).

    Args:
        epochs: the warmup's length in epochs (a fraction is fine); 0 for no warmup.
        start_factor: the lr factor at the first step.
        exclusive_end: reach x1 one step before the warmup's end, as mmengine's ``LinearLR``
            (mmaction2 1.x, ``convert_to_iter_based``) counts its ``end``; False: at its end, as
            mmcv's ``warmup='linear'`` (mmaction2 0.x).
    """

    def __init__(
        self, epochs: float = 0.0, start_factor: float = 0.1, exclusive_end: bool = False
    ) -> None:
        if epochs < 0 or not 0 < start_factor <= 1:
            raise ValueError(
                f"optim.warmup_epochs={epochs} must be >= 0 and "
                f"start_factor={start_factor} in (0, 1]"
            )
        self.epochs = epochs
        self.start_factor = start_factor
        self.exclusive_end = exclusive_end

    def __call__(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: Callable[[], int]
    ) -> WarmupLR | None:
        """The warmup of ``optimizer``, to step every optimizer step (None without a warmup).

        Build it before an epoch scheduler on the same optimizer: both change the lr
        multiplicatively, so warmup and decay compose as in mmengine, and the lr in the
        optimizer (and in the logs) is the one each step uses.
        """
        if self.epochs == 0:
            return None
        return WarmupLR(
            optimizer, self.epochs, steps_per_epoch, self.start_factor, self.exclusive_end
        )


class WarmupLR(torch.optim.lr_scheduler.LinearLR):
    """``LinearLR`` over ``epochs`` x the optimizer steps of an epoch, counted at its first step.

    An epoch's steps are known once the trainer has loaded the training data, and a resumed
    run loads it only after its state is restored (loading it earlier would start the first
    epoch's loader with epoch 0's order). So ``steps_per_epoch`` is asked at the first step,
    and again at the first step after a resume.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        epochs: float,
        steps_per_epoch: Callable[[], int],
        start_factor: float = 0.1,
        exclusive_end: bool = False,
    ) -> None:
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.exclusive_end = exclusive_end
        # total_iters stays None until the first step needs it (step 0 is start_factor alone).
        super().__init__(optimizer, start_factor, end_factor=1.0, total_iters=None)

    def get_lr(self) -> list[float]:
        if self.total_iters is None and self.last_epoch > 0:
            steps = warmup_steps(self.epochs, self.steps_per_epoch())
            self.total_iters = max(1, steps - self.exclusive_end)
        return super().get_lr()

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k != "steps_per_epoch"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.total_iters = None  # counted again from the data of the run that goes on


class WarmupMultiStep:
    """mmengine's by-epoch ``LinearLR`` warmup chained with ``MultiStepLR``, as a factor per epoch.

    mmaction2 1.x writes ``param_scheduler = [LinearLR(start_factor, by_epoch=True, begin=0,
    end=warmup_epochs), MultiStepLR(begin=milestones_from, milestones, gamma)]``. Both multiply the
    lr, so the lr of epoch e is the base lr times the product of their factors:
    ``LinearLR`` climbs from ``start_factor`` to 1 in ``warmup_epochs - 1`` equal steps (mmengine
    counts its ``end`` exclusively), and ``MultiStepLR``'s milestones count from its ``begin``.

    Args:
        warmup_epochs: ``LinearLR``'s ``end``; 0 for no warmup.
        start_factor: the lr factor of the first epoch.
        milestones: epochs (counted from ``milestones_from``) after which the lr is x ``gamma``.
        gamma: the decay at each milestone.
        milestones_from: ``MultiStepLR``'s ``begin``.
    """

    def __init__(
        self,
        warmup_epochs: int,
        start_factor: float,
        milestones: Sequence[int],
        gamma: float = 0.1,
        milestones_from: int = 0,
    ) -> None:
        if warmup_epochs < 0 or not 0 < start_factor <= 1:
            raise ValueError(
                f"optim.scheduler.warmup_epochs={warmup_epochs} must be >= 0 and "
                f"start_factor={start_factor} in (0, 1]"
            )
        self.warmup_epochs = warmup_epochs
        self.start_factor = start_factor
        self.milestones = sorted(milestones)
        self.gamma = gamma
        self.milestones_from = milestones_from

    def __call__(self, epoch: int) -> float:
        factor = 1.0
        if epoch < self.warmup_epochs:
            steps = max(self.warmup_epochs - 1, 1)
            factor = self.start_factor + (1 - self.start_factor) * min(epoch / steps, 1.0)
        since = epoch - self.milestones_from
        passed = sum(since >= m for m in self.milestones) if since >= 0 else 0
        return factor * self.gamma**passed


def warmup_multistep(
    optimizer: torch.optim.Optimizer, **schedule: Any
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-epoch scheduler with :class:`WarmupMultiStep`'s factors (``conf/optim/scheduler``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupMultiStep(**schedule))


def decay_param_groups(
    net: nn.Module, norm_decay_mult: float = 1.0, bias_decay_mult: float = 1.0
) -> list[dict]:
    """mmengine's ``DefaultOptimWrapperConstructor`` with ``paramwise_cfg`` ``norm_decay_mult``
    and ``bias_decay_mult``, as parameter groups for :func:`apply_multipliers`:

    - ``norm``: every parameter of a BatchNorm/GroupNorm/LayerNorm, weight decay x
      ``norm_decay_mult``;
    - ``bias``: the other parameters named ``bias``, weight decay x ``bias_decay_mult``;
    - ``decay``: everything else (weights, class tokens, position tables), weight decay x1.

    Frozen parameters are left out.
    """
    decay, norm, biases = [], [], []
    for module in net.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if isinstance(module, NORM_LAYERS):
                norm.append(param)
            elif name == "bias":
                biases.append(param)
            else:
                decay.append(param)
    groups = [
        {"name": "decay", "params": decay, "decay_mult": 1.0},
        {"name": "norm", "params": norm, "decay_mult": norm_decay_mult},
        {"name": "bias", "params": biases, "decay_mult": bias_decay_mult},
    ]
    return [g for g in groups if g["params"]]


class CosineAfterWarmup(torch.optim.lr_scheduler.LRScheduler):
    """mmengine's ``CosineAnnealingLR(T_max, eta_min, begin=begin)``, stepped per epoch: the lr
    is left alone before ``begin`` (a step warmup, ``conf/optim/warmup``, has it then), then it
    follows ``f + (1 - f) * (1 + cos(pi * (epoch - begin) / T_max)) / 2`` of the lr, with
    ``f = eta_min_factor``.

    Chainable, as mmengine's: each epoch multiplies the current lr by the ratio of this epoch's
    factor to the last, so a per-step warmup on the same optimizer composes with it. mmengine
    stops at its ``end``; when ``end - begin < T_max`` (mmaction2's MViT recipes) the lr never
    reaches ``eta_min``, and neither does this one.

    Args:
        optimizer: the optimizer whose lrs it scales.
        T_max: the cosine's half period in epochs.
        begin: the first epoch of the cosine.
        eta_min_factor: ``eta_min`` over the lr.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        T_max: int,
        begin: int = 0,
        eta_min_factor: float = 0.0,
    ) -> None:
        if T_max < 1 or begin < 0 or not 0 <= eta_min_factor < 1:
            raise ValueError(
                f"optim.scheduler T_max={T_max} must be >= 1, begin={begin} >= 0 and "
                f"eta_min_factor={eta_min_factor} in [0, 1)"
            )
        self.T_max, self.begin, self.eta_min_factor = T_max, begin, eta_min_factor
        super().__init__(optimizer)

    def factor(self, epoch: int) -> float:
        """The lr of ``epoch`` over the lr before the cosine."""
        if epoch <= self.begin:
            return 1.0
        cosine = (1 + math.cos(math.pi * (epoch - self.begin) / self.T_max)) / 2
        return self.eta_min_factor + (1 - self.eta_min_factor) * cosine

    def get_lr(self) -> list[float]:
        epoch = self.last_epoch
        previous = self.factor(epoch - 1)
        if previous == 0:  # past T_max with eta_min 0: start again from the lr before
            return [base * self.factor(epoch) for base in self.base_lrs]
        return [g["lr"] * self.factor(epoch) / previous for g in self.optimizer.param_groups]
