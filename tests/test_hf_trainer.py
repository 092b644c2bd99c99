"""FISH-DIP in a transformers.Trainer (sparse/hf_trainer.py) and the engine's independence (sparse/engine.py)."""

import ast
import subprocess
import sys

import pytest
import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

from fishdip.models.encoding import PROMPT, budget_from_pairs, encode_pair
from fishdip.models.generation import generate
from fishdip.sparse.engine import SparseConfig
from fishdip.sparse.hf_trainer import fish_dip, per_sample_losses
from fishdip.training.config import TrainConfig
from fishdip.training.trainer import Trainer as FishdipTrainer
from tests.conftest import REPO, make_tiny_llama, make_tiny_t5
from tests.test_trainer import PAIRS, TASK


def _dataset(loaded, pairs, max_length=96):
    return [{"input_ids": list(e.input_ids), "labels": list(e.labels)}
            for e in (encode_pair(loaded, s, t, max_length) for s, t in pairs)]


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=2, gradient_accumulation_steps=2,
                max_steps=6, max_grad_norm=0.0, report_to=[], save_strategy="no", logging_strategy="no",
                use_cpu=True, seed=0, disable_tqdm=True)
    return TrainingArguments(**{**base, **kw})


class FrozenEntriesStay(TrainerCallback):
    """Before each step, note the weights and the mask; after it, every entry outside the mask must be
    bit-identical (listed before FISH-DIP's callback, so it sees the step before any refresh)."""

    def __init__(self, model, engine):
        self.model, self.engine, self.checked = model, engine, 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.before = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        self.mask = self.engine.mask

    def on_step_end(self, args, state, control, **kwargs):
        for name, p in self.model.named_parameters():
            frozen = torch.ones(p.numel(), dtype=torch.bool)
            frozen[self.mask.indices.get(name, torch.empty(0, dtype=torch.long))] = False
            assert torch.equal(p.detach().reshape(-1)[frozen], self.before[name].reshape(-1)[frozen]), name
        self.checked += 1


@pytest.mark.parametrize(("make", "method"), [(make_tiny_llama, "fish-dip"), (make_tiny_t5, "fish-dip"),
                                              (make_tiny_llama, "spiel")], ids=["causal", "seq2seq", "spiel"])
@pytest.mark.integration
def test_under_the_trainer_frozen_entries_stay_and_refreshes_come_on_schedule(tmp_path, make, method):
    loaded = make()
    data = _dataset(loaded, PAIRS)
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, label_pad_token_id=-100)
    config = SparseConfig(method=method, density=0.05, refresh_steps=2, regrow_rate=0.5)
    optimizer, callback = fish_dip(loaded.model, data, collator, config)
    spy = FrozenEntriesStay(loaded.model, callback.engine)
    Trainer(loaded.model, _args(tmp_path), train_dataset=data, data_collator=collator,
            optimizers=(optimizer, None), callbacks=[spy, callback]).train()
    # the reference's phase: the masks for steps 2, 4, 6 are computed after 1, 3, 5 completed steps
    assert [r["step"] for r in callback.refreshes] == [0, 1, 3, 5]
    assert spy.checked == 6
    assert callback.engine.touched_entries > callback.engine.num_keep  # the refreshes moved the mask
    assert callback.engine.mask.num_trainable == callback.engine.num_keep


@pytest.mark.integration
def test_sift_under_the_trainer_keeps_its_one_mask(tmp_path):
    loaded = make_tiny_llama()
    data = _dataset(loaded, PAIRS)
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, label_pad_token_id=-100)
    optimizer, callback = fish_dip(loaded.model, data, collator, SparseConfig(method="sift", density=0.05))
    spy = FrozenEntriesStay(loaded.model, callback.engine)
    Trainer(loaded.model, _args(tmp_path), train_dataset=data, data_collator=collator,
            optimizers=(optimizer, None), callbacks=[spy, callback]).train()
    (choice,) = callback.refreshes
    assert choice["samples"] == list(range(len(PAIRS))) and spy.checked == 6
    assert callback.engine.touched_entries == callback.engine.num_keep


