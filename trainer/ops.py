"""The one dispatch point between the model and the kernels: Triton on CUDA, plain PyTorch otherwise.

Each op calls its `gristmill.kernels` kernel when its input lives on a CUDA device and kernels are enabled;
else it runs the plain-PyTorch reference that ships beside that kernel (the same function the kernel tests
compare against).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gristmill.kernels.attention.projected_rotary_qkv import (
    QuackQKVFailed, normed_projected_rotary_qkv_attention, normed_projected_rotary_qkv_attention_unavailable_reason,
    projected_rotary_qkv_attention, projected_rotary_qkv_attention_unavailable_reason,
)
from gristmill.kernels.attention.rotary_qkv import rotary_qkv_attention as rotary_qkv_attention_kernel
from gristmill.kernels.attention.rotary_qkv import rotary_qkv_attention_reference
from gristmill.kernels.fused import linear_cross_entropy as linear_cross_entropy_kernel
from gristmill.kernels.fused import rms_norm as rms_norm_kernel
from gristmill.kernels.fused import swiglu_halves as swiglu_halves_kernel
from gristmill.kernels.fused.embedding import embedding as embedding_kernel
from gristmill.kernels.fused.embedding import embedding_reference
from gristmill.kernels.fused.linear_cross_entropy.quack_lce import (
    QuackLossFailed, quack_linear_cross_entropy, quack_linear_cross_entropy_unavailable_reason,
)
from gristmill.kernels.fused.linear_cross_entropy.reference import linear_cross_entropy_reference
from gristmill.kernels.fused.quack_projection import (
    QuackProjectionFailed, quack_projection, quack_projection_unavailable_reason,
)
from gristmill.kernels.fused.rms_norm.reference import rms_norm_reference
from gristmill.kernels.fused.swiglu.reference import swiglu_halves_reference
from gristmill.kernels.fused.swiglu_mlp import projected_norm_mlp as projected_norm_mlp_kernel
from gristmill.kernels.fused.swiglu_mlp import swiglu_mlp as swiglu_mlp_kernel
from gristmill.kernels.fused.swiglu_mlp import (
    QuackMLPFailed, projected_norm_mlp_unavailable_reason, swiglu_mlp_unavailable_reason,
)
from gristmill.kernels.ssd import mamba_mixer_core as mamba_mixer_core_kernel
from gristmill.kernels.ssd.mixer_reference import mamba_mixer_core_reference
from gristmill.pipeline.log import get_logger
from gristmill.trainer.models.segments import Segments


def _opaque_to_compile(kernel: Callable) -> Callable:
    """A Triton kernel's entry point that torch.compile calls as it is instead of tracing into it: inductor
    cannot re-trace every one of our autograd functions (torch 2.11 failed on attention and SSD), and the
    kernels are already fused, so a compiled block graph-breaks around them and compiles the rest."""
    return torch.compiler.disable(kernel)


embedding_kernel = _opaque_to_compile(embedding_kernel)
rotary_qkv_attention_kernel = _opaque_to_compile(rotary_qkv_attention_kernel)
projected_rotary_qkv_attention = _opaque_to_compile(projected_rotary_qkv_attention)
normed_projected_rotary_qkv_attention = _opaque_to_compile(normed_projected_rotary_qkv_attention)
mamba_mixer_core_kernel = _opaque_to_compile(mamba_mixer_core_kernel)
rms_norm_kernel = _opaque_to_compile(rms_norm_kernel)
swiglu_halves_kernel = _opaque_to_compile(swiglu_halves_kernel)
swiglu_mlp_kernel = _opaque_to_compile(swiglu_mlp_kernel)
projected_norm_mlp_kernel = _opaque_to_compile(projected_norm_mlp_kernel)
linear_cross_entropy_kernel = _opaque_to_compile(linear_cross_entropy_kernel)
quack_linear_cross_entropy = _opaque_to_compile(quack_linear_cross_entropy)
quack_projection = _opaque_to_compile(quack_projection)

_log = get_logger(__name__)

_kernels_enabled = True
_quack_mlp_enabled = True
_quack_loss_enabled = True
_quack_qkv_enabled = True
_quack_projections_enabled = True


def enable_kernels(
    enabled: bool, *, quack_mlp: bool = True, quack_loss: bool = True, quack_qkv: bool = True,
    quack_projections: bool = True,
) -> None:
    """Turns the Triton path on or off for the whole process (off: every op takes its reference), and with it
    quack's MLP GEMMs, its linear + cross-entropy, its rotary qkv projection and its GEMMs for the Mamba2 mixer's
    projections where that package is installed."""
    global _kernels_enabled, _quack_mlp_enabled, _quack_loss_enabled, _quack_qkv_enabled, _quack_projections_enabled
    _kernels_enabled, _quack_mlp_enabled, _quack_loss_enabled = enabled, quack_mlp, quack_loss
    _quack_qkv_enabled, _quack_projections_enabled = quack_qkv, quack_projections


def _on_kernel(tensor: torch.Tensor) -> bool:
    return _kernels_enabled and tensor.is_cuda


def embed(ids: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """weight's rows at ids `[T]` in `dtype`, the residual stream's: on CUDA one gather that casts as it goes, whose
    backward sums the table's gradient in sorted order (deterministic, no host wait); else F.embedding and a cast."""
    kernel = embedding_kernel if _on_kernel(weight) else embedding_reference
    return kernel(ids, weight, dtype)


