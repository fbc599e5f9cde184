"""The Mamba2 mixer core as plain PyTorch ops: in_proj output -> conv1d -> SSD scan -> gated RMSNorm with z.

The ground truth of the fused Triton function (`mixer.py`) and the trainer's CPU path. Both take the in_proj
output `zxbcdt` `[T, d_inner + conv_dim + H]` (z, then the conv input xBC = [x, B, C], then dt) and share the
column layout below.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gristmill.kernels.fused.rms_norm.reference import gated_rms_norm_reference
from gristmill.kernels.ssd.conv1d_reference import causal_conv1d_reference
from gristmill.kernels.ssd.reference import ssd_chunked_reference


@dataclass(frozen=True, slots=True)
class MixerLayout:
    """Column layout of the in_proj output and of the conv output, derived from the parameters' shapes."""

    d_inner: int
    conv_dim: int
    heads: int
    groups: int

    @property
    def head_dim(self) -> int:
        return self.d_inner // self.heads

    @property
    def d_state(self) -> int:
        return (self.conv_dim - self.d_inner) // (2 * self.groups)

    def split_projection(self, zxbcdt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views z `[T, d_inner]`, xBC `[T, conv_dim]` and dt `[T, H]` of `zxbcdt`."""
        return zxbcdt.split([self.d_inner, self.conv_dim, self.heads], dim=-1)

    def split_conv(self, xbc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views x `[T, H, P]`, B and C `[T, G, N]` of a conv output (or its gradient) `[T, conv_dim]`."""
        total = xbc.shape[0]
        x, B, C = xbc.split([self.d_inner, self.groups * self.d_state, self.groups * self.d_state], dim=-1)
        return (
            x.reshape(total, self.heads, self.head_dim),
            B.reshape(total, self.groups, self.d_state),
            C.reshape(total, self.groups, self.d_state),
        )


def mixer_layout(zxbcdt: torch.Tensor, conv_weight: torch.Tensor, dt_bias: torch.Tensor, groups: int) -> MixerLayout:
    """The layout the shapes imply; raises ValueError naming the argument whose shape does not fit. The conv and
    the scan check the other arguments."""
    if zxbcdt.dim() != 2:
        raise ValueError(f"zxbcdt must be [T, d_inner + conv_dim + H], got shape {tuple(zxbcdt.shape)}")
    if conv_weight.dim() != 2:
        raise ValueError(f"conv_weight must be [conv_dim, width], got shape {tuple(conv_weight.shape)}")
    if dt_bias.dim() != 1:
        raise ValueError(f"dt_bias must be [H], got shape {tuple(dt_bias.shape)}")
    heads, conv_dim = dt_bias.shape[0], conv_weight.shape[0]
    d_inner = zxbcdt.shape[1] - conv_dim - heads
    if heads == 0 or d_inner <= 0 or d_inner % heads:
        raise ValueError(
            f"zxbcdt width {zxbcdt.shape[1]} minus conv_dim {conv_dim} and H {heads} leaves d_inner {d_inner}, "
            f"which must be a positive multiple of H"
        )
    state_width = conv_dim - d_inner
    if groups <= 0 or state_width <= 0 or state_width % (2 * groups):
        raise ValueError(
            f"conv_dim {conv_dim} minus d_inner {d_inner} leaves {state_width} columns for B and C, which must be "
            f"a positive multiple of 2 x groups (groups={groups})"
        )
    return MixerLayout(d_inner=d_inner, conv_dim=conv_dim, heads=heads, groups=groups)


def check_gated_norm(layout: MixerLayout, norm_weight: torch.Tensor, eps: float) -> None:
    """Raises ValueError unless norm_weight is `[d_inner]` and eps positive."""
    if norm_weight.dim() != 1 or norm_weight.shape[0] != layout.d_inner:
        raise ValueError(f"norm_weight must be [d_inner] = [{layout.d_inner}], got shape {tuple(norm_weight.shape)}")
    if eps <= 0:
        raise ValueError(f"the gated norm's eps must be positive, got {eps}")


def discretization(dt: torch.Tensor, dt_bias: torch.Tensor, A_log: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The scan's positive step softplus(dt + dt_bias) `[T, H]` and negative rate -exp(A_log) `[H]`, in fp32."""
    return F.softplus(dt.float() + dt_bias), -torch.exp(A_log.float())


def mamba_mixer_core_reference(
    zxbcdt: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    dt_bias: torch.Tensor,
    A_log: torch.Tensor,
    D: torch.Tensor | None,
    norm_weight: torch.Tensor,
    eps: float,
    *,
    groups: int,
    chunk_size: int,
    cu_seqlens: torch.Tensor | None = None,
) -> torch.Tensor:
    """rmsnorm(SSD(conv1d(xBC), dt) * silu(z)) * norm_weight `[T, d_inner]` in zxbcdt's dtype; see
    `mamba_mixer_core` for the arguments."""
    layout = mixer_layout(zxbcdt, conv_weight, dt_bias, groups)
    check_gated_norm(layout, norm_weight, eps)
    z, xbc, dt = layout.split_projection(zxbcdt)
    x, B, C = layout.split_conv(causal_conv1d_reference(xbc, conv_weight, conv_bias, cu_seqlens=cu_seqlens))
    dt, A = discretization(dt, dt_bias, A_log)
    y = ssd_chunked_reference(x, dt, A, B, C, D=D, cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    return gated_rms_norm_reference(y.reshape(z.shape), z, norm_weight, eps)
