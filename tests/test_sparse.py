import pytest
import torch
from transformers.optimization import Adafactor

from fishdip.sparse.fisher import fisher_scores
from fishdip.sparse.masks import SparseMask, num_to_keep, random_mask, top_k_mask
from fishdip.sparse.optimizers import SparseAdafactor, SparseAdamW
from fishdip.sparse.selection import default_num_regressing, most_regressing


def test_top_k_mask_keeps_exactly_k_highest():
    scores = {"a": torch.tensor([[0.1, 5.0], [3.0, 0.2]]), "b": torch.tensor([4.0, 0.0, 2.0])}
    mask = top_k_mask(scores, 3)
    assert mask.num_trainable == 3
    assert mask.indices["a"].tolist() == [1, 2] and mask.indices["b"].tolist() == [0]
    assert mask.dense("a", scores["a"]).tolist() == [[False, True], [True, False]]


@pytest.mark.parametrize("k", [1, 7, 50, 99, 100])
def test_top_k_exact_count_with_ties(k):
    scores = {"w": torch.zeros(10, 5), "v": torch.ones(50)}  # massive ties
    assert top_k_mask(scores, k).num_trainable == k


def test_num_to_keep():
    assert num_to_keep(1000, 0.01) == 10
    assert num_to_keep(10, 0.01) == 1
    with pytest.raises(ValueError):
        num_to_keep(10, 0.0)


def test_random_mask_is_seeded():
    sizes = {"a": 100, "b": 37}
    m1, m2, m3 = random_mask(sizes, 20, seed=1), random_mask(sizes, 20, seed=1), random_mask(sizes, 20, seed=2)
    assert m1.num_trainable == 20
    assert all(torch.equal(m1.indices[n], m2.indices[n]) for n in sizes)
    assert any(not torch.equal(m1.indices[n], m3.indices[n]) for n in sizes)


def test_fisher_is_sum_of_per_sample_squared_gradients():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1, bias=False)
    xs, ys = torch.randn(4, 3), torch.randn(4)

    def loss(i):
        return (lin(xs[i]).squeeze() - ys[i]) ** 2

    scores = fisher_scores({"w": lin.weight}, loss, [0, 2], "square")
    expected = torch.zeros(1, 3)
    for i in (0, 2):
        residual = (lin.weight @ xs[i] - ys[i]).detach()
        expected += (2 * residual * xs[i]) ** 2
    assert torch.allclose(scores["w"], expected, rtol=1e-5)
    abs_scores = fisher_scores({"w": lin.weight}, loss, [0, 2], "abs")
    assert not torch.allclose(abs_scores["w"], scores["w"])
    assert lin.weight.grad is None


def test_regressing_selection():
    assert most_regressing(torch.tensor([0.1, 0.9, 0.5, 0.9]), 3) == [1, 3, 2]
    assert default_num_regressing(6) == 3 and default_num_regressing(100) == 10
    assert default_num_regressing(1000) == 25


def _params(seed=0):
    torch.manual_seed(seed)
    return {"w": torch.nn.Parameter(torch.randn(6, 5)), "b": torch.nn.Parameter(torch.randn(7))}


def _full_mask(params):
    return SparseMask({n: torch.arange(p.numel()) for n, p in params.items()})


