"""The clipped optimizer step: the clip folded into fused AdamW's gradient scale gives the parameters that
clip_grad_norm_ followed by a plain step gives, and reports the same norm."""

import pytest
import torch
from torch import nn

from gristmill.trainer.optim import clipped_step


def _model_with_grads(seed: int, scale: float) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 8))
    for p in model.parameters():
        p.grad = scale * torch.randn_like(p)
    return model


@pytest.mark.parametrize("scale, max_norm", [(10.0, 1.0), (1e-3, 1.0), (10.0, float("inf"))],
                         ids=["clipped", "under the limit", "no limit"])
def test_fused_step_with_the_clip_inside_matches_clip_then_step(scale: float, max_norm: float) -> None:
    seed = int(torch.randint(0, 2**31, ()))
    folded, reference = _model_with_grads(seed, scale), _model_with_grads(seed, scale)
    folded_opt = torch.optim.AdamW(folded.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    reference_opt = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    for step in range(3):
        if step:
            for a, b in zip(folded.parameters(), reference.parameters()):
                b.grad = scale * torch.randn_like(a)
                a.grad = b.grad.clone()
        norm = clipped_step(folded_opt, list(folded.parameters()), max_norm)
        expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm)
        reference_opt.step()
        torch.testing.assert_close(norm, expected)
        assert not hasattr(folded_opt, "grad_scale")
        for a, b in zip(folded.parameters(), reference.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            # Adam's step hardly moves when every gradient is scaled alike; its moments show the clip.
            for moment in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(folded_opt.state[a][moment], reference_opt.state[b][moment])


def test_an_unfused_optimizer_is_clipped_before_its_step() -> None:
    model = _model_with_grads(0, 10.0)
    grads_before = [p.grad.clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    params_before = [p.detach().clone() for p in model.parameters()]
    norm = clipped_step(optimizer, list(model.parameters()), 1.0)
    expected_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads_before]))
    torch.testing.assert_close(norm, expected_norm)
    steps = [before - after for before, after in zip(params_before, model.parameters())]
    torch.testing.assert_close(torch.linalg.vector_norm(torch.stack([s.norm() for s in steps])), torch.tensor(1.0),
                               rtol=1e-4, atol=1e-6)
