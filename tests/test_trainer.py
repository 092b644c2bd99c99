import pytest
import torch

from fishdip.evaluation.predict import predict
from fishdip.formats import entity_relation as er
from fishdip.models.encoding import collate, encode_pair, pad_batch
from fishdip.models.generation import generate
from fishdip.models.losses import per_sample_loss, token_losses
from fishdip.tasks import JointERTask
from fishdip.training.config import TrainConfig
from fishdip.training.trainer import Trainer
from tests.conftest import make_tiny_gemma3, make_tiny_llama, make_tiny_t5

SCHEMA = er.Schema({"Peop": "people", "Loc": "location"}, {"Live_In": "live in"})
TASK = JointERTask("toy", "joint_er", schema=SCHEMA)


def _examples(n=10):
    out = []
    for i in range(n):
        tokens = f"Ann{i} lives in Rome{i % 3} now .".split()
        ann, rome = er.Entity(0, 1, "Peop"), er.Entity(3, 4, "Loc")
        out.append(er.Example(tokens, [ann, rome], [er.Relation("Live_In", ann, rome)] if i % 2 else []))
    return out


PAIRS = [(TASK.source(ex), TASK.target(ex)) for ex in _examples()]


def _cfg(**kw):
    # recipe default: these tests choose the optimizer and ranking themselves
    base = dict(method="fish-dip", epochs=2, batch_size=4, lr=1e-2, density=0.05, refresh_steps=2,
                max_length=96, seed=3, recipe="default")
    base.update(kw)
    return TrainConfig(**base)


def test_causal_labels_cover_only_the_target(tiny_model):
    batch = collate(tiny_model, PAIRS[:2], max_length=96)
    labels = batch["labels"]
    tok = tiny_model.tokenizer
    for row in range(2):
        target_ids = labels[row][labels[row] != -100].tolist()
        text = tok.decode(target_ids, skip_special_tokens=True).strip()
        assert text == PAIRS[row][1]


def test_per_sample_loss_ignores_padding(tiny_model):
    tiny_model.model.eval()
    alone = per_sample_loss(tiny_model, collate(tiny_model, PAIRS[:1], 96))
    padded = per_sample_loss(tiny_model, collate(tiny_model, [PAIRS[0], (PAIRS[0][0] + " x" * 20, "y" * 60)], 96))
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


@pytest.mark.parametrize("make", [make_tiny_t5, make_tiny_llama, make_tiny_gemma3,
                                  lambda: make_tiny_gemma3(softcap=3.0)],
                         ids=["t5", "llama", "gemma3", "gemma3-softcapped"])
def test_token_losses_equal_the_models_own_loss(make):
    """The LM head runs on target positions only (decoder-only, a plain head): same loss as the
    model's forward; a soft-capped head (Gemma 2 style) takes the model's own logits."""
    loaded = make()
    loaded.model.eval()
    batch = collate(loaded, PAIRS[:3], 96)
    total, count = token_losses(loaded, batch)
    with torch.no_grad():
        for row in range(3):
            one = {k: v[row : row + 1] for k, v in batch.items()}
            reference = loaded.model(**one).loss  # HF shifts (causal) and ignores -100 itself
            assert torch.allclose(total[row] / count[row], reference, atol=1e-5)