def _run(opt, params, steps=5, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params.values():
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


def test_sparse_adamw_with_full_mask_equals_torch_adamw():
    ours, ref = _params(), _params()
    opt = SparseAdamW(ours, lr=1e-2, weight_decay=0.1)
    opt.set_mask(_full_mask(ours))
    _run(opt, ours)
    _run(torch.optim.AdamW(ref.values(), lr=1e-2, weight_decay=0.1), ref)
    for n in ours:
        assert torch.allclose(ours[n], ref[n], rtol=1e-5, atol=1e-6)


def test_sparse_adafactor_with_full_mask_equals_transformers_adafactor_on_vectors():
    # for 1-D parameters transformers' Adafactor keeps an unfactored second moment, as we do
    ours = {"b": torch.nn.Parameter(torch.randn(9))}
    ref = {"b": torch.nn.Parameter(ours["b"].detach().clone())}
    opt = SparseAdafactor(ours, lr=1e-2, relative_step=False, scale_parameter=False, weight_decay=0.1,
                          beta1=0.9)
    opt.set_mask(_full_mask(ours))
    _run(opt, ours)
    _run(Adafactor(list(ref.values()), lr=1e-2, relative_step=False, scale_parameter=False,
                   warmup_init=False, weight_decay=0.1, beta1=0.9), ref)
    assert torch.allclose(ours["b"], ref["b"], rtol=1e-5, atol=1e-6)


def _optimizers():
    return {
        "adamw": lambda p: SparseAdamW(p, lr=1e-2, weight_decay=0.5, max_grad_norm=1.0),
        "adafactor": lambda p: SparseAdafactor(p, lr=1e-2, relative_step=False, scale_parameter=False,
                                               weight_decay=0.5, beta1=0.9),
        "adafactor-relative": lambda p: SparseAdafactor(p, weight_decay=0.5, beta1=0.9),
    }


@pytest.mark.parametrize("name", list(_optimizers()))
def test_masked_entries_bit_identical_across_steps_and_refreshes(name):
    params = _params()
    opt = _optimizers()[name](params)
    masks = [SparseMask({"w": torch.tensor([0, 3, 17]), "b": torch.tensor([2])}),
             SparseMask({"w": torch.tensor([3, 5]), "b": torch.tensor([], dtype=torch.long)}),
             SparseMask({"w": torch.tensor([0, 29]), "b": torch.tensor([6])})]
    gen = torch.Generator().manual_seed(0)
    for mask in masks:
        opt.set_mask(mask)
        for _ in range(4):
            before = {n: p.detach().clone() for n, p in params.items()}
            for p in params.values():
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
            for n, p in params.items():
                allowed = torch.zeros(p.numel(), dtype=torch.bool)
                allowed[mask.indices[n]] = True
                frozen = ~allowed.view_as(p)
                # bit-identical: compare raw bits, not float closeness
                assert torch.equal(p.detach()[frozen].view(torch.int32), before[n][frozen].view(torch.int32))
                if mask.indices[n].numel():
                    assert not torch.equal(p.detach()[~frozen], before[n][~frozen])


def test_refresh_carries_state_of_surviving_entries_only():
    params = {"w": torch.nn.Parameter(torch.zeros(10))}
    opt = SparseAdamW(params, lr=1e-2)
    opt.set_mask(SparseMask({"w": torch.tensor([1, 4])}))
    params["w"].grad = torch.ones(10)
    opt.step()
    state = opt.state[params["w"]]
    m_before = state["exp_avg"].clone()
    opt.set_mask(SparseMask({"w": torch.tensor([4, 7])}))
    state = opt.state[params["w"]]
    assert state["idx"].tolist() == [4, 7]
    assert state["exp_avg"][0] == m_before[1] and state["exp_avg"][1] == 0
    assert state["step"].tolist() == [1.0, 0.0]
    assert opt.num_state_bytes() == 2 * 8 + 3 * 2 * 4


def test_empty_mask_freezes_parameter_for_autograd():
    params = _params()
    opt = SparseAdamW(params, lr=1e-2)
    opt.set_mask(SparseMask({"w": torch.tensor([0])}))
    assert params["w"].requires_grad and not params["b"].requires_grad


def test_top_k_ties_go_to_lower_index():
    mask = top_k_mask({"a": torch.tensor([1.0, 2.0, 2.0, 2.0]), "b": torch.tensor([2.0, 0.5])}, 2)
    assert mask.indices["a"].tolist() == [1, 2] and mask.indices["b"].tolist() == []


@pytest.mark.parametrize("name", ["adamw", "adafactor"])
def test_gathered_gradients_give_the_same_step_and_free_the_dense_ones(name):
    """Inside gathering(), backward leaves only the masked entries (accumulated over micro-batches)."""
    mask = SparseMask({"w": torch.tensor([0, 3, 17]), "b": torch.tensor([2])})
    x = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(1))

    def loss(params, xb):
        return ((xb @ params["w"].view(6, 5)) + params["b"][:5]).pow(2).sum()

    results = []
    for gather in (False, True):
        params = _params()
        opt = _optimizers()[name](params)
        opt.set_mask(mask)
        for _ in range(2):  # two optimizer steps of two micro-batches each
            for xb in x:
                if gather:
                    with opt.gathering():
                        loss(params, xb).backward()
                    assert all(p.grad is None for p in params.values())
                else:
                    loss(params, xb).backward()
            opt.step()
            opt.zero_grad()
        results.append({n: p.detach().clone() for n, p in params.items()})
    for n in results[0]:
        assert torch.equal(results[0][n], results[1][n])


def test_masked_dense_adafactor_equals_the_reference_recipe():
    """The reference: transformers' Adafactor (lr 1e-2, scale_parameter, no relative step, no momentum)
    on gradients zeroed outside the mask; the mask changes between steps; clipping by the masked norm."""
    from fishdip.sparse.optimizers import MaskedDenseAdafactor

    ours, ref = _params(), _params()
    opt = MaskedDenseAdafactor(ours, lr=1e-2, max_grad_norm=1.0)
    dense = Adafactor(list(ref.values()), lr=1e-2, scale_parameter=True, relative_step=False, warmup_init=False)
    masks = [SparseMask({"w": torch.tensor([0, 3, 17, 29]), "b": torch.tensor([2])}),
             SparseMask({"w": torch.tensor([3, 5, 11]), "b": torch.tensor([], dtype=torch.long)}),
             SparseMask({"w": torch.tensor([0, 29]), "b": torch.tensor([1, 6])})]
    gen = torch.Generator().manual_seed(0)
    for mask in masks:
        opt.set_mask(mask)
        for _ in range(3):
            grads = {n: torch.randn(p.shape, generator=gen) for n, p in ours.items()}
            masked = {n: (g.reshape(-1) * mask.dense(n, g).reshape(-1)).view_as(g) for n, g in grads.items()}
            for n in ours:
                ours[n].grad = grads[n].clone()
                ref[n].grad = masked[n].clone()
            torch.nn.utils.clip_grad_norm_(ref.values(), 1.0)
            before = {n: p.detach().clone() for n, p in ours.items()}
            opt.step()
            dense.step()
            for n in ours:
                assert torch.allclose(ours[n], ref[n], rtol=1e-5, atol=1e-7), n
                frozen = ~mask.dense(n, ours[n])
                assert torch.equal(ours[n].detach()[frozen], before[n][frozen])
    assert sum(t.numel() for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)) < 30 + 7 + 30