@pytest.mark.integration
def test_the_trainer_path_and_fishdips_own_trainer_choose_the_same_masks_and_losses(tmp_path):
    """Same data order (every step takes all four samples), seed and settings: the same masks, and
    losses equal to float rounding (HF's loss is computed from the full logits)."""
    pairs = PAIRS[:4]
    ours = FishdipTrainer(make_tiny_llama(), pairs, TrainConfig(
        method="fish-dip", recipe="default", optimizer="adamw", lr=1e-2, density=0.05, refresh_steps=2,
        refresh_phase="before", batch_size=4, epochs=4, max_length=96, seed=0), progress=False)
    mine = ours.train()

    loaded = make_tiny_llama()
    data = _dataset(loaded, pairs)
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, label_pad_token_id=-100)
    config = SparseConfig(density=0.05, refresh_steps=2, rank_mode="eval", fisher_mode="eval")
    optimizer, callback = fish_dip(loaded.model, data, collator, config, optimizer="adamw", lr=1e-2)
    losses = []

    def mean_of_sample_means(outputs, labels, num_items_in_batch=None):  # fishdip's loss: each sample counts once
        logits, labels = outputs.logits[:, :-1], labels[:, 1:]
        token = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                  ignore_index=-100, reduction="none").view(labels.shape)
        real = (labels != -100).float()
        loss = ((token * real).sum(1) / real.sum(1)).mean()
        losses.append(float(loss.detach()))
        return loss

    Trainer(loaded.model, _args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=1, max_steps=4,
                                max_grad_norm=0.0), train_dataset=data, data_collator=collator,
            optimizers=(optimizer, None), callbacks=[callback], compute_loss_func=mean_of_sample_means).train()
    assert [r["mask_checksum"] for r in callback.refreshes] == [r["mask_checksum"] for r in mine.refreshes]
    assert [r["samples"] for r in callback.refreshes] == [r["samples"] for r in mine.refreshes]
    assert losses == pytest.approx([x["loss"] for x in mine.losses], rel=1e-4)


@pytest.mark.integration
def test_a_delta_written_by_the_callback_loads_with_fishdip_load(tmp_path, tiny_model_dir):
    import fishdip
    from fishdip.models.loading import load_model

    loaded = load_model(str(tiny_model_dir))
    data = _dataset(loaded, PAIRS)
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, label_pad_token_id=-100)
    optimizer, callback = fish_dip(loaded.model, data, collator, SparseConfig(density=0.05, refresh_steps=3))
    Trainer(loaded.model, _args(tmp_path), train_dataset=data, data_collator=collator,
            optimizers=(optimizer, None), callbacks=[callback]).train()
    loaded.budget = budget_from_pairs(loaded, PAIRS)
    meta = {**TASK.metadata(), "prompt": PROMPT, "max_length": 96, "generation_budget": loaded.budget.to_dict()}
    folder = callback.save_delta(tmp_path / "delta", base_model=str(tiny_model_dir), metadata=meta)
    predictor = fishdip.load(folder)
    sources = [s for s, _ in PAIRS[:3]]
    loaded.model.eval()
    assert generate(predictor.loaded, sources, 96).texts == generate(loaded, sources, 96).texts
    for name, p in predictor.loaded.model.named_parameters():
        assert torch.equal(p, dict(loaded.model.named_parameters())[name]), name
    from typer.testing import CliRunner

    from fishdip.cli import app

    result = CliRunner().invoke(app, ["export", str(folder), "--output", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    merged = load_model(str(tmp_path / "merged"))
    assert generate(merged, sources, 96).texts == generate(loaded, sources, 96).texts


@pytest.mark.integration
def test_a_classification_head_trains(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=3))
    data = [{"input_ids": [1 + (i * 7 + j) % 40 for j in range(6)], "labels": i % 3} for i in range(12)]

    def collate(rows):
        return {"input_ids": torch.tensor([r["input_ids"] for r in rows]),
                "labels": torch.tensor([r["labels"] for r in rows])}

    batch = collate(data[:4])
    assert per_sample_losses(model, batch).shape == (4,)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer, callback = fish_dip(model, data, collate, SparseConfig(density=0.1, refresh_steps=3),
                                   optimizer="adamw", lr=1e-2)
    Trainer(model, _args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=1, max_steps=6,
                         remove_unused_columns=False), train_dataset=data, data_collator=collate,
            optimizers=(optimizer, None), callbacks=[callback]).train()
    changed = sum(int((p.detach() != before[n]).sum()) for n, p in model.named_parameters())
    assert 0 < changed <= callback.engine.touched_entries
    assert [r["step"] for r in callback.refreshes] == [0, 2, 5]


@pytest.mark.integration
def test_the_trainers_clipping_must_be_off():
    loaded = make_tiny_llama()
    data = _dataset(loaded, PAIRS)
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, label_pad_token_id=-100)
    optimizer, callback = fish_dip(loaded.model, data, collator)
    with pytest.raises(ValueError, match="max_grad_norm=0"):
        Trainer(loaded.model, TrainingArguments(output_dir="/tmp/unused", report_to=[], use_cpu=True, max_steps=1),
                train_dataset=data, data_collator=collator, optimizers=(optimizer, None), callbacks=[callback]).train()


@pytest.mark.integration
def test_the_engine_imports_nothing_from_tasks_formats_data_or_training():
    code = ("import sys\nimport fishdip.sparse.engine, fishdip.sparse.hf_trainer\n"
            "print(sorted(m for m in sys.modules if m.startswith(('fishdip.tasks', 'fishdip.formats', "
            "'fishdip.data', 'fishdip.training'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-1000:]


def _imports(path):
    tree = ast.parse(path.read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_no_import_circle_among_config_methods_and_trainer():
    training = REPO / "src" / "fishdip" / "training"
    assert not _imports(training / "methods.py") & {"fishdip.training.config", "fishdip.training.trainer"}
    assert "fishdip.training.trainer" not in _imports(training / "config.py")