def test_encoded_pairs_pad_to_the_same_batch(tiny_model):
    rows = [encode_pair(tiny_model, s, t, 96) for s, t in PAIRS[:3]]
    for key, value in pad_batch(tiny_model, rows).items():
        assert torch.equal(value, collate(tiny_model, PAIRS[:3], 96)[key])


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", ["fish-dip", "random-dip"])
@pytest.mark.parametrize("optimizer", ["adamw", "adafactor"])
@pytest.mark.parametrize("make", [make_tiny_t5, make_tiny_llama], ids=["t5", "llama"])
@pytest.mark.integration
def test_refreshed_mask_is_exact_and_frozen_entries_never_move(make, optimizer, method):
    loaded = make()
    cfg = _cfg(optimizer=optimizer, weight_decay=0.1, method=method)
    trainer = Trainer(loaded, PAIRS, cfg, progress=False)
    masks_seen = []
    original_install = trainer._install

    def spy(mask, opt):
        # check the entries the *previous* mask froze stayed put until this refresh
        masks_seen.append((mask, _snapshot(loaded.model)))
        original_install(mask, opt)

    trainer._install = spy
    start = _snapshot(loaded.model)
    result = trainer.train()
    end = _snapshot(loaded.model)
    assert result.steps == trainer.total_steps == 6
    assert len(result.refreshes) == 3  # before training, after steps 2 and 4
    for mask, _ in masks_seen:
        assert mask.num_trainable == trainer.num_keep
    if method == "random-dip":  # a new draw at every refresh, yet the same draws for the same seed
        assert all(r["overlap_with_previous"] < 0.5 for r in result.refreshes[1:])
        again = Trainer(make(), PAIRS, cfg, progress=False)
        assert again.compute_mask(step=2).checksum() == masks_seen[1][0].checksum()
    # union of all masks: anything outside never moved, bit for bit
    names = dict(loaded.model.named_parameters())
    for name, p in names.items():
        touched = torch.zeros(p.numel(), dtype=torch.bool)
        for mask, _ in masks_seen:
            touched[mask.indices[name]] = True
        frozen = ~touched.view_as(p)
        assert torch.equal(end[name][frozen], start[name][frozen]), name
    # between refreshes, entries outside the current mask stay put even though they learned before
    for (mask_a, snap_a), (_, snap_b) in zip(masks_seen, masks_seen[1:]):
        for name, p in names.items():
            frozen = ~mask_a.dense(name, p)
            assert torch.equal(snap_a[name][frozen], snap_b[name][frozen]), name
    assert any(not torch.equal(start[n], end[n]) for n in names)


@pytest.mark.integration
def test_same_seed_same_mask_and_no_state_leaks_between_runs():
    results = []
    for _ in range(2):
        loaded = make_tiny_t5()
        trainer = Trainer(loaded, PAIRS, _cfg(), progress=False)
        res = trainer.train()
        results.append((res, trainer.mask, _snapshot(loaded.model)))
    (r1, m1, s1), (r2, m2, s2) = results
    assert [x["loss"] for x in r1.losses] == [x["loss"] for x in r2.losses]
    assert r1.refreshes[1]["samples"] == r2.refreshes[1]["samples"]
    assert all(torch.equal(m1.indices[n], m2.indices[n]) for n in m1.indices)
    assert all(torch.equal(s1[n], s2[n]) for n in s1)


@pytest.mark.parametrize("method", ["full", "fish", "random"])
@pytest.mark.integration
def test_other_methods_train(method):
    loaded = make_tiny_llama()
    res = Trainer(loaded, PAIRS, _cfg(method=method), progress=False).train()
    assert res.steps == 6
    assert res.trainable_params == (res.total_params if method == "full" else
                                    round(res.total_params * 0.05))
    assert len(res.refreshes) == (0 if method == "full" else 1)


@pytest.mark.integration
def test_refresh_steps_count_optimizer_steps_not_micro_batches():
    loaded = make_tiny_t5()
    res = Trainer(loaded, PAIRS, _cfg(batch_size=2, grad_accum_steps=2, epochs=2, refresh_steps=2),
                  progress=False).train()
    # 10 samples / 2 per micro-batch = 5 micro-batches -> 3 optimizer steps per epoch
    assert res.steps == 6
    assert [r["step"] for r in res.refreshes] == [0, 2, 4]


