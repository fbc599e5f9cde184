"""Fused RMSNorm in Triton, with the residual add or the Mamba2 gate folded into its input.

The forward runs one program per row. The backward is a persistent grid whose programs walk tiles of one or more
rows; the autotuner picks the tile, how many programs share a multiprocessor and how many tiles ahead Triton's loop
pipelining copies into shared memory (the loads in flight that keep the pass at memory speed). The weight gradient
is summed in registers over a program's rows and stored once per program.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.fused.launch import check_triton_device, multiprocessor_count, num_warps_for_row
from gristmill.kernels.interpreter import interpreting

_MAX_DIM = 65536


def _backward_configs() -> list[triton.Config]:
    """Elements per tile (rows = TILE // BLOCK_D, at least one), warps, programs per multiprocessor and the loop's
    stages: Triton copies the next LOOP_STAGES - 1 tiles into shared memory (cp.async) while the current one is
    reduced, so a program keeps loads in flight on its own rather than only between its load and its reduce (on an
    H100 at T 65536: gated D 2048 597 -> 478 us, D 1024 with the residual 210 -> 194 us). Under the interpreter
    one small tile, so the tests' row counts leave a ragged last tile."""
    if interpreting():
        return [triton.Config({"TILE": 256, "PROGRAMS_PER_SM": 4, "LOOP_STAGES": 1}, num_warps=1, num_stages=1)]
    options = ((2048, 4, 2, 3), (2048, 8, 2, 3), (1024, 4, 3, 4), (4096, 8, 2, 3), (2048, 4, 4, 1))
    return [
        triton.Config({"TILE": tile, "PROGRAMS_PER_SM": programs, "LOOP_STAGES": stages}, num_warps=warps,
                      num_stages=1)
        for tile, warps, programs, stages in options
    ]


def _rows_per_tile(tile: int, block_d: int) -> int:
    return max(1, tile // block_d)


@triton.jit
def _gated(x, gate):
    """x * silu(gate) and silu's sigmoid, in float32."""
    sig = tl.sigmoid(gate)
    return x * gate * sig, sig


@triton.jit
def _rms_norm_fwd_kernel(
    X, RESIDUAL, GATE, W, Y, HIDDEN, RSTD, stride_x, stride_gate, D, eps,
    HAS_RESIDUAL: tl.constexpr, HAS_GATE: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    h = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        # round the stream to its storage dtype first, so the norm sees what the next block will add to
        h += tl.load(RESIDUAL + row * D + cols, mask=mask, other=0.0).to(tl.float32)
        h = h.to(HIDDEN.dtype.element_ty).to(tl.float32)
        tl.store(HIDDEN + row * D + cols, h.to(HIDDEN.dtype.element_ty), mask=mask)
    if HAS_GATE:
        h, _ = _gated(h, tl.load(GATE + row * stride_gate + cols, mask=mask, other=0.0).to(tl.float32))
    rstd = 1.0 / tl.sqrt(tl.sum(h * h, axis=0) / D + eps)
    tl.store(RSTD + row, rstd)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * D + cols, (h * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.autotune(configs=_backward_configs(), key=["D", "HAS_DHIDDEN", "HAS_GATE"])
@triton.heuristics({"BLOCK_ROWS": lambda args: _rows_per_tile(args["TILE"], args["BLOCK_D"])})
@triton.jit(do_not_specialize=["n_rows"])
def _rms_norm_bwd_kernel(
    DY, DHIDDEN, X, GATE, W, RSTD, DX, DGATE, DW_PARTIAL, n_rows, stride_x, stride_gate, stride_dgate, D,
    HAS_DHIDDEN: tl.constexpr, HAS_GATE: tl.constexpr, BLOCK_D: tl.constexpr,
    TILE: tl.constexpr, BLOCK_ROWS: tl.constexpr, PROGRAMS_PER_SM: tl.constexpr, LOOP_STAGES: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    col_mask = cols < D
    w = tl.load(W + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    dw = tl.zeros([BLOCK_ROWS, BLOCK_D], dtype=tl.float32)
    for first in tl.range(pid * BLOCK_ROWS, n_rows, tl.num_programs(0) * BLOCK_ROWS, num_stages=LOOP_STAGES):
        rows = first + tl.arange(0, BLOCK_ROWS)
        row_mask = rows < n_rows
        mask = row_mask[:, None] & col_mask[None, :]
        rows64 = rows.to(tl.int64)[:, None]
        x = tl.load(X + rows64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)  # [BR, BD]
        dy = tl.load(DY + rows64 * D + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + rows, mask=row_mask, other=0.0)[:, None]  # [BR, 1]
        if HAS_GATE:
            gate = tl.load(GATE + rows64 * stride_gate + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            h, sig = _gated(x, gate)
        else:
            h = x
        dyw = dy * w
        correction = h * (rstd * rstd * tl.sum(dyw * h, axis=1)[:, None] / D)
        dh = (dyw - correction) * rstd
        if HAS_DHIDDEN:
            dh += tl.load(DHIDDEN + rows64 * D + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_GATE:
            dgate = dh * x * sig * (1.0 + gate * (1.0 - sig))
            tl.store(DGATE + rows64 * stride_dgate + cols[None, :], dgate.to(DGATE.dtype.element_ty), mask=mask)
            dh = dh * gate * sig
        tl.store(DX + rows64 * D + cols[None, :], dh.to(DX.dtype.element_ty), mask=mask)
        dw += dy * h * rstd
    tl.store(DW_PARTIAL + pid.to(tl.int64) * D + cols, tl.sum(dw, axis=0), mask=col_mask)


def rms_norm_fwd(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    gate: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, gate: [M, D] with unit column stride (any row stride); residual: [M, D] contiguous. Returns y
    (contiguous, x's dtype), the stream x + residual (x itself without residual) and rstd [M] in float32."""
    n_rows, dim = x.shape
    y = torch.empty(n_rows, dim, dtype=x.dtype, device=x.device)
    hidden = x if residual is None else torch.empty_like(y)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    if n_rows == 0:
        return y, hidden, rstd
    block = triton.next_power_of_2(dim)
    _rms_norm_fwd_kernel[(n_rows,)](
        x, x if residual is None else residual, x if gate is None else gate, weight, y, hidden, rstd,
        x.stride(0), 0 if gate is None else gate.stride(0), dim, eps,
        HAS_RESIDUAL=residual is not None, HAS_GATE=gate is not None, BLOCK_D=block,
        num_warps=num_warps_for_row(block),
    )  # fmt: skip
    return y, hidden, rstd


def rms_norm_bwd(
    dy: torch.Tensor,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    rstd: torch.Tensor,
    dx: torch.Tensor,
    *,
    dhidden: torch.Tensor | None = None,
    gate: torch.Tensor | None = None,
    dgate: torch.Tensor | None = None,
) -> torch.Tensor:
    """Writes the input's gradient into `dx` and, with `gate`, the gate's into `dgate`; returns dweight.

    hidden is the norm's input before the gate (the stream, with a residual), gate and dgate [M, D] with unit
    column stride (dgate may be a slice of a wider gradient); dy, dx and `dhidden`, the gradient of the
    residual stream, are contiguous.
    """
    n_rows, dim = hidden.shape
    if n_rows == 0:
        return torch.zeros_like(weight)
    block_d = triton.next_power_of_2(dim)
    multiprocessors = multiprocessor_count(hidden.device)

    def programs(meta: dict) -> int:
        rows_per_tile = _rows_per_tile(meta["TILE"], block_d)
        return min(triton.cdiv(n_rows, rows_per_tile), multiprocessors * meta["PROGRAMS_PER_SM"])

    most_per_sm = max(config.kwargs["PROGRAMS_PER_SM"] for config in _rms_norm_bwd_kernel.configs)
    most = min(n_rows, multiprocessors * most_per_sm)
    dw_partial = torch.empty(most, dim, dtype=torch.float32, device=hidden.device)
    _rms_norm_bwd_kernel[lambda meta: (programs(meta),)](
        dy, dy if dhidden is None else dhidden, hidden, hidden if gate is None else gate, weight, rstd, dx,
        dx if dgate is None else dgate, dw_partial, n_rows, hidden.stride(0),
        0 if gate is None else gate.stride(0), 0 if dgate is None else dgate.stride(0), dim,
        HAS_DHIDDEN=dhidden is not None, HAS_GATE=gate is not None, BLOCK_D=block_d,
    )  # fmt: skip
    return dw_partial[: programs(_rms_norm_bwd_kernel.best_config.kwargs)].sum(0).to(weight.dtype)


def _matrix(t: torch.Tensor) -> torch.Tensor:
    """t as [rows, D] with unit column stride, without a copy where the layout allows (a 2D column slice)."""
    t = t.reshape(-1, t.shape[-1])
    return t if t.stride(-1) == 1 else t.contiguous()


class RMSNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, residual, gate, return_stream):
        shape = x.shape
        x2 = _matrix(x) if residual is None else x.reshape(-1, shape[-1]).contiguous()
        residual2 = None if residual is None else residual.reshape(-1, shape[-1]).contiguous()
        gate2 = None if gate is None else _matrix(gate)
        y, hidden, rstd = rms_norm_fwd(x2, weight.contiguous(), eps, residual2, gate2)
        ctx.save_for_backward(hidden, gate2, weight, rstd)
        ctx.set_materialize_grads(False)
        ctx.has_residual, ctx.returns_stream = residual is not None, return_stream
        ctx.shapes = shape, None if gate is None else gate.shape
        if not return_stream:
            return y.view(shape)
        return y.view(shape), hidden.view(shape)

    @staticmethod
    def backward(ctx, dy, *maybe_dhidden):
        hidden, gate, weight, rstd = ctx.saved_tensors
        shape, gate_shape = ctx.shapes
        rows = (hidden.shape[0], shape[-1])
        dy2 = torch.zeros(rows, dtype=hidden.dtype, device=hidden.device) if dy is None else dy.reshape(rows)
        dhidden = maybe_dhidden[0] if ctx.returns_stream else None
        dx = torch.empty(rows, dtype=hidden.dtype, device=hidden.device)
        dgate = None if gate is None else torch.empty(rows, dtype=gate.dtype, device=gate.device)
        dweight = rms_norm_bwd(
            dy2.contiguous(), hidden, weight.contiguous(), rstd, dx,
            dhidden=None if dhidden is None else dhidden.reshape(rows).contiguous(), gate=gate, dgate=dgate,
        )  # fmt: skip
        dx = dx.view(shape)
        return (
            dx, dweight, None, dx if ctx.has_residual else None, None if dgate is None else dgate.view(gate_shape), None
        )


def _check_norm_arguments(op: str, x: torch.Tensor, weight: torch.Tensor, eps: float) -> None:
    if weight.dim() != 1 or weight.shape[0] != x.shape[-1]:
        raise ValueError(f"{op}: weight shape {tuple(weight.shape)} does not match x's last dim {x.shape[-1]}")
    if x.shape[-1] > _MAX_DIM:
        raise ValueError(f"{op}: last dim {x.shape[-1]} is over {_MAX_DIM}, the most one program holds")
    if eps <= 0:
        raise ValueError(f"{op}: eps must be positive, got {eps}")


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    residual: torch.Tensor | None = None,
    *,
    return_stream: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm over the last dim of x `[..., D]` with weight `[D]`, fused with `x + residual` if given.

    Returns y, or (y, x + residual) so the caller keeps the pre-norm residual stream without a second
    pass. Without a residual, `return_stream` returns (y, x): a caller that norms the residual stream and also
    adds into it (say in an output projection's matmul) gets x's two gradients summed inside the norm's one
    backward pass instead of by a separate add. Statistics in float32; y and the stream in x's dtype.

    Example: `y, stream = rms_norm(block_out, norm.weight, residual=stream)`.
    """
    _check_norm_arguments("rms_norm", x, weight, eps)
    if residual is not None and (residual.shape != x.shape or residual.dtype != x.dtype):
        raise ValueError(
            f"rms_norm: residual {tuple(residual.shape)} {residual.dtype} must match x {tuple(x.shape)} {x.dtype}"
        )
    check_triton_device("rms_norm", x, weight)
    return RMSNormFn.apply(x, weight, eps, residual, None, return_stream or residual is not None)


def gated_rms_norm(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mamba2's gated norm, rms_norm(x * silu(gate)) * weight, over the last dim of x and gate `[..., D]`.

    The gated input lives only in registers (float32), so the forward reads x and gate and writes y, and the
    backward reads dy, x and gate and writes dx and dgate. A gate that is a column slice of a wider 2D tensor
    (the Mamba2 in_proj output) is read in place. y in x's dtype, dgate in the gate's.

    Example: `out_proj(gated_rms_norm(scan_out, z, mixer.norm_weight))`.
    """
    _check_norm_arguments("gated_rms_norm", x, weight, eps)
    if gate.shape != x.shape:
        raise ValueError(f"gated_rms_norm: gate shape {tuple(gate.shape)} must match x's {tuple(x.shape)}")
    check_triton_device("gated_rms_norm", x, gate, weight)
    return RMSNormFn.apply(x, weight, eps, None, gate, False)
