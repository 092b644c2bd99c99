"""Every option, given a bad value, is refused up front: exit code 2 and one line naming it."""

import pytest

from fishdip.cli import main
from tests.conftest import FIXTURES

BAD = [
    # (arguments, what the one line must say)
    (["--task", "nope"], "--task 'nope': must be one of conll04"),
    (["--model", "./no/such/model"], "--model ./no/such/model: no such folder"),
    (["--model", "README.md"], "--model README.md: is a file"),
    (["--model", "tests"], "--model tests: not a model folder (no config.json)"),
    (["--data-dir", "no-such-dir"], "--data-dir no-such-dir: no such folder"),
    (["--fold", "-1"], "--fold -1: must be >= 0"),
    (["--fold", "x"], "Invalid value for '--fold'"),
    (["--train-fraction", "0"], "--train-fraction 0.0: must be > 0 and <= 1"),
    (["--train-fraction", "1.5"], "--train-fraction 1.5: must be > 0 and <= 1"),
    (["--train-size", "0"], "--train-size 0: must be >= 1"),
    (["--train-size", "4", "--train-fraction", "0.1"], "give one of them, not both"),
    (["--episodes", "3-1"], "--episodes 3-1: 3-1 runs backwards"),
    (["--episodes", "2,1"], "--episodes 2,1: must be ascending"),
    (["--episodes", "1,1"], "--episodes 1,1: must be ascending episode numbers >= 0 without repeats"),
    (["--episodes", "one"], "--episodes one: must look like 1-3 or 1,4,7"),
    (["--eval-split", "train"], "--eval-split 'train': must be one of dev, test"),
    (["--n-way", "1"], "--n-way 1: must be >= 2"),
    (["--k-shot", "0"], "--k-shot 0: must be >= 1"),
    (["--queries", "0"], "--queries 0: must be >= 1"),
    (["--meta-train", "holdout"], "--meta-train: only for few-shot tasks"),
    (["--task", "fewrel", "--meta-train", "nofile.json"], "--meta-train nofile.json: no such file"),
    (["--meta-train-size", "0"], "--meta-train-size 0: must be >= 1"),
    (["--meta-train-epochs", "0"], "--meta-train-epochs 0: must be >= 1"),
    (["--eval-limit", "0"], "--eval-limit 0: must be >= 1"),
    (["--task", "fewrel", "--eval-limit", "7"], "--eval-limit 7: few-shot queries come in groups of --n-way 5"),
    (["--decoder", "spacy"], "--decoder 'spacy': must be one of fishdip, tanl"),
    (["--rc-score", "max"], "--rc-score 'max': must be one of sum, mean"),
    (["--eval-batch-size", "0"], "--eval-batch-size 0: must be >= 1"),
    (["--num-beams", "0"], "--num-beams 0: must be >= 1"),
    (["--output-dir", "README.md/run"], "README.md is a file, so no folder can be made there"),
    (["--device", "cuda:7"], "--device cuda:7: this machine has"),
    (["--device", "toaster"], "--device toaster: not a device"),
    (["--method", "bitfit"], "--method 'bitfit': must be one of full, fish, fish-dip, random, random-dip, sift, "
                             "spiel, lisa, lora, ia3,"),
    (["--method", "full,nope"], "--method 'nope': must be one of"),
    (["--epochs", "0"], "--epochs 0: must be >= 1"),
    (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
    (["--grad-accum-steps", "0"], "--grad-accum-steps 0: must be >= 1"),
    (["--lr", "-1"], "--lr -1.0: must be > 0"),
    (["--lr", "0"], "--lr 0.0: must be > 0"),
    (["--lr", "nan"], "--lr nan: must be > 0"),
    (["--warmup-ratio", "1.5"], "--warmup-ratio 1.5: must be >= 0 and <= 1"),
    (["--optimizer", "sgd"], "--optimizer 'sgd': must be one of adamw, adafactor"),
    (["--weight-decay", "-0.1"], "--weight-decay -0.1: must be >= 0"),
    (["--max-grad-norm", "-1"], "--max-grad-norm -1.0: must be >= 0"),
    (["--max-length", "4"], "--max-length 4: must be >= 8"),
    (["--density", "0"], "--density 0.0: must be > 0 and <= 1"),
    (["--density", "2"], "--density 2.0: must be > 0 and <= 1"),
    (["--refresh-steps", "0"], "--refresh-steps 0: must be >= 1"),
    (["--regressing-samples", "0"], "--regressing-samples 0: must be >= 1"),
    (["--fisher", "cube"], "--fisher 'cube': must be one of square, abs"),
    (["--fish-samples", "0"], "--fish-samples 0: must be >= 1"),
    (["--seed", "-3"], "--seed -3: must be >= 0"),
    (["--precision", "fp8"], "--precision 'fp8': must be one of auto, fp32, bf16, fp16"),
    (["--precision", "fp16", "--device", "cpu"], "--precision fp16: needs a CUDA GPU"),
    (["--max-steps", "0"], "--max-steps 0: must be >= 1"),
    (["--halt-step", "0"], "--halt-step 0: must be >= 1"),
    (["--stop-loss", "0"], "--stop-loss 0.0: must be > 0"),
    (["--rank-by", "max"], "--rank-by 'max': must be one of mean, sum"),
    (["--rank-mode", "test"], "--rank-mode 'test': must be one of eval, train, reference"),
    (["--fisher-mode", "test"], "--fisher-mode 'test': must be one of eval, train, reference"),
    (["--refresh-phase", "during"], "--refresh-phase 'during': must be one of after, before"),
    (["--recipe", "paper", "--fisher-mode", "train"], "--fisher-mode 'train': --recipe paper, which sets it"),
    (["--loss-positions", "all"], "--loss-positions 'all': must be one of target, padded"),
    (["--subset-sampling", "uie"], "--subset-sampling 'uie': must be one of random, tanl"),
    (["--task", "fewrel", "--subset-sampling", "tanl"], "--subset-sampling tanl: few-shot episodes are drawn"),
    (["--eval-every", "0"], "--eval-every 0: must be >= 1"),
    (["--task", "fewrel", "--eval-every", "5"], "--eval-every: learning curves are for the generation tasks"),
    (["--method", "icl", "--eval-every", "5"], "--eval-every: icl trains nothing"),
    (["--curve-split", "train"], "--curve-split 'train': must be one of dev, test"),
    (["--curve-limit", "0"], "--curve-limit 0: must be >= 1"),
    (["--checkpoint-every", "-1"], "--checkpoint-every -1.0: must be >= 0"),
    (["--save", "zip"], "--save 'zip': must be one of auto, delta, adapter, full, none"),
    (["--method", "fish-dip", "--save", "adapter"], "--save adapter: fish-dip trains no adapter"),
    (["--recipe", "tanl"], "--recipe 'tanl': must be one of default, paper, paper-v1"),
    (["--icl-context", "8"], "--icl-context 8: must be >= 16"),
    (["--icl-selection", "bm25"], "--icl-selection 'bm25': must be one of tfidf, random"),
    (["--method", "icl", "--save", "full"], "--save full: icl trains nothing"),
    (["--task", "fewrel", "--method", "icl"], "--method icl: few-shot relation classification scores candidates"),
    (["--lora-rank", "0"], "--lora-rank 0: must be >= 1"),
    (["--lora-alpha", "0"], "--lora-alpha 0.0: must be > 0"),
    (["--lora-dropout", "1.5"], "--lora-dropout 1.5: must be >= 0 and <= 1"),
    (["--method", "full", "--save", "delta"], "--save delta: full is not a sparse method"),
    (["--no-such-option"], "No such option: --no-such-option"),
    (["--n-way", "3"], "--n-way (for fewshot_rc tasks only): no effect with --method fish-dip on conll03"),
    (["--method", "full,fish-dip", "--lora-rank", "4"], "--lora-rank (read by lora only): no effect with --method"),
    (["--method", "full", "--refresh-steps", "5"], "--refresh-steps (read by fish-dip, random-dip, spiel, lisa only)"),
    (["--recipe", "paper", "--optimizer", "adamw"], "--optimizer 'adamw': --recipe paper, which sets it to "),
    (["--method", "lora", "--lora-targets", " , "], "--lora-targets ' , ': names no module"),
    (["--method", "fish", "--regrow-rate", "0.5"], "--regrow-rate (read by spiel only)"),
    (["--method", "spiel", "--regrow-rate", "0"], "--regrow-rate 0.0: must be > 0 and <= 1"),
    (["--method", "lora", "--lora-variant", "vera"], "--lora-variant 'vera': must be one of lora, dora, rslora, pissa"),
    (["--method", "lisa", "--lisa-layers", "0"], "--lisa-layers 0: must be >= 1"),
    (["--method", "lora", "--lora-variant", "pissa", "--save", "adapter"], "--save adapter: a PiSSA adapter"),
    (["--train-file", "mine.jsonl"], "--train-file: a run on your own file has the task 'file'; leave --task out"),
    (["--eval-file", "mine.jsonl"], "--eval-file: only with --train-file"),
    (["--data-format", "brat"], "--data-format 'brat': must be one of auto, doccano, label-studio, jsonl"),
    (["--dev-fraction", "1.5"], "--dev-fraction 1.5: must be > 0 and <= 0.9"),
    (["--split-seed", "-1"], "--split-seed -1: must be >= 0"),
    (["--types-file", "types.json"], "--types-file: only with --train-file"),
    (["--decoding", "fancy"], "--decoding 'fancy': must be one of auto, free, constrained"),
    (["--copy-ahead", "-1"], "--copy-ahead -1: must be >= 0"),
    (["--decoding", "constrained", "--num-beams", "3"], "--num-beams 3: --decoding constrained runs greedy search"),
    (["--refresh-gate", "sometimes"], "--refresh-gate 'sometimes': must be one of none, regressing, never"),
    (["--method", "random-dip", "--refresh-gate", "never"], "--refresh-gate (read by fish-dip only)"),
    (["--fold", "2"], "--fold (only datasets that ship folds, e.g. ade)"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_value_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data-dir", str(FIXTURES), "--task", "conll03", "--output-dir", str(out), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert not out.exists()  # nothing written


def test_every_train_option_is_in_the_table():
    """A new option must get a bad-value row here (or be one that has no bad value)."""
    from dataclasses import fields

    from fishdip.options import option_name
    from fishdip.runs.config import ExperimentConfig
    from fishdip.training.config import TrainConfig

    tested = {a for args, _ in BAD for a in args if a.startswith("--")}
    no_bad_value = {"--strict-tags", "--group-by-length", "--lora-targets"}  # flags; module names peft checks
    options = {option_name(f) for cls in (ExperimentConfig, TrainConfig) for f in fields(cls) if f.name != "train"}
    assert options - tested - no_bad_value == set()