def project_rotary_attention(
    x: torch.Tensor, w_qkv: torch.Tensor, n_heads: int, n_kv_heads: int, theta: float, segments: Segments
) -> torch.Tensor:
    """Causal attention within each segment of x `[T, d]` projected by w_qkv (rows [q heads | k heads | v heads])
    with RoPE on q and k -> `[T, Hq, D]`: quack's GEMM with RoPE in its epilogue where quack runs these inputs, else
    a matmul and the attention kernel's own RoPE pass."""
    args = (segments.position_ids, segments.cu_seqlens, segments.max_seqlen)
    heads = dict(n_heads=n_heads, n_kv_heads=n_kv_heads, theta=theta)
    if not _on_kernel(x):
        return rotary_qkv_attention_reference(F.linear(x, w_qkv), *args, **heads, rows=segments.rows)
    if _quack_qkv_enabled and projected_rotary_qkv_attention_unavailable_reason(x, w_qkv, n_heads, n_kv_heads) is None:
        try:
            return projected_rotary_qkv_attention(x, w_qkv, *args, **heads)
        except QuackQKVFailed as failure:
            _warn_quack_qkv_failed(failure)
    return rotary_qkv_attention_kernel(F.linear(x, w_qkv), *args, **heads)


def norm_project_rotary_attention(
    stream: torch.Tensor, rstd: torch.Tensor | None, norm_weight: torch.Tensor, eps: float, w_qkv: torch.Tensor,
    n_heads: int, n_kv_heads: int, theta: float, segments: Segments,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(`project_rotary_attention(rmsnorm(stream) * norm_weight, ...)`, stream), the stream handed back through the
    op. With `rstd` (each row's, from the GEMM that wrote the stream) the norm folds into quack's qkv GEMMs where
    they run these inputs; else the norm kernel runs first."""
    if rstd is not None and _on_kernel(stream) and _quack_qkv_enabled and (
        normed_projected_rotary_qkv_attention_unavailable_reason(stream, w_qkv, n_heads, n_kv_heads) is None
    ):
        try:
            return normed_projected_rotary_qkv_attention(
                stream, rstd, norm_weight, w_qkv, segments.position_ids, segments.cu_seqlens, segments.max_seqlen,
                n_heads=n_heads, n_kv_heads=n_kv_heads, theta=theta,
            )  # fmt: skip
        except QuackQKVFailed as failure:
            _warn_quack_qkv_failed(failure)
    h, stream = rms_norm(stream, norm_weight, eps)
    return project_rotary_attention(h, w_qkv, n_heads, n_kv_heads, theta, segments), stream


def _warn_quack_qkv_failed(failure: QuackQKVFailed) -> None:
    _log.warning(f"quack's qkv projection failed ({failure}); this run goes on with cuBLAS and the RoPE pass "
                 "(quack_qkv = false skips quack from the start)")


def mamba_mixer_core(
    zxbcdt: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor,
    dt_bias: torch.Tensor,
    A_log: torch.Tensor,
    D: torch.Tensor,
    norm_weight: torch.Tensor,
    eps: float,
    *,
    groups: int,
    chunk_size: int,
    cu_seqlens: torch.Tensor,
) -> torch.Tensor:
    """Mamba2 in_proj output [T, d_inner + conv_dim + H] -> rmsnorm(SSD(conv1d(xBC)) * silu(z)) * norm_weight
    [T, d_inner], out_proj's input, with the conv window and the scan state restarting at every segment start."""
    kernel = mamba_mixer_core_kernel if _on_kernel(zxbcdt) else mamba_mixer_core_reference
    return kernel(
        zxbcdt, conv_weight, conv_bias, dt_bias, A_log, D, norm_weight, eps,
        groups=groups, chunk_size=chunk_size, cu_seqlens=cu_seqlens,
    )  # fmt: skip


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(norm(stream), stream) with stream = x (+ residual), added in the norm's kernel. The kernel hands the stream
    back through the norm, so the gradient that reaches it from where it is used next (an output projection that
    adds into it, or the next norm's residual) joins the norm's own gradient in the norm's one backward pass
    instead of in a separate add."""
    if _on_kernel(x):
        return rms_norm_kernel(x, weight, eps, residual, return_stream=True)
    if residual is not None:
        return rms_norm_reference(x, weight, eps, residual)
    return rms_norm_reference(x, weight, eps), x


QUACK_PROJECTION_MIN_TOKENS = 32769
"""quack's GEMM call costs more host time than cuBLAS's, so where the host sets the pace its faster GEMMs lose:
hybrid_350m's eager step with the Mamba2 projections on quack read 0.96x at 16,384 tokens per micro-batch, 1.00x at
32,768 and 1.014x at 65,536 (bench/results/end_to_end.md run 12). Below this many tokens `project` keeps cuBLAS."""


def project(x: torch.Tensor, weight: torch.Tensor, stream: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight.T, plus the stream if given: quack's GEMMs (the stream read in the epilogue) where quack runs these
    inputs and the batch is large enough for them to pay (`QUACK_PROJECTION_MIN_TOKENS`), else cuBLAS (`F.linear`,
    `project_into_stream`)."""
    quack_allowed = _on_kernel(x) and _quack_projections_enabled and x.shape[0] >= QUACK_PROJECTION_MIN_TOKENS
    if quack_allowed and quack_projection_unavailable_reason(x, weight) is None:
        try:
            return quack_projection(x, weight, stream)
        except QuackProjectionFailed as failure:
            _log.warning(f"quack's projection failed ({failure}); this run goes on with cuBLAS "
                         "(quack_projections = false skips quack from the start)")
    return F.linear(x, weight) if stream is None else project_into_stream(x, weight, stream)


def project_into_stream(x: torch.Tensor, weight: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
    """stream + x @ weight.T from one matmul whose epilogue reads the stream (cuBLAS's beta = 1): the residual add
    costs no pass of its own, and the next norm reads one tensor instead of a delta and the stream."""
    return torch.addmm(stream, x, weight.t())


def swiglu_halves(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(first half) * second half of the last dim: the MLP's one gate+up projection."""
    if _on_kernel(gate_up):
        return swiglu_halves_kernel(gate_up)
    return swiglu_halves_reference(gate_up)


def swiglu_mlp(
    x: torch.Tensor, w_gate_up: torch.Tensor, w_down: torch.Tensor, stream: torch.Tensor
) -> torch.Tensor:
    """stream + down(silu(gate) * up) of the MLP's projections (w_gate_up's rows are [gate | up]): quack's GEMMs with
    the activation and the residual add in their epilogues where quack is installed and runs these inputs, else a
    matmul, `swiglu_halves` and `project_into_stream`."""
    if _on_kernel(x) and _quack_mlp_enabled and swiglu_mlp_unavailable_reason(x, w_gate_up, w_down) is None:
        try:
            return swiglu_mlp_kernel(x, w_gate_up, w_down, stream)
        except QuackMLPFailed as failure:
            _warn_quack_mlp_failed(failure)
    return project_into_stream(swiglu_halves(F.linear(x, w_gate_up)), w_down, stream)


def project_norm_mlp(
    core: torch.Tensor,
    w_out: torch.Tensor,
    stream: torch.Tensor,
    norm_weight: torch.Tensor,
    eps: float,
    w_gate_up: torch.Tensor,
    w_down: torch.Tensor,
    next_norm_eps: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(h + MLP(rmsnorm(h)) with h = stream + core @ w_out.T, the residual stream out of an attention block, None):
    quack's GEMMs with the residual add, the norm's statistics and its row scale in their epilogues where quack runs
    these inputs, else the projection, `rms_norm` with the residual and `swiglu_mlp`. On quack's path, with
    `next_norm_eps` and quack's qkv GEMMs on, the None is each output row's rstd for the next attention block's
    norm (`norm_project_rotary_attention`)."""
    quack_allowed = _on_kernel(core) and _quack_mlp_enabled
    if quack_allowed and projected_norm_mlp_unavailable_reason(core, w_out, stream, w_gate_up, w_down) is None:
        try:
            return projected_norm_mlp_kernel(
                core, w_out, stream, norm_weight, eps, w_gate_up, w_down, next_norm_eps if _quack_qkv_enabled else None
            )
        except QuackMLPFailed as failure:
            _warn_quack_mlp_failed(failure)
    h, stream = rms_norm(F.linear(core, w_out), norm_weight, eps, residual=stream)
    return swiglu_mlp(h, w_gate_up, w_down, stream), None


def _warn_quack_mlp_failed(failure: QuackMLPFailed) -> None:
    _log.warning(f"quack's MLP failed ({failure}); this run goes on with cuBLAS and the Triton SwiGLU "
                 "(quack_mlp = false skips quack from the start)")


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *, ignore_index: int, z_loss: float
) -> torch.Tensor:
    """Summed (not averaged) token loss of hidden [N, D] @ weight[V, D].T against labels [N]: quack's scaled-exp
    pipeline where quack is installed and runs these inputs, else our chunked kernel."""
    if _on_kernel(hidden):
        if _quack_loss_enabled and quack_linear_cross_entropy_unavailable_reason(hidden, weight, z_loss=z_loss) is None:
            try:
                return quack_linear_cross_entropy(hidden, weight, labels, ignore_index=ignore_index)
            except QuackLossFailed as failure:
                _log.warning(f"quack's loss failed ({failure}); this run goes on with the Triton linear + "
                             "cross-entropy (quack_loss = false skips quack from the start)")
        if torch.is_autocast_enabled(hidden.device.type):  # a custom kernel is not autocast: cast as a matmul would
            dtype = torch.get_autocast_dtype(hidden.device.type)
            hidden, weight = hidden.to(dtype), weight.to(dtype)
        return linear_cross_entropy_kernel(
            hidden, weight, labels, ignore_index=ignore_index, z_loss=z_loss, reduction="sum"
        )
    return linear_cross_entropy_reference(
        hidden, weight, labels, ignore_index=ignore_index, z_loss=z_loss, reduction="sum"
    )
