"""On a GPU: the model with the Triton kernels agrees with the same model on the PyTorch reference ops."""

import numpy as np
import pytest
import torch

from gristmill.trainer import ops
from gristmill.trainer.cuda_graph import GraphedModel
from gristmill.trainer.models.config import ModelConfig, SSMConfig
from gristmill.trainer.models.model import LanguageModel
from gristmill.trainer.packing import BestFitPacker, collate
from trainer_testdata import EOS, ListSource

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SEQ_LEN = 256


def loss_and_grads(
    model: LanguageModel, batch, kernels: bool, graphed: GraphedModel | None = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    ops.enable_kernels(kernels)
    try:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=graphed is None):
            loss = model(batch.input_ids, batch.labels, batch.segments) if graphed is None else graphed(batch)
        loss.backward()
        return loss.detach().float(), [p.grad.float().clone() for p in model.parameters()]
    finally:
        ops.enable_kernels(True)


def packed_batch(rng: np.random.Generator, longest: int, device: str = "cuda"):
    """4 rows of SEQ_LEN from random documents of up to `longest` tokens (about twice the tokens needed)."""
    count = max(24, 16 * SEQ_LEN // longest)
    documents = [np.append(rng.integers(1, 512, n), EOS) for n in rng.integers(0, longest, count)]
    packer = BestFitPacker(ListSource(documents), SEQ_LEN, buffer_documents=count)
    return collate([packer.next_row() for _ in range(4)], SEQ_LEN, pad_id=EOS).to(torch.device(device))


def small_model_and_batch(pattern: str):
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    cfg = ModelConfig(vocab_size=512, d_model=128, layer_pattern=pattern, n_heads=2, n_kv_heads=1,
                      ssm=SSMConfig(d_state=16, head_dim=32, chunk_size=64))
    model = LanguageModel(cfg).cuda()
    return model, packed_batch(np.random.default_rng(), 2 * SEQ_LEN)


@pytest.mark.parametrize("pattern", ["AA", "MA"])
def test_kernels_agree_with_reference_ops_on_a_packed_batch(pattern: str) -> None:
    model, batch = small_model_and_batch(pattern)
    kernel_loss, kernel_grads = loss_and_grads(model, batch, kernels=True)
    reference_loss, reference_grads = loss_and_grads(model, batch, kernels=False)
    torch.testing.assert_close(kernel_loss, reference_loss, rtol=1e-2, atol=0.0)
    for (name, _), a, b in zip(model.named_parameters(), kernel_grads, reference_grads):
        cosine = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
        assert cosine > 0.99, f"{name}: gradient cosine {cosine:.4f}"


@pytest.mark.parametrize("pattern", ["AA", "MA"])
def test_compiled_blocks_call_the_kernels_and_match_eager(pattern: str) -> None:
    """`compile = true` with the kernels on: torch.compile calls the kernels as they are (no inductor
    re-trace of them) and gives eager's loss."""
    model, batch = small_model_and_batch(pattern)
    eager_loss, _ = loss_and_grads(model, batch, kernels=True)
    for block in model.layers:
        block.compile()
    compiled_loss, compiled_grads = loss_and_grads(model, batch, kernels=True)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-3, atol=0.0)
    assert all(torch.isfinite(g).all() for g in compiled_grads)


@pytest.mark.parametrize("pattern", ["AA", "MA"])
def test_cuda_graph_replays_match_eager_steps(pattern: str) -> None:
    """Batches of other document layouts replayed through one capture give eager's loss and gradients (a
    layout cached at capture time would not), and a batch over the graph's document count runs eagerly."""
    model, first = small_model_and_batch(pattern)
    rng = np.random.default_rng()
    batches = [first, packed_batch(rng, SEQ_LEN // 4), packed_batch(rng, 3 * SEQ_LEN)]
    graphed = GraphedModel(model, documents=max(b.segments.cu_seqlens.numel() for b in batches), seq_len=SEQ_LEN)
    for batch in batches:
        eager_loss, eager_grads = loss_and_grads(model, batch, kernels=True)
        graph_loss, graph_grads = loss_and_grads(model, batch, kernels=True, graphed=graphed)
        torch.testing.assert_close(graph_loss, eager_loss, rtol=1e-4, atol=0.0)
        for (name, _), a, b in zip(model.named_parameters(), graph_grads, eager_grads):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * float(b.abs().max()), msg=lambda m, n=name: f"{n}: {m}")
    assert graphed.eager_batches == 0
    small = GraphedModel(model, documents=1, seq_len=SEQ_LEN)
    loss_and_grads(model, batches[1], kernels=True, graphed=small)
    assert small.eager_batches == 1
