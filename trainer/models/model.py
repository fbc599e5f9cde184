"""The decoder-only language model: embedding, a stack of pre-norm residual blocks, the output head."""

import math

import torch
from torch import nn

from gristmill.trainer import ops
from gristmill.trainer.models.attention import Attention
from gristmill.trainer.models.config import ModelConfig
from gristmill.trainer.models.mamba2 import Mamba2
from gristmill.trainer.models.mlp import SwiGLU
from gristmill.trainer.models.norm import RMSNorm
from gristmill.trainer.models.segments import Segments

IGNORE_INDEX = -100


class AttentionBlock(nn.Module):
    """Pre-norm attention and MLP, residual stream in and out; no residual add is a pass of its own. The attention
    heads' output, its projection `wo`, the residual add, the MLP's norm and the MLP run as one op
    (`ops.project_norm_mlp`): on quack's GEMMs the projection adds the stream and the norm's statistics in its
    epilogue and the MLP's first GEMM applies them; elsewhere the norm's kernel adds the projection's output into
    the stream (one kernel reads both and writes the stream and its norm; through cuBLAS an epilogue add would
    cost a copy of the stream, as ATen's addmm copies it into the output first). The MLP adds into the stream in
    its down projection's epilogue, so the next block's norm reads only the stream; where that block is an attention
    block, the same epilogue sums each row's squares and the next norm folds into its qkv projection on quack's GEMMs
    (`ops.norm_project_rotary_attention`): no norm pass in either direction."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.ffn_hidden)

    def forward(
        self, stream: torch.Tensor, segments: Segments, rstd: torch.Tensor | None = None,
        next_norm_eps: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the stream out, its rows' rstd or None): with `next_norm_eps` the MLP's last GEMM also sums the squares
        of the rows it writes, so the next attention block's norm needs no pass (`rstd` is that for this block)."""
        core, stream = self.attn(stream, self.attn_norm, segments, rstd)
        return ops.project_norm_mlp(
            core, self.attn.wo.weight, stream, self.mlp_norm.weight, self.mlp_norm.eps, self.mlp.gate_up.weight,
            self.mlp.down.weight, next_norm_eps,
        )  # fmt: skip


class MambaBlock(nn.Module):
    """Pre-norm Mamba2 mixer, residual stream in and out like `AttentionBlock`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mixer = Mamba2(cfg)

    def forward(
        self, stream: torch.Tensor, segments: Segments, rstd: torch.Tensor | None = None,
        next_norm_eps: float | None = None,
    ) -> tuple[torch.Tensor, None]:
        """(the stream out, None): takes `AttentionBlock`'s arguments, but neither uses an rstd nor hands one on."""
        if rstd is not None:
            raise ValueError("MambaBlock norms its input itself: it takes no rstd from the block before")
        h, stream = self.norm(stream)
        return self.mixer(h, segments, stream), None


_BLOCKS = {"A": AttentionBlock, "M": MambaBlock}


class LanguageModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(_BLOCKS[kind](cfg) for kind in cfg.layer_pattern)
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.output = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        # a block followed by an attention block may hand it the stream's rstd (the norm folded into its GEMMs)
        self._next_norm_eps = [cfg.norm_eps if kind == "A" else None for kind in cfg.layer_pattern[1:]] + [None]
        self.init_weights()

    def init_weights(self) -> None:
        """Normal(init_std) for embeddings and projections; the projections that write into the residual
        stream get init_std / sqrt(2 * layers) so the stream's variance does not grow with depth."""
        residual_std = self.cfg.init_std / math.sqrt(2 * len(self.layers))
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                writes_residual = name.endswith(("attn.wo", "mlp.down", "mixer.out_proj"))
                nn.init.normal_(module.weight, std=residual_std if writes_residual else self.cfg.init_std)

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor, segments: Segments
    ) -> torch.Tensor:
        """input_ids, labels [B, L] -> the summed loss over labels != IGNORE_INDEX (a scalar)."""
        # The residual stream in the compute dtype (as FSDP2's bf16 parameters make it): a float32 stream would
        # make every projection cast its input again and double the residual adds' memory traffic.
        device = input_ids.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else self.embed.weight.dtype
        x = ops.embed(input_ids.reshape(-1), self.embed.weight, dtype)
        rstd = None
        for layer, next_norm_eps in zip(self.layers, self._next_norm_eps):
            x, rstd = layer(x, segments, rstd, next_norm_eps)
        x, _ = self.norm(x)
        head = self.embed.weight if self.output is None else self.output.weight
        return ops.linear_cross_entropy(
            x, head, labels.reshape(-1), ignore_index=IGNORE_INDEX, z_loss=self.cfg.z_loss
        )


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters that take part in a matrix product per token (everything but the embedding lookup)."""
    model = torch.device("meta")
    with model:
        counted = LanguageModel(cfg)
    total = sum(p.numel() for p in counted.parameters())
    return total - (0 if cfg.tie_embeddings else cfg.vocab_size * cfg.d_model)