@pytest.mark.parametrize("make", [make_tiny_llama, make_tiny_t5], ids=["llama", "t5"])
def test_group_by_length_trains_the_same_samples_with_less_padding(make):
    # sentences of very different lengths, 2 per micro-batch, 5 micro-batches a step
    pairs = [(s + " and so on" * (5 * (i % 3)), t) for i, (s, t) in enumerate(PAIRS)]

    def run(grouped: bool):
        loaded = make()
        for module in loaded.model.modules():  # dropout's draws depend on the batch's shape: none
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            if isinstance(getattr(module, "dropout", None), float):  # T5's attention dropout
                module.dropout = 0.0
        return Trainer(loaded, pairs, _cfg(method="full", batch_size=2, grad_accum_steps=5, epochs=3, lr=1e-3,
                                           group_by_length=grouped), progress=False)

    plain, grouped = run(False), run(True)
    step = [[0, 9], [4, 2], [7]]
    cut = grouped.by_length(step)
    assert [len(b) for b in cut] == [2, 2, 1] and sorted(sum(cut, [])) == [0, 2, 4, 7, 9]
    costs = [grouped.encoded[i].cost for i in sum(cut, [])]
    assert costs == sorted(costs)
    a, b = plain.train(), grouped.train()
    assert b.train_tokens == a.train_tokens and b.padded_tokens < a.padded_tokens
    assert [x["loss"] for x in b.losses] == pytest.approx([x["loss"] for x in a.losses], rel=1e-4)


@pytest.mark.integration
def test_full_training_lowers_loss_on_tiny_data():
    loaded = make_tiny_t5()
    res = Trainer(loaded, PAIRS[:4], _cfg(method="full", epochs=25, lr=1e-2), progress=False).train()
    assert res.losses[-1]["loss"] < 0.5 * res.losses[0]["loss"]


@pytest.mark.integration
def test_generation_and_prediction_run_for_both_kinds(tiny_model):
    out = generate(tiny_model, [p[0] for p in PAIRS[:3]], max_length=40)
    assert len(out.texts) == 3 and all(isinstance(t, str) for t in out.texts)
    examples = _examples(3)
    texts, decoded = predict(tiny_model, TASK, examples, batch_size=2, max_length=40, progress=False)
    assert len(decoded) == 3


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="method"):
        TrainConfig(method="bitfit").validate()
    with pytest.raises(ValueError, match="density"):
        TrainConfig(density=2.0).validate()


@pytest.mark.integration
def test_generation_does_not_depend_on_the_batch(tiny_model):
    """A sentence generates the same text alone and beside a much longer one (the budget is per
    sentence, not per batch); random tiny models run to the limit, so the budget shows."""
    from fishdip.models.loading import GenerationBudget

    short, long = "Booth shot Lincoln .", "Lincoln " * 30 + "."
    budget = GenerationBudget(longest_target=4, target_per_source=1.0, margin=2)
    alone = generate(tiny_model, [short], max_length=200, budget=budget)
    batch = generate(tiny_model, [short, long], max_length=200, budget=budget)
    assert batch.texts[0] == alone.texts[0] and batch.hit_limit[0] == alone.hit_limit[0]
    n_short = len(tiny_model.tokenizer(short, add_special_tokens=False)["input_ids"])
    assert budget.tokens(n_short, 200) == n_short + 2


def test_budget_from_pairs_fits_every_training_target(tiny_model):
    from fishdip.models.encoding import budget_from_pairs

    budget = budget_from_pairs(tiny_model, PAIRS, margin=0)
    tok = tiny_model.tokenizer
    for source, target in PAIRS:
        n_source = len(tok(source, add_special_tokens=False)["input_ids"])
        n_target = len(tok(" " + target, add_special_tokens=False)["input_ids"]) + 1
        assert budget.tokens(n_source, 10_000) >= n_target


