"""SSD kernel files side by side: each file (a copy of one kernel module, e.g. an older revision from `git show` or
an edit) is loaded as its own module and timed at bench.ssd's main shape on the same inputs, against the first file
of its kind, whose outputs it must also match.

Kernel choices change a walk's instruction order, which on sm_90 moves its time by up to 25% (bench/results/ssd.md
run 13); only a timing on the GPU can say which order wins, so this times them in one process, one after another.

    source bench/gpu_env.sh && python -m bench.ssd_variants dx=old_dx.py dx=kernels/ssd/chunk_scan_bwd_dx.py
"""

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from bench.harness import machine, time_ms
from bench.ssd import SHAPES, make_inputs
from gristmill.kernels.ssd.chunk_scan_bwd_dx import chunk_scan_bwd_dx
from gristmill.kernels.ssd.documents import stream_chunk_plan
from gristmill.kernels.ssd.function import ScanInputs, ssd_forward
from gristmill.kernels.ssd.score_gradient import score_gradient
from gristmill.kernels.testing import relative_error

KINDS = ("output", "dx", "score", "group")
"""chunk_scan_fwd, chunk_scan_bwd_dx, score_gradient and group_gradient (its source side, dB) modules."""


def load_module(path: Path, tag: str) -> ModuleType:
    """The file as a module of the gristmill.kernels.ssd package, so its absolute imports resolve as they do there."""
    spec = importlib.util.spec_from_file_location(f"gristmill.kernels.ssd._variant_{tag}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Problem:
    """bench.ssd's main shape with the forward's intermediates and the backward's inputs to each kernel."""

    def __init__(self) -> None:
        shape = SHAPES["main"]
        inputs = make_inputs(shape)
        leaves = {name: tensor.detach() for name, tensor in inputs.leaves.items()}
        self.x, self.B, self.C, self.D = leaves["x"], leaves["B"], leaves["C"], leaves["D"]
        self.dy = inputs.dy
        self.plan = stream_chunk_plan(inputs.cu_seqlens, self.x.shape[0], shape.chunk_size, self.x.device)
        scan_inputs = ScanInputs(self.x, leaves["dt"], leaves["A"], self.B, self.C, self.D)
        _, _, self.saved = ssd_forward(scan_inputs, None, self.plan, keep_final_state=False)
        _, self.dleaving, _ = chunk_scan_bwd_dx(*self.dx_inputs(), *self.dx_sums())
        self.dscores = score_gradient(
            self.x, self.saved.dt_by_head, self.saved.a, self.B, self.C, self.dy, self.plan, torch.zeros_like(self.saved.a)
        )  # fmt: skip
        # the score gradient is written on and below the diagonal of each chunk's real tokens only
        position = torch.arange(self.plan.chunk_size, device=self.x.device)
        real = position[None, :, None] < self.plan.chunk_len[:, None, None]
        self.written = (real & (position[:, None] >= position[None, :])).unsqueeze(1)

    def dx_inputs(self) -> tuple:
        """chunk_scan_bwd_dx's arguments before its sums: the walk writes dx into a new buffer."""
        s = self.saved
        return (self.x, s.dt_by_head, s.a, self.B, self.C, self.D, self.dy, s.entering, None, self.plan, False,
                torch.empty_like(self.x))  # fmt: skip

    def dx_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Zeroed dD `[H]` and chunk-decay gradient `[H, num_chunks]`, which chunk_scan_bwd_dx adds into."""
        heads = self.x.shape[1]
        return (torch.zeros(heads, device=self.x.device),
                torch.zeros(heads, self.plan.num_chunks, device=self.x.device))  # fmt: skip

    def launcher(self, kind: str, module: ModuleType) -> tuple[Callable[[], object], Callable[[], tuple]]:
        """The kernel's launch, and a function that zeroes what it accumulates, launches once and returns its
        outputs (so they compare after exactly one launch)."""
        s, p = self.saved, self.plan
        if kind == "output":
            launch = lambda: module.chunk_scan_fwd(self.x, s.dt_by_head, s.a, self.B, self.C, self.D, None, p, False)
            return launch, lambda: (launch()[0],)
        if kind == "dx":
            inputs, (dD, dchunk_decay) = self.dx_inputs(), self.dx_sums()
            launch = lambda: module.chunk_scan_bwd_dx(*inputs, dD, dchunk_decay)
            return launch, lambda: (dD.zero_(), dchunk_decay.zero_(), launch()[0], inputs[-1], dD, dchunk_decay)[2:]
        if kind == "score":
            da = torch.zeros_like(s.a)
            launch = lambda: module.score_gradient(self.x, s.dt_by_head, s.a, self.B, self.C, self.dy, p, da)
            return launch, lambda: (da.zero_(), torch.where(self.written, launch(), 0.0), da)[1:]
        if kind == "group":
            dB, da = torch.empty_like(self.B), torch.zeros_like(s.a)
            launch = lambda: module.group_gradient(
                self.dscores, self.x, self.dleaving, self.C, self.B, s.dt_by_head, s.a, da, p, dB, source=True
            )  # fmt: skip
            return launch, lambda: (da.zero_(), launch(), dB, da)[2:]
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


def tuned(module: ModuleType) -> str:
    """The configs the module's autotuned kernels picked."""
    picks = []
    for value in vars(module).values():
        cache = getattr(value, "cache", None)
        if isinstance(cache, dict):
            picks += [f"{c.kwargs} w{c.num_warps} s{c.num_stages}" for c in cache.values()]
    return "; ".join(picks) or "one config"


def relative_errors(outputs: tuple, reference: tuple) -> str:
    return " ".join(f"{relative_error(out, ref):.1e}" for out, ref in zip(outputs, reference, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", metavar="KIND=PATH", help=f"KIND one of {', '.join(KINDS)}")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("the SSD variant benchmark needs a CUDA GPU")
    problem = Problem()
    print(f"{machine()} · main shape {SHAPES['main']} · median ms of do_bench")
    first: dict[str, tuple[tuple, float]] = {}
    for index, item in enumerate(args.files):
        kind, _, path = item.partition("=")
        if kind not in KINDS or not Path(path).is_file():
            sys.exit(f"{item!r}: expected KIND=PATH with KIND one of {', '.join(KINDS)} and an existing file")
        module = load_module(Path(path), f"{kind}{index}")
        launch, outputs_of_one_launch = problem.launcher(kind, module)
        outputs = tuple(t.clone() for t in outputs_of_one_launch())
        ms = time_ms(launch)
        if kind in first:
            reference, reference_ms = first[kind]
            note = f"{reference_ms / ms:.3f}x the first; relative error {relative_errors(outputs, reference)}"
        else:
            first[kind] = (outputs, ms)
            note = "the first of its kind"
        print(f"{kind:6s} {path:48s} {ms:.4f} ms  {note}  [{tuned(module)}]", flush=True)


if __name__ == "__main__":
    main()
