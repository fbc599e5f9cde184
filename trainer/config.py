"""The training run's configuration tree; TOML recipes, presets and tests all fill this one tree."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gristmill.trainer.models.config import ModelConfig


@dataclass(kw_only=True)
class DataConfig:
    manifests: list[Path] = field(default_factory=list)
    """Token dataset directories (each holds manifest.json); several are mixed by `weights`."""
    weights: list[float] = field(default_factory=list)
    """Sampling weight per dataset; empty = equal weights."""
    seq_len: int = 64
    """Tokens per packed row."""
    packing: Literal["concat", "best_fit"] = "best_fit"
    best_fit_buffer: int = 2048
    """Documents per best-fit round: larger packs tighter, costs more memory and start-up. On log-normal web-text
    lengths (median 500 tokens) into rows of 4096, 512 documents fill 99.45% of the slots on average and a 16-row
    batch can come out 94% full; 2048 fill 99.86%."""
    num_workers: int = 0
    """DataLoader worker processes per rank (0 = pack in the training process)."""
    seed: int = 0
    """Seed of the document order; the same seed gives the same token stream."""
    tokenizer_sha256: str | None = None
    """If set, every dataset must have been tokenized by the tokenizer with this hash."""

    def __post_init__(self) -> None:
        if self.weights and len(self.weights) != len(self.manifests):
            raise ValueError(f"data.weights has {len(self.weights)} entries for {len(self.manifests)} manifests")
        if any(w < 0 for w in self.weights) or (self.weights and sum(self.weights) <= 0):
            raise ValueError(f"data.weights must be non-negative and not all zero, got {self.weights}")
        if self.seq_len < 2:
            raise ValueError(f"data.seq_len must be at least 2, got {self.seq_len}")
        if self.best_fit_buffer < 1:
            raise ValueError(f"data.best_fit_buffer must be at least 1, got {self.best_fit_buffer}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass(kw_only=True)
class OptimizerConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    """Applied to matrices only; norms, biases and per-head SSM parameters are not decayed."""
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optimizer.lr must be positive, got {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optimizer.betas must lie in [0, 1), got {self.betas}")
        if self.grad_clip < 0:
            raise ValueError(f"optimizer.grad_clip must be >= 0, got {self.grad_clip}")


@dataclass(kw_only=True)
class ScheduleConfig:
    kind: Literal["cosine", "wsd"] = "cosine"
    """cosine: warmup then cosine decay; wsd: warmup, stable, then linear decay over `decay_fraction`."""
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of optimizer.lr."""
    decay_fraction: float = 0.2
    """wsd only: share of the steps spent decaying at the end."""

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"schedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"schedule.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError(f"schedule.decay_fraction must lie in (0, 1], got {self.decay_fraction}")


@dataclass(kw_only=True)
class CheckpointConfig:
    every_steps: int = 1000
    """Save every this many steps (and at the end); 0 saves only at the end."""
    keep_last: int = 3
    """Older checkpoints are deleted once a newer one is complete."""

    def __post_init__(self) -> None:
        if self.every_steps < 0 or self.keep_last < 1:
            raise ValueError(
                f"checkpoint.every_steps must be >= 0 and keep_last >= 1, got {self.every_steps}, {self.keep_last}"
            )


@dataclass(kw_only=True)
class MetricsConfig:
    log_every: int = 10
    """Steps between log lines / JSONL records / TensorBoard points."""
    tensorboard: bool = True
    """Also write TensorBoard events (needs the `tensorboard` package; skipped with a warning otherwise)."""
    peak_tflops: float = 0.0
    """Peak dense bf16 TFLOP/s of one accelerator for MFU; 0 = look the device up (H100/H200), else no MFU."""

    def __post_init__(self) -> None:
        if self.log_every < 1:
            raise ValueError(f"metrics.log_every must be >= 1, got {self.log_every}")


