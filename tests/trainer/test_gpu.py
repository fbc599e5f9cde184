"""On a GPU: the model with the Triton kernels agrees with the same model on the PyTorch reference ops."""

import numpy as np
import pytest
import torch

from gristmill.trainer import ops
from gristmill.trainer.models.config import ModelConfig, SSMConfig
from gristmill.trainer.models.model import LanguageModel
from gristmill.trainer.packing import BestFitPacker, collate
from trainer_testdata import EOS, ListSource

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SEQ_LEN = 256


def loss_and_grads(model: LanguageModel, batch, kernels: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    ops.enable_kernels(kernels)
    try:
        model.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(batch.input_ids, batch.labels, batch.segments)
        loss.backward()
        return loss.detach().float(), [p.grad.float().clone() for p in model.parameters()]
    finally:
        ops.enable_kernels(True)


def small_model_and_batch(pattern: str):
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    cfg = ModelConfig(vocab_size=512, d_model=128, layer_pattern=pattern, n_heads=2, n_kv_heads=1,
                      ssm=SSMConfig(d_state=16, head_dim=32, chunk_size=64))
    model = LanguageModel(cfg).cuda()
    rng = np.random.default_rng()
    documents = [np.append(rng.integers(1, 512, n), EOS) for n in rng.integers(0, 2 * SEQ_LEN, 24)]
    packer = BestFitPacker(ListSource(documents), SEQ_LEN, buffer_documents=24)
    batch = collate([packer.next_row() for _ in range(4)], SEQ_LEN, pad_id=EOS).to(torch.device("cuda"))
    return model, batch


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
