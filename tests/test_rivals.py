"""The rival methods (SIFT, SpIEL-AG, LISA, the LoRA variants), and that a sparse method is its
two registry rows and nothing else."""

from dataclasses import fields, replace

import pytest
import torch

from fishdip.options import readers
from fishdip.runs.config import ExperimentConfig, unused_options
from fishdip.sparse import methods as sparse_methods
from fishdip.sparse.engine import SparseConfig, SparseEngine
from fishdip.training import methods as training_methods
from fishdip.training.config import TrainConfig
from fishdip.training.layers import transformer_layers
from fishdip.training.trainer import Trainer
from tests.conftest import make_tiny_llama, make_tiny_t5
from tests.test_trainer import PAIRS


def _field(name: str):
    return next(f for f in fields(TrainConfig) if f.name == name)


@pytest.mark.integration
def test_a_new_sparse_method_is_one_row_in_each_registry(monkeypatch):
    """Registered here alone: the options it reads follow from its flags, and it trains."""
    def every_other_entry(engine, step):  # a chooser built from the engine's capabilities
        return engine.random_mask(seed=7), {"rule": "test"}

    monkeypatch.setitem(sparse_methods.SPARSE_METHODS, "mine",
                        sparse_methods.SparseMethod(every_other_entry, refresh=True))
    monkeypatch.setitem(training_methods.METHODS, "mine",
                        training_methods.Method("mine", "a test's method", 1e-2, sparse_method="mine", saves="delta"))
    cfg = TrainConfig(method="mine", epochs=1, batch_size=4, density=0.05, refresh_steps=2, max_length=96)
    assert "mine" in readers(_field("density")) and "mine" in readers(_field("refresh_steps"))
    assert "mine" not in readers(_field("fisher")) and "mine" not in readers(_field("regrow_rate"))
    exp = ExperimentConfig(train=replace(cfg, fisher="abs"))
    assert unused_options(exp, ["mine"], "ner") == ["--fisher (read by fish, fish-dip only)"]
    trainer = Trainer(make_tiny_llama(), PAIRS, cfg, progress=False)
    start = {n: p.detach().clone() for n, p in trainer.params.items()}
    result = trainer.train()
    assert [r["step"] for r in result.refreshes] == [0, 2] and result.refreshes[0]["rule"] == "test"
    for name, p in trainer.params.items():  # only the mask's entries moved
        outside = ~trainer.mask.dense(name, p)
        assert torch.equal(p.detach()[outside], start[name][outside]), name


def _engine(method: str, grads: list[torch.Tensor], density: float = 0.25, **kw):
    """An engine over one parameter whose sample i has gradient ``grads[i]`` (a linear loss)."""
    weight = torch.nn.Parameter(torch.zeros(len(grads[0])))
    engine = SparseEngine({"w": weight}, SparseConfig(method=method, density=density, **kw),
                          sample_loss=lambda i: (weight * grads[i]).sum(),
                          batch_losses=lambda ids: torch.zeros(len(ids)), num_samples=len(grads), batch_size=2)
    return engine, weight


def test_sift_keeps_the_largest_summed_gradient_not_the_largest_per_sample_ones():
    # entry 0 has large per-sample gradients that cancel: Fisher would keep it, SIFT must not
    grads = [torch.tensor([5.0, 1.0, 0.5, 2.0, 0.0, 0.1, 0.0, 0.0]),
             torch.tensor([-5.0, 1.0, 0.5, 1.5, 0.0, 0.1, 0.0, 0.0])]
    engine, _ = _engine("sift", grads)
    mask, info = engine.choose(0)
    assert mask.indices["w"].tolist() == [1, 3]  # |sum| = 0, 2, 1, 3.5, 0, 0.2, ...: the top 2
    assert info["samples"] == [0, 1]
    fish, _ = _engine("fish", grads)
    assert 0 in fish.choose(0)[0].indices["w"].tolist()


def test_spiel_drops_the_least_changed_entries_undoes_them_and_regrows_by_summed_gradient():
    grads = [torch.tensor([0.0, 0.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])]
    engine, weight = _engine("spiel", grads, density=0.3, regrow_rate=0.5)  # 3 entries; drop 1 at step 0 of 10
    engine.total_steps = 10
    mask, _ = engine.choose(0)
    engine.install(mask)
    assert mask.indices["w"].tolist() == [2, 3, 4]
    with torch.no_grad():  # training moved the masked entries by 0.5, 0.01 and 0.2
        weight[2] += 0.5
        weight[3] += 0.01
        weight[4] -= 0.2
    for g in ([0.0, 1.0, 0, 0, 0, 0, 0, 0, 0, 0], [0.0, 0.0, 0, 0, 0, 0, 0, 0, 0, -4.0]):
        weight.grad = torch.tensor(g)
        engine.observe()  # summed since the last refresh: entry 9 has the largest magnitude
    # at step 5 of 10 the rate is 0.5 * (1 - 5/10): int(3 * 0.25) = 0 entries; at step 0 it is int(1.5) = 1
    mask, info = engine.choose(0)
    engine.install(mask)
    assert mask.indices["w"].tolist() == [2, 4, 9] and info["dropped"] == 1 and info["regrown"] == 1
    assert weight[3].item() == 0.0  # the dropped entry's change is undone, bit for bit
    assert weight[2].item() == 0.5 and weight[4].item() == pytest.approx(-0.2)
    assert engine.base_values["w"].tolist() == [0.0, 0.0, 0.0]  # all three joined at their base value
    assert engine.gradient_sum is None  # the sum starts again
    assert mask.num_trainable == engine.num_keep