@dataclass(kw_only=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    out_dir: Path = Path("out/train")
    """Checkpoints, metrics.jsonl and TensorBoard events go here."""
    steps: int = 1000
    micro_batch_rows: int = 8
    """Rows of seq_len tokens per forward pass per rank."""
    grad_accum_steps: int = 1
    """Forward/backward passes per optimizer step; global batch = rows x accum x ranks."""
    eval_every: int = 0
    """Steps between validation passes (0 = never); needs a validation split in the manifests."""
    eval_batches: int = 20
    """Most micro-batches per validation pass per rank."""
    seed: int = 0
    """Seed of the model's initialization."""
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """Compute dtype on GPU (autocast, and FSDP2's parameter dtype); CPU always runs float32."""
    compile: bool = False
    """torch.compile each block."""
    kernels: bool = True
    """Use the Triton kernels on GPU; False forces the PyTorch reference ops."""
    quack_mlp: bool = True
    """With kernels on a Hopper or newer GPU, run the MLP on quack-kernels' GEMMs (SwiGLU and its gradient in their
    epilogues; in attention blocks also the output projection, the residual add and the MLP norm's statistics)
    when that optional package is installed (`pip install 'gristmill[quack]'`); False keeps cuBLAS, the Triton
    norm and the Triton SwiGLU kernel. quack's MLP keeps each activation for the backward, so its peak memory is
    about the cuBLAS path's (transformer_350m at 16 rows of 4096: 49.9 GiB)."""
    quack_loss: bool = True
    """With kernels on a Hopper GPU and no z-loss, compute the head's linear + cross-entropy with quack-kernels'
    scaled-exp pipeline (no pass over the logits, float32 weight-gradient accumulation) when that package is
    installed; False keeps the Triton chunked kernel."""
    quack_qkv: bool = True
    """With kernels on a Hopper or newer GPU, run attention's qkv projection on quack-kernels' GEMM with RoPE in its
    epilogue (no RoPE pass of its own) when that package is installed; False keeps cuBLAS and the Triton RoPE pass."""
    quack_projections: bool = True
    """With kernels on a Hopper or newer GPU, run the Mamba2 mixer's in_proj and out_proj (forward, with the
    residual add in its epilogue, and input gradient) on quack-kernels' GEMMs when that package is installed; False
    keeps cuBLAS."""
    cuda_graphs: bool = False
    """Replay each micro-batch's forward and backward from CUDA graphs (one GPU, kernels on, no compile, no
    gradient accumulation): removes the per-op launch cost from Python that idles the GPU on small models or
    few rows per step."""
    cuda_graph_documents: int = 0
    """Documents per micro-batch the graphs hold (0 = rows x seq_len / 256); a batch with more runs eagerly."""
    parallelism: Literal["auto", "fsdp", "ddp", "none"] = "auto"
    """How ranks hold the model: fsdp (FSDP2, sharded), ddp (replicated), none (one process); auto = fsdp
    when several ranks run, none otherwise."""
    reduce_dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype FSDP2 reduces gradients in; its parameters compute in `dtype` on GPU, float32 on CPU."""
    reshard_after_forward: bool = True
    """FSDP2: free each block's gathered parameters after its forward (least memory), or keep them until its
    backward (one all-gather per block per step instead of two: less communication and host work)."""

    def __post_init__(self) -> None:
        for name in ("steps", "micro_batch_rows", "grad_accum_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_every < 0 or self.eval_batches < 1:
            raise ValueError(
                f"eval_every must be >= 0 and eval_batches >= 1, got {self.eval_every}, {self.eval_batches}"
            )
        if self.cuda_graph_documents < 0:
            raise ValueError(f"cuda_graph_documents must be >= 0 (0 = automatic), got {self.cuda_graph_documents}")
        if "M" in self.model.layer_pattern and self.data.seq_len % self.model.ssm.chunk_size:
            raise ValueError(
                f"data.seq_len ({self.data.seq_len}) must be a multiple of model.ssm.chunk_size "
                f"({self.model.ssm.chunk_size}) so packed rows hold whole SSD chunks"
            )
