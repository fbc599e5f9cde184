"""Host (CPU) cost per call of the trainer's fused ops, where their GPU work is negligible.

At 256 tokens each op's kernels finish in microseconds, so the wall clock of a loop of forward + backward calls,
synchronised only around the whole loop, is what Python, autograd and Triton's launcher spend per call: the part
of the eager training step that CUDA graphs remove. Also counts the GPU launches (kernels and memsets) of one
call through torch.profiler, since every launch costs host time too. Shapes are hybrid_350m's; the whole model's
forward + backward at 2 rows x 128 tokens closes the table.

Run on the GPU from the repository root:
    source bench/gpu_env.sh && python -m bench.host_overhead
"""

import argparse
import time
from collections.abc import Callable

import torch

from bench.harness import machine, markdown_table, today
from gristmill.kernels.fused.rms_norm.triton_fwd_bwd import gated_rms_norm
from gristmill.trainer import ops
from gristmill.trainer.models import presets as model_presets
from gristmill.trainer.models.model import LanguageModel
from gristmill.trainer.models.segments import Segments

TOKENS = 256
DOC_LENGTHS = (100, 156)
"""Two documents, so every op takes its packed (varlen) path."""


def _segments(device: torch.device, lengths: tuple[int, ...], rows: int) -> Segments:
    bounds = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    positions = torch.cat([torch.arange(n) for n in lengths])
    return Segments(bounds.to(device), positions.to(device), max(lengths), rows)


def _fwd_bwd(forward: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> Callable[[], None]:
    """One forward and backward; the output gradient is made once, so the loop holds only the op's own work, and
    the leaves' gradients are dropped before each call, as a training step's zero_grad does."""
    grad = torch.randn_like(forward())

    def step() -> None:
        for leaf in leaves:
            leaf.grad = None
        forward().backward(grad)

    return step


def mixer_step(device: torch.device, segments: Segments) -> Callable[[], None]:
    cfg = model_presets.hybrid_350m()
    heads, conv_dim = cfg.ssm_heads, cfg.d_inner + 2 * cfg.ssm.n_groups * cfg.ssm.d_state
    bf16 = dict(device=device, dtype=torch.bfloat16, requires_grad=True)
    f32 = dict(device=device, dtype=torch.float32, requires_grad=True)
    zxbcdt = torch.randn(TOKENS, cfg.d_inner + conv_dim + heads, **bf16)
    conv_weight = (torch.randn(conv_dim, cfg.ssm.d_conv, device=device) * 0.3).requires_grad_()
    conv_bias, norm_weight = torch.randn(conv_dim, **f32), torch.ones(cfg.d_inner, **f32)
    dt_bias, A_log, D = torch.randn(heads, **f32), torch.rand(heads, **f32), torch.ones(heads, **f32)
    leaves = [zxbcdt, conv_weight, conv_bias, dt_bias, A_log, D, norm_weight]
    return _fwd_bwd(
        lambda: ops.mamba_mixer_core(
            *leaves, cfg.norm_eps, groups=cfg.ssm.n_groups, chunk_size=cfg.ssm.chunk_size,
            cu_seqlens=segments.cu_seqlens,
        ),
        leaves,
    )  # fmt: skip


def rms_norm_step(device: torch.device) -> Callable[[], None]:
    d_model = model_presets.hybrid_350m().d_model
    x = torch.randn(TOKENS, d_model, device=device, dtype=torch.bfloat16, requires_grad=True)
    weight = torch.ones(d_model, device=device, requires_grad=True)

    def forward() -> torch.Tensor:
        y, stream = ops.rms_norm(x, weight, 1e-5)
        return y + stream  # both outputs carry gradient, as in the model

    return _fwd_bwd(forward, [x, weight])


def gated_rms_norm_step(device: torch.device) -> Callable[[], None]:
    d_inner = model_presets.hybrid_350m().d_inner
    x, gate = (torch.randn(TOKENS, d_inner, device=device, dtype=torch.bfloat16, requires_grad=True) for _ in "xg")
    weight = torch.ones(d_inner, device=device, requires_grad=True)
    return _fwd_bwd(lambda: gated_rms_norm(x, gate, weight, 1e-5), [x, gate, weight])


def rotary_qkv_step(device: torch.device, segments: Segments) -> Callable[[], None]:
    cfg = model_presets.hybrid_350m()
    head_dim = cfg.d_model // cfg.n_heads
    width = (cfg.n_heads + 2 * cfg.n_kv_heads) * head_dim
    projection = torch.randn(TOKENS, width, device=device, dtype=torch.bfloat16, requires_grad=True)
    # qkv is rotated in place, so it must not be a leaf: the clone (one copy kernel) stands in for the projection
    return _fwd_bwd(
        lambda: ops.rotary_qkv_attention(projection.clone(), cfg.n_heads, cfg.n_kv_heads, cfg.rope_theta, segments),
        [projection],
    )


def model_step(device: torch.device) -> Callable[[], None]:
    rows, length = 2, 128
    segments = _segments(device, (50, 78) * rows, rows)
    model = LanguageModel(model_presets.hybrid_350m()).to(device)
    model.init_weights()
    input_ids = torch.randint(0, model.cfg.vocab_size, (rows, length), device=device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids, input_ids, segments)
        loss.backward()

    return step


def microseconds_per_call(step: Callable[[], None], calls: int) -> float:
    for _ in range(5):  # autotuning and compilation
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def launches_per_call(step: Callable[[], None], calls: int = 3) -> float:
    """GPU kernels and memsets per call."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            step()
        torch.cuda.synchronize()
    gpu_events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return len(gpu_events) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per op (the model step takes a tenth)")
    parser.add_argument("--label", default="", help="a name for this tree in the printed table")
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.manual_seed(0)
    segments = _segments(device, DOC_LENGTHS, 1)
    steps = {
        "mamba_mixer_core": (mixer_step(device, segments), args.calls),
        "rms_norm, stream returned": (rms_norm_step(device), args.calls),
        "gated_rms_norm": (gated_rms_norm_step(device), args.calls),
        "rotary_qkv_attention": (rotary_qkv_step(device, segments), args.calls),
        "hybrid_350m fwd+bwd, 2 x 128 tokens": (model_step(device), max(1, args.calls // 10)),
    }
    rows = []
    for name, (step, calls) in steps.items():
        rows.append([name, microseconds_per_call(step, calls), launches_per_call(step)])
    print(f"host overhead {args.label} ({today()}, {machine()}, {TOKENS} tokens, fwd+bwd per call)")
    print(markdown_table(["op", "us per call", "GPU launches per call"], rows))


if __name__ == "__main__":
    main()