@pytest.mark.integration
def test_spiel_in_the_trainer_changes_only_its_current_mask_and_keeps_the_count():
    cfg = TrainConfig(method="spiel", epochs=3, batch_size=4, lr=1e-2, density=0.05, refresh_steps=2,
                      max_length=96, regrow_rate=0.5)
    trainer = Trainer(make_tiny_llama(), PAIRS, cfg, progress=False)
    start = {n: p.detach().clone() for n, p in trainer.params.items()}
    result = trainer.train()
    refreshes = result.refreshes[1:]
    assert [r["step"] for r in refreshes] == [2, 4, 6, 8] and refreshes[0]["regrown"] > 0
    rates = [r["drop_rate"] for r in refreshes]
    assert rates == sorted(rates, reverse=True) and rates[0] == pytest.approx(0.5 * (1 - 2 / 9), abs=1e-4)
    assert all(sum(r["entries_per_parameter"].values()) == trainer.num_keep for r in result.refreshes)
    assert result.touched_entries > trainer.num_keep  # entries came and went
    # what left the mask was undone: the model differs from its start only inside the current mask
    for name, p in trainer.params.items():
        outside = ~trainer.mask.dense(name, p)
        assert torch.equal(p.detach()[outside], start[name][outside]), name


@pytest.mark.integration
def test_lisa_trains_only_its_turns_layers_and_what_lies_outside_the_layers():
    loaded = make_tiny_llama()
    layers = transformer_layers(loaded.model)
    assert layers == [f"model.layers.{i}" for i in range(len(layers))] and len(layers) >= 2
    cfg = TrainConfig(method="lisa", epochs=1, batch_size=4, lr=1e-2, lisa_layers=1, refresh_steps=100,
                      max_length=96)
    trainer = Trainer(loaded, PAIRS, cfg, progress=False)
    start = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    result = trainer.train()
    (turn,) = result.refreshes
    assert turn["step"] == 0 and len(turn["layers"]) == 1
    assert result.trainable_params == turn["learning_parameters"] < result.total_params  # a turn's, not all
    for name, p in loaded.model.named_parameters():
        layer = next((x for x in layers if name.startswith(x + ".")), None)
        moved = not torch.equal(p.detach(), start[name])
        assert moved == (layer is None or layer in turn["layers"]), name
        assert p.requires_grad  # the model is left as it was found
    assert transformer_layers(make_tiny_t5().model)[:2] == ["encoder.block.0", "encoder.block.1"]


@pytest.mark.parametrize("variant", ["dora", "rslora", "pissa"])
def test_the_lora_variants_build_the_adapter_peft_documents(variant):
    loaded = make_tiny_llama()
    ids = loaded.tokenizer("Smith works for IBM .", return_tensors="pt")["input_ids"]
    loaded.model.eval()
    with torch.no_grad():
        before = loaded.model(ids).logits
    base = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    cfg = TrainConfig(method="lora", lora_variant=variant, lora_rank=4, lora_alpha=8.0)
    model = training_methods.METHODS["lora"].wrap(loaded.model, cfg)
    config = model.peft_config["default"]
    layer = next(m for n, m in model.named_modules() if n.endswith("q_proj") and hasattr(m, "scaling"))
    if variant == "dora":
        assert config.use_dora and "default" in layer.lora_magnitude_vector
    if variant == "rslora":
        assert config.use_rslora and layer.scaling["default"] == pytest.approx(8.0 / 4 ** 0.5)
    if variant == "pissa":
        assert config.init_lora_weights == "pissa"
        weight = layer.base_layer.weight.detach()
        original = next(v for n, v in base.items() if n.endswith("q_proj.weight"))
        assert not torch.equal(weight, original)  # the principal part moved into the adapter
        assert ExperimentConfig(train=cfg).save_mode == "full"  # so it is saved merged
    model.eval()
    with torch.no_grad():  # every variant starts as the model it wraps
        assert torch.allclose(model(ids).logits, before, atol=1e-4)
