"""Per-epoch learning rate of the RGA recipe: linear warm-up, then step decay.

The official code (``reid/utils/lr_scheduler.py``, set at the start of every epoch) computes, for epoch e::

    e <  warmup_epochs:  lr = warmup_start_lr + (base_lr - warmup_start_lr) * e / warmup_epochs
    e >= warmup_epochs:  lr = base_lr * gamma ** (number of milestones m with m <= e)

With the recipe's values (8e-4, 8e-6, 20 epochs, halved at 80, 120, ..., 360) epoch 0 runs at 8e-6,
epoch 19 at 7.604e-4 and epoch 20 at the full 8e-4: the warm-up reaches ``base_lr`` one epoch after its
last step. A milestone inside the warm-up only counts from the end of the warm-up.

``lr_at`` is that formula as a pure function. ``WarmupMultiStepLR`` applies it to an optimizer as a
multiplier of each parameter group's initial learning rate (the optimizer is built with ``lr=base_lr``);
call ``scheduler.step()`` once at the END of each epoch, as with any torch scheduler. Its learning rate
is a closed-form function of ``last_epoch``, so ``load_state_dict`` resumes exactly.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

logger = logging.getLogger(__name__)

RECIPE_BASE_LR = 8e-4
RECIPE_WARMUP_START_LR = 8e-6
RECIPE_WARMUP_EPOCHS = 20
RECIPE_MILESTONES = (80, 120, 160, 200, 240, 280, 320, 360)
RECIPE_GAMMA = 0.5


def _check(warmup_epochs: int, milestones: Sequence[int], gamma: float) -> tuple[int, ...]:
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    steps = tuple(int(m) for m in milestones)
    if list(steps) != sorted(steps) or any(m < 0 for m in steps):
        raise ValueError(f"milestones must be non-negative and increasing, got {list(milestones)}")
    return steps


def lr_factor_at(
    epoch: int,
    warmup_epochs: int = RECIPE_WARMUP_EPOCHS,
    warmup_start_factor: float = RECIPE_WARMUP_START_LR / RECIPE_BASE_LR,
    milestones: Sequence[int] = RECIPE_MILESTONES,
    gamma: float = RECIPE_GAMMA,
) -> float:
    """Learning rate of ``epoch`` as a fraction of the base learning rate (see the module docstring)."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if not 0 <= warmup_start_factor <= 1:
        raise ValueError(f"warmup_start_factor must be in [0, 1], got {warmup_start_factor}")
    steps = _check(warmup_epochs, milestones, gamma)
    if epoch < warmup_epochs:
        return warmup_start_factor + (1.0 - warmup_start_factor) * epoch / warmup_epochs
    return gamma ** bisect.bisect_right(steps, epoch)


def lr_at(
    epoch: int,
    base_lr: float = RECIPE_BASE_LR,
    warmup_start_lr: float = RECIPE_WARMUP_START_LR,
    warmup_epochs: int = RECIPE_WARMUP_EPOCHS,
    milestones: Sequence[int] = RECIPE_MILESTONES,
    gamma: float = RECIPE_GAMMA,
) -> float:
    """Learning rate for ``epoch`` (0-based) under the official RGA schedule."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if not 0 <= warmup_start_lr <= base_lr:
        raise ValueError(f"need 0 <= warmup_start_lr <= base_lr, got {warmup_start_lr} and {base_lr}")
    steps = _check(warmup_epochs, milestones, gamma)
    if epoch < warmup_epochs:
        return warmup_start_lr + (base_lr - warmup_start_lr) * epoch / warmup_epochs
    return base_lr * gamma ** bisect.bisect_right(steps, epoch)


class WarmupMultiStepLR(LRScheduler):
    """Torch scheduler for ``lr_at``: group lr = initial group lr * ``lr_factor_at(last_epoch)``.

    Build the optimizer with ``lr=base_lr``; ``warmup_start_factor`` is ``warmup_start_lr / base_lr``
    (0.01 in the recipe). ``state_dict()`` holds ``last_epoch``, the base learning rates and the schedule's
    arguments; ``load_state_dict`` restores them and sets the optimizer's learning rates for the restored
    epoch, so a resumed run continues exactly (whether or not the optimizer state was loaded too).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_epochs: int = RECIPE_WARMUP_EPOCHS,
        warmup_start_factor: float = RECIPE_WARMUP_START_LR / RECIPE_BASE_LR,
        milestones: Sequence[int] = RECIPE_MILESTONES,
        gamma: float = RECIPE_GAMMA,
        last_epoch: int = -1,
    ) -> None:
        self.milestones = list(_check(warmup_epochs, milestones, gamma))
        if not 0 <= warmup_start_factor <= 1:
            raise ValueError(f"warmup_start_factor must be in [0, 1], got {warmup_start_factor}")
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_start_factor = float(warmup_start_factor)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def _factor(self) -> float:
        return lr_factor_at(
            max(self.last_epoch, 0), self.warmup_epochs, self.warmup_start_factor, self.milestones, self.gamma
        )

    def get_lr(self) -> list[float]:  # type: ignore[override]
        factor = self._factor()
        return [base * factor for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = lrs
