import pytest
import torch

from captioning.training.schedules import WarmupCosineLR


def _lrs(steps: int, **kwargs) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = WarmupCosineLR(opt, **kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_warmup_then_cosine_to_the_final_ratio() -> None:
    lrs = _lrs(12, warmup_steps=4, total_steps=12, final_lr_ratio=0.1)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:]))  # strictly decreasing after the peak
    assert _lrs(40, warmup_steps=4, total_steps=12, final_lr_ratio=0.1)[-1] == pytest.approx(0.1)


def test_without_total_steps_the_rate_stays_at_the_peak() -> None:
    assert _lrs(6, warmup_steps=2)[2:] == pytest.approx([1.0] * 4)
