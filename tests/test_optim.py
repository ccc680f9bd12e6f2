import pytest
import torch
from torch import nn

from fusionstudy.training.optim import RowAdagrad, coalesce_rows


def _bag_grad(seed: int = 0, n_rows: int = 50, d: int = 4) -> tuple[nn.EmbeddingBag, torch.Tensor]:
    """A sparse EmbeddingBag gradient with repeated rows within and across bags."""
    g = torch.Generator().manual_seed(seed)
    bag = nn.EmbeddingBag(n_rows, d, mode="sum", sparse=True)
    ids = torch.randint(0, n_rows, (40,), generator=g)
    out = bag(ids, torch.tensor([0, 7, 20, 33]), per_sample_weights=torch.rand(40, generator=g))
    out.pow(2).sum().backward()
    return bag, bag.weight.grad


def test_coalesce_rows_equals_torch_coalesce():
    _, grad = _bag_grad()
    assert not grad.is_coalesced()
    ours, ref = coalesce_rows(grad), grad.coalesce()
    assert ours.is_coalesced()
    assert torch.equal(ours.indices(), ref.indices())
    assert torch.allclose(ours.values(), ref.values(), atol=1e-6)
    assert coalesce_rows(ours) is ours


def test_coalesce_rows_rejects_dense():
    with pytest.raises(ValueError, match="sparse COO"):
        coalesce_rows(torch.zeros(3, 2))


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")  # raised inside torch.optim.Adagrad
def test_row_adagrad_matches_torch_adagrad_and_moves_only_touched_rows():
    bag, _ = _bag_grad()
    ref = nn.Parameter(bag.weight.detach().clone())
    start = bag.weight.detach().clone()
    ours_opt, ref_opt = RowAdagrad([bag.weight], lr=0.2), torch.optim.Adagrad([ref], lr=0.2)
    for step in range(3):
        if step:
            bag.weight.grad = _bag_grad(seed=step)[1]
        ref.grad = bag.weight.grad.coalesce()
        bag.weight.grad = coalesce_rows(bag.weight.grad)
        ours_opt.step()
        ref_opt.step()
    assert torch.allclose(bag.weight, ref, atol=1e-6)
    touched = torch.zeros(len(start), dtype=torch.bool)
    for seed in range(3):
        touched[_bag_grad(seed)[1].coalesce().indices()[0]] = True
    assert torch.equal(bag.weight.detach()[~touched], start[~touched])


def test_row_adagrad_rejects_dense_gradients():
    p = nn.Parameter(torch.zeros(3, 2))
    p.grad = torch.ones(3, 2)
    with pytest.raises(ValueError, match="sparse=True"):
        RowAdagrad([p], lr=0.1).step()
