"""The CUDA-graph step's host-side parts: the fixed document layout and the checks before a capture (the
replays themselves are compared with eager steps in test_gpu.py)."""

import numpy as np
import pytest
import torch

from gristmill.trainer.config import TrainConfig
from gristmill.trainer.cuda_graph import GraphedModel, check_graphable, graph_documents, padded_offsets
from gristmill.trainer.models.model import LanguageModel
from gristmill.trainer.models.presets import tiny_transformer
from gristmill.trainer.packing import BestFitPacker, collate
from trainer_testdata import EOS, ListSource, random_documents

CUDA = torch.device("cuda")


def test_padded_offsets_append_empty_documents() -> None:
    cu = torch.tensor([0, 5, 5, 12], dtype=torch.int32)
    padded = padded_offsets(cu, 6)
    assert padded.tolist() == [0, 5, 5, 12, 12, 12, 12]
    assert padded.dtype == torch.int32
    assert padded_offsets(cu, 3).tolist() == cu.tolist()


def test_padded_offsets_refuse_more_documents_than_the_layout() -> None:
    with pytest.raises(ValueError, match="3 documents do not fit a layout of 2"):
        padded_offsets(torch.tensor([0, 1, 2, 3], dtype=torch.int32), 2)


def test_graph_documents_default_to_one_per_256_tokens() -> None:
    cfg = TrainConfig(micro_batch_rows=8)
    cfg.data.seq_len = 4096
    assert graph_documents(cfg) == 128
    cfg.cuda_graph_documents = 40
    assert graph_documents(cfg) == 40


def test_check_graphable_names_every_obstacle() -> None:
    cfg = TrainConfig(grad_accum_steps=2, compile=True, kernels=False)
    with pytest.raises(ValueError) as error:
        check_graphable(cfg, torch.device("cpu"), "fsdp")
    message = str(error.value)
    for need in ("a CUDA device (this run is on cpu)", "one process", "kernels = true", "compile = false",
                 "grad_accum_steps = 1 (got 2)"):
        assert need in message
    check_graphable(TrainConfig(), CUDA, "none")


def test_negative_graph_documents_are_refused() -> None:
    with pytest.raises(ValueError, match="cuda_graph_documents"):
        TrainConfig(cuda_graph_documents=-1)


def test_a_batch_over_the_graph_layout_runs_eagerly_and_is_counted() -> None:
    """No capture is attempted for a batch with more documents than the graphs hold: the eager model's loss
    comes back (so this path runs on a CPU too)."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    model = LanguageModel(tiny_transformer())
    packer = BestFitPacker(ListSource(random_documents(np.random.default_rng(), 12, 20)), 32, buffer_documents=12)
    batch = collate([packer.next_row() for _ in range(2)], 32, pad_id=EOS)
    assert batch.segments.cu_seqlens.numel() - 1 > 1
    graphed = GraphedModel(model, documents=1, seq_len=32)
    loss = graphed(batch)
    torch.testing.assert_close(loss, model(batch.input_ids, batch.labels, batch.segments))
    assert graphed.eager_batches == 1
