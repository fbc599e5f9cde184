"""stream + x @ weight.T through quack's gemm_add against the float64 reference: output and all three gradients (GPU
with quack-kernels installed), and when it declines to run or has failed."""

import pytest
import torch

from gristmill.kernels.fused import stream_projection
from gristmill.kernels.fused.stream_projection import (
    QuackProjectionFailed, project_into_stream, project_into_stream_unavailable_reason,
)
from gristmill.kernels.fused.swiglu_mlp import quack_mlp
from gristmill.kernels.testing import assert_close


def _quack_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    x, w, s = (torch.empty(shape, device="cuda", dtype=torch.bfloat16) for shape in ((8, 64), (128, 64), (8, 128)))
    return project_into_stream_unavailable_reason(x, w, s) is None


ON_QUACK = pytest.mark.skipif(not _quack_ready(), reason="needs a Hopper GPU with quack-kernels installed")


def test_declines_cpu_and_mismatched_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_projection, "_failure", None)
    x, w, s = torch.randn(4, 16), torch.randn(32, 16), torch.randn(4, 32)
    assert "CUDA" in project_into_stream_unavailable_reason(x, w, s)
    if torch.cuda.is_available():
        cuda = [t.cuda().bfloat16() for t in (x, w, s[:, :24])]
        assert project_into_stream_unavailable_reason(*cuda) is not None


def test_a_failure_inside_quack_is_reported_and_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> torch.Tensor:
        raise TypeError("epilogue fn depends on <Logger>, which has no fail-closed semantic key")

    monkeypatch.setattr(stream_projection, "_quack_gemms", lambda: (quack_mlp._QuackGEMMs(*[broken] * 4), None))
    monkeypatch.setattr(stream_projection, "_failure", None)
    x, w, s = torch.randn(4, 16), torch.randn(32, 16), torch.randn(4, 32)
    with pytest.raises(QuackProjectionFailed, match="TypeError: epilogue fn"):
        project_into_stream(x, w, s)
    assert "quack failed earlier in this run: TypeError" in project_into_stream_unavailable_reason(x, w, s)


@ON_QUACK
@pytest.mark.parametrize("tokens, width_in, width_out", [(4096, 1024, 1024), (1000, 2048, 1024), (37, 128, 256)])
@pytest.mark.parametrize("autocast", [False, True], ids=["bf16", "autocast-fp32-weight"])
def test_matches_reference(tokens: int, width_in: int, width_out: int, autocast: bool) -> None:
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    weight_dtype = torch.float32 if autocast else torch.bfloat16
    x = torch.randn(tokens, width_in, device="cuda").bfloat16()
    w = (torch.randn(width_out, width_in, device="cuda") / width_in**0.5).to(weight_dtype)
    stream = torch.randn(tokens, width_out, device="cuda").bfloat16()
    dy = torch.randn(tokens, width_out, device="cuda").bfloat16()
    leaves = [t.clone().requires_grad_() for t in (x, w, stream)]
    refs = [t.double().requires_grad_() for t in (x, w, stream)]
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        y = project_into_stream(*leaves)
    y_ref = refs[2] + refs[0] @ refs[1].T
    assert_close("y", y, y_ref, 1e-2)
    grads = torch.autograd.grad(y, leaves, dy)
    ref_grads = torch.autograd.grad(y_ref, refs, dy.double())
    for name, grad, ref, leaf in zip(["dx", "dweight", "dstream"], grads, ref_grads, leaves):
        assert grad.dtype == leaf.dtype, f"{name} dtype {grad.dtype} != {leaf.dtype}"
        assert_close(name, grad, ref, 1e-2)