def test_long_source_keeps_its_end_and_the_prompt_cue():
    from fishdip.models.encoding import _causal_pieces, encode_sources

    history = "[user] " + "tell me more . " * 40 + "[user] i need a hotel in the north"
    llama = make_tiny_llama()
    prompt, answer = _causal_pieces(llama, history, "[belief] hotel area north [belief]", 96)
    text = llama.tokenizer.decode(prompt)
    assert len(prompt) == 96 and text.startswith("Sentence: ") and text.endswith(
        "[user] i need a hotel in the north\nAnnotated:")
    t5 = make_tiny_t5()
    enc = encode_sources(t5, [history], 64)
    assert t5.tokenizer.decode(enc["input_ids"][0], skip_special_tokens=True).endswith("hotel in the north")
    short, _ = _causal_pieces(llama, "Booth shot Lincoln .", None, 96)  # short ones are untouched
    assert short == llama.tokenizer("Sentence: Booth shot Lincoln .\nAnnotated:")["input_ids"][:-1]  # no EOS


@pytest.mark.integration
def test_bf16_autocast_trains_float32_master_weights():
    loaded = make_tiny_llama()
    result = Trainer(loaded, PAIRS, _cfg(method="fish-dip", precision="bf16", epochs=3), progress=False).train()
    assert result.precision == "bf16"
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert result.losses[-1]["loss"] < result.losses[0]["loss"]
    assert result.refresh_seconds > 0 and result.train_tokens > 0


def test_precision_auto_and_fp16_only_on_cuda(monkeypatch):
    from fishdip.training import precision as amp

    cpu = torch.device("cpu")
    monkeypatch.setattr(amp, "cpu_has_fast_bf16", lambda: False)
    assert amp.resolve("auto", cpu) == "fp32"
    monkeypatch.setattr(amp, "cpu_has_fast_bf16", lambda: True)
    assert amp.resolve("auto", cpu) == "bf16"
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        amp.resolve("fp16", cpu)


def test_a_cpu_run_records_its_instruction_set_and_thread_count():
    from fishdip.training import precision as amp

    before = torch.get_num_threads()
    try:
        for threads, end in ((1, ", 1 thread"), (2, ", 2 threads")):
            torch.set_num_threads(threads)
            machine = amp.machine(torch.device("cpu"))
            assert machine.startswith(f"torch {torch.__version__}, cpu ") and machine.endswith(end), machine
            assert torch.backends.cpu.get_cpu_capability() in machine
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("method", ["full", "fish-dip"])
@pytest.mark.integration
def test_fp16_loss_scaling_path_trains(method, monkeypatch):
    """fp16 is refused on CPU for users (no speed there), but its loss-scaling path runs on CPU too:
    exercise it here so that a GPU run does not meet it for the first time."""
    from fishdip.training import precision as amp

    monkeypatch.setattr(amp, "resolve", lambda precision, device: precision)
    loaded = make_tiny_llama()
    before = _snapshot(loaded.model)
    trainer = Trainer(loaded, PAIRS, _cfg(method=method, precision="fp16", epochs=3), progress=False)
    result = trainer.train()
    assert result.precision == "fp16" and result.losses[-1]["loss"] < result.losses[0]["loss"]
    if method == "fish-dip":  # dense gradients (for the scaler), yet frozen entries still never move
        for name, p in loaded.model.named_parameters():
            frozen = torch.ones(p.numel(), dtype=torch.bool)
            frozen[trainer.touched.get(name, torch.empty(0, dtype=torch.long))] = False
            assert torch.equal(p.detach().reshape(-1)[frozen], before[name].reshape(-1)[frozen])


@pytest.mark.integration
def test_max_steps_cycles_epochs_and_stop_loss_ends_early():
    result = Trainer(make_tiny_llama(), PAIRS, _cfg(method="fish-dip", max_steps=7), progress=False).train()
    assert result.steps == 7 and [x["epoch"] for x in result.losses] == [0, 0, 0, 1, 1, 1, 2]
    assert [r["step"] for r in result.refreshes] == [0, 2, 4, 6]
    stopped = Trainer(make_tiny_llama(), PAIRS, _cfg(method="full", max_steps=30, stop_loss=1e9),
                      progress=False).train()
    assert stopped.steps == 20 and stopped.stopped_early == 20  # 20 steps in a row under the threshold


