"""The model's configuration: sizes, the layer pattern and the Mamba2 (SSD) settings."""

from dataclasses import dataclass, field

from gristmill.kernels.ssd.conv1d import MAX_CONV_WIDTH

LAYER_KINDS = {"A": "attention + SwiGLU MLP", "M": "Mamba2 (SSD) mixer"}


@dataclass(kw_only=True)
class SSMConfig:
    d_state: int = 64
    """State size N per head group."""
    d_conv: int = 4
    """Width of the short causal convolution before the scan."""
    expand: int = 2
    """Inner width of the Mamba2 mixer as a multiple of d_model."""
    head_dim: int = 64
    """Channels P per SSM head; heads = expand * d_model / head_dim."""
    n_groups: int = 1
    """Groups sharing B and C (like GQA's key/value heads)."""
    chunk_size: int = 256
    """Chunk length of the SSD scan; a packed row must hold whole chunks."""
    dt_min: float = 0.001
    dt_max: float = 0.1
    """Range of the initial step size dt (log-uniform)."""

    def __post_init__(self) -> None:
        for name in ("d_state", "d_conv", "expand", "head_dim", "n_groups", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ssm.{name} must be at least 1, got {getattr(self, name)}")
        if self.d_conv > MAX_CONV_WIDTH:
            raise ValueError(f"ssm.d_conv must be at most {MAX_CONV_WIDTH} (the conv1d kernel's window), got {self.d_conv}")
        if self.chunk_size < 16 or self.chunk_size & (self.chunk_size - 1):
            raise ValueError(f"ssm.chunk_size must be a power of two >= 16 (SSD kernel tiles), got {self.chunk_size}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"ssm.dt_min/dt_max must satisfy 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")


@dataclass(kw_only=True)
class ModelConfig:
    vocab_size: int = 256
    """Embedding rows; at least the token dataset's vocab_size."""
    d_model: int = 64
    layer_pattern: str = "AA"
    """One letter per layer: A = attention + MLP block, M = Mamba2 block (e.g. "MMAMMA")."""
    n_heads: int = 4
    n_kv_heads: int = 2
    """Key/value heads for grouped-query attention; divides n_heads."""
    ffn_hidden: int = 0
    """SwiGLU hidden width; 0 picks 8/3 * d_model rounded up to a multiple of 64."""
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    """Use the input embedding as the output head."""
    init_std: float = 0.02
    z_loss: float = 0.0
    """Weight of the logsumexp^2 penalty that keeps logits from drifting."""
    ssm: SSMConfig = field(default_factory=SSMConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.layer_pattern) - set(LAYER_KINDS))
        if not self.layer_pattern or unknown:
            kinds = ", ".join(f"{k} = {v}" for k, v in LAYER_KINDS.items())
            raise ValueError(f"model.layer_pattern {self.layer_pattern!r}: use letters {kinds}")
        if self.d_model % self.n_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")
        if self.head_dim % 2:
            raise ValueError(f"model.d_model / model.n_heads = {self.head_dim} must be even for RoPE")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"model.n_kv_heads ({self.n_kv_heads}) must divide model.n_heads ({self.n_heads})")
        if "M" in self.layer_pattern and self.d_inner % self.ssm.head_dim:
            raise ValueError(
                f"model.ssm.expand * model.d_model = {self.d_inner} must be divisible by ssm.head_dim "
                f"({self.ssm.head_dim})"
            )
        if self.ffn_hidden < 0:
            raise ValueError(f"model.ffn_hidden must be >= 0 (0 = default), got {self.ffn_hidden}")
        if self.ffn_hidden == 0:
            self.ffn_hidden = -(-8 * self.d_model // 3 // 64) * 64

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def d_inner(self) -> int:
        return self.ssm.expand * self.d_model

    @property
    def ssm_heads(self) -> int:
        return self.d_inner // self.ssm.head_dim
