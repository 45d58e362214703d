import math

import pytest
import torch

from training.schedule import WarmupMultiStepLR, lr_at, lr_factor_at


def test_recipe_values_at_key_epochs():
    assert lr_at(0) == pytest.approx(8e-6, rel=1e-12)
    assert lr_at(1) == pytest.approx(8e-6 + 7.92e-4 / 20, rel=1e-12)
    assert lr_at(10) == pytest.approx(8e-6 + 7.92e-4 / 2, rel=1e-12)
    assert lr_at(19) == pytest.approx(7.604e-4, rel=1e-12)
    assert lr_at(20) == pytest.approx(8e-4, rel=1e-12)
    assert lr_at(79) == pytest.approx(8e-4, rel=1e-12)
    assert lr_at(80) == pytest.approx(4e-4, rel=1e-12)
    assert lr_at(119) == pytest.approx(4e-4, rel=1e-12)
    assert lr_at(120) == pytest.approx(2e-4, rel=1e-12)
    assert lr_at(360) == pytest.approx(8e-4 / 256, rel=1e-12)
    assert lr_at(599) == pytest.approx(8e-4 / 256, rel=1e-12)


def test_warmup_is_linear_and_monotone():
    lrs = [lr_at(e) for e in range(21)]
    diffs = [b - a for a, b in zip(lrs, lrs[1:], strict=False)]
    assert all(math.isclose(d, diffs[0], rel_tol=1e-9) for d in diffs)


def test_configurable_and_factor_matches_lr():
    kw = dict(warmup_epochs=5, milestones=(10, 30), gamma=0.1)
    for e in range(40):
        assert lr_at(e, base_lr=1e-2, warmup_start_lr=1e-4, **kw) == pytest.approx(
            1e-2 * lr_factor_at(e, warmup_start_factor=1e-2, **kw), rel=1e-12
        )
    assert lr_at(12, base_lr=1.0, warmup_start_lr=0.0, **kw) == pytest.approx(0.1)
    assert lr_at(30, base_lr=1.0, warmup_start_lr=0.0, **kw) == pytest.approx(0.01)
    assert lr_at(3, base_lr=1.0, warmup_start_lr=0.0, warmup_epochs=0) == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epoch=-1), "epoch"),
        (dict(epoch=0, milestones=(80, 40)), "increasing"),
        (dict(epoch=0, warmup_start_lr=1.0, base_lr=0.1), "warmup_start_lr"),
        (dict(epoch=0, gamma=0.0), "gamma"),
        (dict(epoch=0, warmup_epochs=-2), "warmup_epochs"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lr_at(**kwargs)


def make_optimizer():
    params = [torch.nn.Parameter(torch.zeros(2))]
    return torch.optim.Adam(params, lr=8e-4, weight_decay=5e-4)


def test_scheduler_follows_lr_at_when_stepped_once_per_epoch():
    opt = make_optimizer()
    sched = WarmupMultiStepLR(opt)
    for epoch in range(130):
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_at(epoch), rel=1e-12), epoch
        opt.step()
        sched.step()


def test_scheduler_resume_is_exact():
    opt = make_optimizer()
    sched = WarmupMultiStepLR(opt)
    for _ in range(25):
        opt.step()
        sched.step()
    state = sched.state_dict()
    reference = []
    for _ in range(70):
        reference.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()

    opt2 = make_optimizer()  # optimizer state NOT restored: lr must still be right
    sched2 = WarmupMultiStepLR(opt2)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 25
    resumed = []
    for _ in range(70):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert resumed == reference


def test_scheduler_scales_each_group():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 8e-4}, {"params": [b], "lr": 8e-5}])
    WarmupMultiStepLR(opt)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([8e-6, 8e-7], rel=1e-12)
