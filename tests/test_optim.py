"""Warmup as a scheduler: the lrs of the in-module warmup it replaced, step by step; resuming."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, MultiStepLR

from actionrec.optim import LinearWarmup, WarmupLR, warmup_steps


def optimizer() -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def lrs(opt, warmup, decay, steps: int, epochs: int, start: int = 0) -> list[float]:
    """The lr of every optimizer step, stepping the schedulers as Lightning does."""
    seen = []
    for step in range(start, steps * epochs):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        warmup.step()  # interval: step
        if (step + 1) % steps == 0:
            decay.step()  # interval: epoch
    return seen


CASES = [  # warmup epochs, start factor, steps per epoch, epochs, decay
    (1, 0.25, 4, 3, lambda o: MultiStepLR(o, [2])),
    (2.5, 0.1, 3, 4, lambda o: MultiStepLR(o, [1, 2], gamma=0.1)),
    (3, 0.1, 5, 5, lambda o: CosineAnnealingLR(o, T_max=5)),
    (0.3, 0.5, 7, 2, lambda o: CosineAnnealingLR(o, T_max=2)),
]


@pytest.mark.parametrize(("epochs", "start", "steps", "run", "decay"), CASES)
def test_warmup_gives_the_lrs_of_a_linear_lr_sized_up_front(epochs, start, steps, run, decay):
    # Before: LinearLR built with one step, its total_iters set once the data was loaded.
    old_opt = optimizer()
    old = LinearLR(old_opt, start_factor=start, total_iters=1)
    old_decay = decay(old_opt)
    old.total_iters = warmup_steps(epochs, steps)
    new_opt = optimizer()
    asked = []
    new = LinearWarmup(epochs, start)(new_opt, lambda: asked.append(1) or steps)
    new_decay = decay(new_opt)
    assert asked == []  # not before the first step: the data is not loaded yet
    expected = lrs(old_opt, old, old_decay, steps, run)
    assert lrs(new_opt, new, new_decay, steps, run) == expected  # exactly, float for float
    assert len(asked) == 1


def test_a_resumed_warmup_goes_on_exactly() -> None:
    epochs, steps = 2, 3
    whole_opt = optimizer()
    whole = LinearWarmup(epochs)(whole_opt, lambda: steps)
    expected = lrs(whole_opt, whole, MultiStepLR(whole_opt, [3]), steps, 4)
    opt = optimizer()
    warmup = LinearWarmup(epochs)(opt, lambda: steps)
    decay = MultiStepLR(opt, [3])
    first = lrs(opt, warmup, decay, steps, 1)
    buffer = io.BytesIO()
    torch.save([opt.state_dict(), warmup.state_dict(), decay.state_dict()], buffer)
    buffer.seek(0)
    opt_state, warmup_state, decay_state = torch.load(buffer, weights_only=True)
    resumed_opt = optimizer()
    resumed = LinearWarmup(epochs)(resumed_opt, lambda: steps)
    resumed_decay = MultiStepLR(resumed_opt, [3])
    resumed_opt.load_state_dict(opt_state)
    resumed.load_state_dict(warmup_state)
    resumed_decay.load_state_dict(decay_state)
    rest = lrs(resumed_opt, resumed, resumed_decay, steps, 4, start=steps)
    assert first + rest == expected


def test_a_warmup_saved_before_the_scheduler_was_loads() -> None:
    # Checkpoints written by the in-module warmup hold a LinearLR's state.
    opt = optimizer()
    old = LinearLR(opt, start_factor=0.1, total_iters=6)
    for _ in range(2):
        opt.step()
        old.step()
    new = WarmupLR(optimizer(), 2, lambda: 3)
    new.optimizer.load_state_dict(opt.state_dict())
    new.load_state_dict(old.state_dict())
    for _ in range(3):
        opt.step()
        old.step()
        new.optimizer.step()
        new.step()
        assert new.optimizer.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_no_warmup_builds_no_scheduler_and_bad_values_are_refused() -> None:
    assert LinearWarmup(0)(optimizer(), lambda: 3) is None
    with pytest.raises(ValueError, match=r"optim.warmup_epochs=-1 must be >= 0"):
        LinearWarmup(-1)
    with pytest.raises(ValueError, match=r"start_factor=0 in \(0, 1\]"):
        LinearWarmup(1, start_factor=0)


def test_the_cosine_after_a_step_warmup_keeps_the_warmups_lr() -> None:
    from actionrec.optim import CosineAfterWarmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    warmup = LinearWarmup(epochs=2, start_factor=0.1)(optimizer, lambda: 4)
    cosine = CosineAfterWarmup(optimizer, T_max=4, begin=2, eta_min_factor=0.5)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        for _ in range(4):
            optimizer.step()
            warmup.step()
        cosine.step()
    # the warmup's own lr (0.1, then 0.55 after 4 of its 8 steps), then 0.5 + 0.5 * cosine
    cosine_lrs = [0.5 + 0.5 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(3)]
    assert lrs == pytest.approx([0.1, 0.55, *cosine_lrs])
    with pytest.raises(ValueError, match="T_max=0"):
        CosineAfterWarmup(optimizer, T_max=0)