@pytest.mark.integration
def test_halt_step_is_the_long_runs_model_at_that_step():
    whole = Trainer(make_tiny_llama(), PAIRS, _cfg(max_steps=7), progress=False).train()
    halted = Trainer(make_tiny_llama(), PAIRS, _cfg(max_steps=7, halt_step=4), progress=False).train()

    def same(losses):  # step, epoch, loss and learning rate; not the seconds
        return [{k: v for k, v in x.items() if k != "seconds"} for x in losses]

    assert halted.steps == 4 and same(halted.losses) == same(whole.losses[:4])
    assert halted.losses[-1]["lr"] > 0  # the schedule of 7 steps, not one decayed to 0 at step 4
    # the refresh after step 2 happens, none after the halting step (its mask would never be used)
    assert [r["step"] for r in halted.refreshes] == [0, 2]
    assert [r["samples"] for r in halted.refreshes] == [r["samples"] for r in whole.refreshes[:2]]


def test_rank_by_sum_ranks_by_the_summed_token_loss():
    loaded = make_tiny_llama()
    trainer = Trainer(loaded, PAIRS, _cfg(rank_by="sum"), progress=False)
    trainer.compute_mask(step=0)
    loaded.model.eval()
    with torch.no_grad():
        totals, _ = token_losses(loaded, collate(loaded, PAIRS, 96))
    # 10 pairs in batches of 4: 3 batches, so the minimum of 3 regressing samples
    expected = sorted(range(len(PAIRS)), key=lambda i: (-float(totals[i]), i))[:3]
    assert trainer.result.refreshes[0]["samples"] == expected


@pytest.mark.integration
def test_paper_recipe_uses_the_reference_optimizer_and_ranking():
    from fishdip.sparse.optimizers import MaskedDenseAdafactor
    from fishdip.training.trainer import build_optimizer

    cfg = _cfg(recipe=None, lr=None)  # fish-dip's own recipe is the paper's
    trainer = Trainer(make_tiny_llama(), PAIRS, cfg, progress=False)
    assert trainer.cfg.recipe == "paper" and cfg.to_dict()["recipe"] == "paper"
    assert (trainer.cfg.rank_by, trainer.cfg.rank_mode, trainer.cfg.fisher_mode, trainer.cfg.refresh_phase,
            trainer.cfg.weight_decay) == ("sum", "reference", "reference", "before", 0.0)
    v1 = TrainConfig(method="fish-dip", recipe="paper-v1").resolved()  # what `paper` meant before
    assert (v1.rank_mode, v1.fisher_mode, v1.refresh_phase, v1.optimizer) == ("train", "eval", "after", "adafactor")
    optimizer = build_optimizer(trainer.cfg, trainer.params)
    assert isinstance(optimizer, MaskedDenseAdafactor) and optimizer.defaults["lr"] == 1e-2
    result = trainer.train()
    assert result.losses[-1]["loss"] < result.losses[0]["loss"]


def test_each_method_has_its_own_recipe_and_a_conflicting_option_is_an_error():
    from fishdip.options import ConfigError

    assert TrainConfig(method="fish-dip").effective_recipe == "paper"
    assert TrainConfig(method="fish-dip").effective_lr == 1e-2
    assert TrainConfig(method="fish-dip", recipe="default").resolved().optimizer == "adamw"
    assert TrainConfig(method="full").resolved() == TrainConfig(method="full", recipe="default")
    assert TrainConfig(method="full", recipe="paper").resolved().optimizer == "adafactor"
    TrainConfig(method="fish-dip", recipe="default", weight_decay=0.1).validate()
    with pytest.raises(ConfigError, match="--weight-decay 0.1: fish-dip runs --recipe paper .* add --recipe default"):
        TrainConfig(method="fish-dip", weight_decay=0.1).validate()
    with pytest.raises(ConfigError, match="--weight-decay 0.1: --recipe paper, which sets it to 0.0"):
        TrainConfig(method="full", recipe="paper", weight_decay=0.1).validate()


