"""The chunk cumsum kernels on Mamba2's raw parameters: the step softplus(dt + dt_bias) and the rate -exp(A_log)
formed in the kernel, and the gradients of raw dt (through a column slice of a wider tensor), dt_bias and A_log,
against autograd of the same math in fp64, over packed documents, with dt from deep in softplus' tail to past
its threshold."""

import pytest
import torch
import torch.nn.functional as F

from gristmill.kernels.ssd.chunk_cumsum import chunk_cumsum_bwd, chunk_cumsum_fwd
from gristmill.kernels.ssd.documents import ChunkPlan, plan_chunks
from gristmill.kernels.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HEADS = 4
EXTRA_COLUMNS = 5
"""dt is a column slice of a wider tensor, as in the mixer's in_proj output."""


def _reference(
    dt: torch.Tensor, dt_bias: torch.Tensor, A_log: torch.Tensor, plan: ChunkPlan
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The step `[T, H]`, a `[H, T]` and each chunk's decay `[H, num_chunks]` (spare chunks 1), in fp64."""
    step, A = F.softplus(dt.double() + dt_bias), -torch.exp(A_log)
    a_chunks, decays = [], []
    for start, length in zip(plan.chunk_start.tolist(), plan.chunk_len.tolist()):
        if length == 0:
            decays.append(torch.ones(HEADS, dtype=torch.float64, device=dt.device))
            continue
        a_chunks.append(torch.cumsum(step[start : start + length].T * A[:, None], dim=1))
        decays.append(torch.exp(a_chunks[-1][:, -1]))
    return step, torch.cat(a_chunks, dim=1), torch.stack(decays, dim=1)


@pytest.mark.parametrize("doc_lens", [(1, 40, 0, 23), (70,)], ids=["ragged", "one-doc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunk_cumsum_raw_params(doc_lens: tuple[int, ...], dtype: torch.dtype) -> None:
    total = sum(doc_lens)
    cu = torch.tensor([0, *torch.tensor(doc_lens).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    plan = plan_chunks(cu, total, 16)
    wide = torch.randn(total, HEADS + EXTRA_COLUMNS, device=DEVICE) * 12.0
    wide[: total // 3, 0] = torch.linspace(-40.0, 40.0, total // 3)  # softplus' tail and its threshold
    wide = wide.to(dtype)
    dt = wide[:, EXTRA_COLUMNS:]
    dt_bias = torch.randn(HEADS, device=DEVICE)
    A_log = torch.randn(HEADS, device=DEVICE)

    a, step, chunk_decay = chunk_cumsum_fwd(dt, A_log, plan, dt_bias)
    leaves = [t.detach().double().requires_grad_() for t in (dt, dt_bias, A_log)]
    step_ref, a_ref, decay_ref = _reference(*leaves, plan)
    real = plan.chunk_len > 0
    assert_close("step", step.T, step_ref, 1e-6)
    assert_close("a", a, a_ref, 1e-5)
    assert_close("chunk_decay", chunk_decay[:, real], decay_ref[:, real], 1e-5)

    da = torch.randn(HEADS, total, device=DEVICE)
    dchunk_decay = torch.randn(HEADS, plan.num_chunks, device=DEVICE)
    ddt_direct = torch.randn(HEADS, total, device=DEVICE)
    dwide = torch.full_like(wide, float("nan"))
    sums = torch.zeros(2, HEADS, device=DEVICE)
    ddt, dA_log, ddt_bias = chunk_cumsum_bwd(
        dt, step, A_log, da, dchunk_decay, chunk_decay, ddt_direct, plan, sums, dt_bias, dwide[:, EXTRA_COLUMNS:]
    )
    loss = (
        (a_ref * da).sum()
        + (decay_ref[:, real] * dchunk_decay[:, real]).sum()
        + (step_ref.T * ddt_direct).sum()
    )
    ddt_ref, ddt_bias_ref, dA_log_ref = torch.autograd.grad(loss, leaves)
    assert ddt.data_ptr() == dwide[:, EXTRA_COLUMNS:].data_ptr()
    assert_close("ddt", ddt.double(), ddt_ref, 1e-5 if dtype == torch.float32 else 1e-2)
    assert_close("ddt_bias", ddt_bias.double(), ddt_bias_ref, 1e-5)
    assert_close("dA_log", dA_log.double(), dA_log_ref, 1e-5)