@pytest.mark.integration
def test_refresh_phase_before_recomputes_the_mask_for_steps_n_2n_like_the_reference():
    # 10 pairs in batches of 2: 5 steps an epoch, 10 steps. The reference counts a step when it starts and
    # recomputes the mask when the count reaches 3, 6, 9: after 2, 5 and 8 completed steps.
    before = Trainer(make_tiny_llama(), PAIRS, _cfg(batch_size=2, refresh_steps=3, refresh_phase="before"),
                     progress=False).train()
    after = Trainer(make_tiny_llama(), PAIRS, _cfg(batch_size=2, refresh_steps=3), progress=False).train()
    assert [r["step"] for r in before.refreshes] == [0, 2, 5, 8]
    assert [r["step"] for r in after.refreshes] == [0, 3, 6, 9]


@pytest.mark.parametrize("mode, expected", [("eval", [False, False]), ("train", [True, True]),
                                            ("reference", [False, True])])
@pytest.mark.integration
def test_ranking_and_fisher_dropout_follow_their_mode(monkeypatch, mode, expected):
    """reference: the first mask on the model as loaded (eval mode), every refresh in train mode."""
    from fishdip.sparse import engine as engine_module

    seen = {"rank": [], "fisher": []}
    real_losses, real_fisher = engine_module.sample_losses, engine_module.fisher_scores

    def losses(*args, **kw):
        seen["rank"].append(loaded.model.training)
        return real_losses(*args, **kw)

    def fisher(*args, **kw):
        seen["fisher"].append(loaded.model.training)
        return real_fisher(*args, **kw)

    monkeypatch.setattr(engine_module, "sample_losses", losses)
    monkeypatch.setattr(engine_module, "fisher_scores", fisher)
    loaded = make_tiny_t5()
    Trainer(loaded, PAIRS, _cfg(epochs=1, batch_size=4, refresh_steps=2, rank_mode=mode, fisher_mode=mode),
            progress=False).train()
    assert seen["rank"] == expected and seen["fisher"] == expected


def test_padded_loss_is_the_references_mean_over_every_label_position():
    """TANL pads T5 labels to --max-length with the pad id (not -100): the loss is the mean over all
    those positions, pad predictions included."""
    import torch.nn.functional as F

    loaded = make_tiny_t5()
    loaded.model.eval()
    cfg = _cfg(recipe="default", loss_positions="padded", max_length=96)
    trainer = Trainer(loaded, PAIRS, cfg, progress=False)
    assert trainer.padded
    with torch.no_grad():
        got = trainer.batch_loss([0, 1])
        for row, i in enumerate([0, 1]):
            source, target = PAIRS[i]
            ids = loaded.tokenizer(source, return_tensors="pt").input_ids
            labels = loaded.tokenizer(text_target=target, max_length=96, padding="max_length", truncation=True,
                                      return_tensors="pt").input_ids  # pads are labels, as in TANL
            logits = loaded.model(input_ids=ids, labels=labels).logits
            expected = F.cross_entropy(logits[0], labels[0])  # the mean over all 96 positions
            assert torch.allclose(got[row], expected, atol=1e-5), (got[row], expected)
        plain = Trainer(loaded, PAIRS, _cfg(max_length=96), progress=False).batch_loss([0, 1])
    assert (got < plain).all()  # easy pad positions dilute the mean


def test_padded_loss_is_refused_for_decoder_only_models_unless_the_recipe_sets_it():
    from fishdip.options import ConfigError

    with pytest.raises(ConfigError, match="padded loss positions: only for encoder-decoder models"):
        Trainer(make_tiny_llama(), PAIRS, _cfg(loss_positions="padded"), progress=False)
    trainer = Trainer(make_tiny_llama(), PAIRS, _cfg(recipe="paper", lr=None), progress=False)
    assert trainer.cfg.loss_positions == "padded" and not trainer.padded  # decoder-only: the real targets
