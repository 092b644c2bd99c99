"""What a task reads: which data an episode uses (``DataOptions``) and how outputs are generated
(``GenerationOptions``). Tasks see these narrow objects, never a whole run config.

A run's ``ExperimentConfig`` (runs/config.py) is a ``DataOptions`` with the run's other options,
and makes its ``GenerationOptions`` (``ExperimentConfig.generation()``); evaluation alone
(``fishdip evaluate``, ``Predictor.evaluate``) makes them directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from fishdip.data.annotations import DATA_FORMATS
from fishdip.data.sampling import SUBSET_RULES
from fishdip.formats.grammar import DECODING_RULES
from fishdip.options import ConfigError, check_fields, option

FEW_SHOT = ("fewshot_rc",)  # the families that read the few-shot options (field metadata ``family``)
# what a run on a user's files reads besides --train-file, with the values that mean "not given"
FILE_OPTIONS = {"eval_file": None, "data_format": "auto", "dev_fraction": 0.2, "split_seed": 0, "types_file": None}
RC_SCORES = ("sum", "mean")  # a candidate relation's output scored by its summed (TANL) or mean token loss
# what a generated output may be: free, or a grammar with its rules (formats/grammar.DECODING_RULES)
DECODINGS = ("free", *DECODING_RULES)
# the default, "auto", is resolved to one of them where the task is known (``resolve_decoding``)
DECODING_CHOICES = ("auto", *DECODINGS)


@dataclass
class DataOptions:
    """Where a task's data is and which part of it an episode uses."""

    data_dir: str | None = option(None, "folder holding <task>/ (else $FISHDIP_DATA_DIR, else the cache)")
    train_file: str | None = option(None, "your own annotated sentences instead of a dataset: a doccano (JSONL) or "
                                    "Label Studio (JSON) export, or fishdip's JSONL of character-offset spans "
                                    "(docs/YOUR-DATA.md); the family follows from the data (relations: joint "
                                    "entity-relation extraction, else NER) and the run's task is 'file'")
    eval_file: str | None = option(None, "--train-file runs: the annotated sentences to score (default: a seeded "
                                   "--dev-fraction of --train-file, held out)")
    data_format: str = option("auto", "--train-file / --eval-file format (auto: recognised from the file)",
                              choices=DATA_FORMATS)
    dev_fraction: float = option(0.2, "--train-file without --eval-file: this fraction of the file, drawn with "
                                 "--split-seed, is held out and scored", above=0, max=0.9)
    split_seed: int = option(0, "--train-file without --eval-file: the seed of the held-out draw", min=0)
    types_file: str | None = option(None, "--train-file runs: JSON {\"entities\": [labels], \"relations\": "
                                    "[labels]} (lists, or objects label -> the name the model writes); default: "
                                    "every label in the data")
    fold: int = option(0, "cross-validation fold, for datasets that ship folds (ade)", min=0)
    train_fraction: float | None = option(None, "use this fraction of the training split", above=0, max=1)
    train_size: int | None = option(None, "use this many training sentences", min=1)
    subset_sampling: str = option("random", "how episode i draws its training subset: random (a seeded sample, "
                                  "sorted) or tanl (TANL's rule, which FISH-DIP's reference uses: random.seed(i), "
                                  "shuffle all indices, take the first round(fraction x N))", choices=SUBSET_RULES)
    strict_tags: bool = option(False, "CoNLL files: an invalid tag transition is an error (file, line) "
                               "instead of being repaired like conlleval")
    eval_split: str = option("test", "dev or test", choices=("dev", "test"))
    eval_limit: int | None = option(None, "evaluate on the first N sentences only (few-shot: N queries, a "
                                    "multiple of --n-way so every relation keeps its share)", min=1)
    curve_split: str = option("dev", "learning curve: the split it is scored on (a test-split curve describes "
                              "training dynamics only; nothing is chosen on it)", choices=("dev", "test"))
    curve_limit: int | None = option(100, "learning curve: the first N sentences of --curve-split (none: all)", min=1)
    n_way: int = option(5, "few-shot tasks: relations per episode", min=2, family=FEW_SHOT)
    k_shot: int = option(1, "few-shot tasks: training instances per relation", min=1, family=FEW_SHOT)
    n_queries: int = option(5, "few-shot tasks: query instances per relation", min=1, cli="queries", family=FEW_SHOT)
    meta_train: str | None = option(None, "few-shot tasks: before the episodes, fine-tune on a FewRel-format file "
                                    "of other relations (TANL, FISH-DIP), or 'holdout': half of the episode "
                                    "file's relations (seeded split), episodes drawn from the other half",
                                    family=FEW_SHOT)
    meta_train_size: int | None = option(400, "meta-training instances, spread evenly over its relations", min=1,
                                         family=FEW_SHOT)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_fields(self)
        self.check_size()

    def check_size(self) -> None:
        if self.train_fraction is not None and self.train_size is not None:
            raise ConfigError("--train-fraction and --train-size: give one of them, not both")
        if self.train_file is None:  # the options of a run on a user's files mean nothing without one
            for name, default in FILE_OPTIONS.items():
                if getattr(self, name) != default:
                    raise ConfigError(f"--{name.replace('_', '-')}: only with --train-file (your own annotated "
                                      "sentences)")


def resolve_decoding(decoding: str, constrains: bool, num_beams: int) -> str:
    """What ``auto`` decodes with: annotated-tails where the family has a grammar and search is greedy
    (on CoNLL04 dev over eight models it scored at least own-brackets' F1, which scored at least free
    decoding's, with no unusable output: docs/RESULTS.md; a family without relations decodes it as
    own-brackets), free decoding otherwise (beams; a family with no grammar). Any other value is itself."""
    if decoding != "auto":
        return decoding
    return "annotated-tails" if constrains and num_beams == 1 else "free"


def check_beams(decoding: str, num_beams: int) -> None:
    if decoding not in ("free", "auto") and num_beams != 1:
        raise ConfigError(f"--num-beams {num_beams}: --decoding {decoding} runs greedy search; use --num-beams 1, "
                          "or --decoding free for beams")


@dataclass
class GenerationOptions:
    """How a model's outputs are produced for evaluation."""

    # 64: fewer decoding steps than 16, and a decoder-only model's finished rows leave the batch
    # (benchmarks/generation.py: 2.2x the tokens/s of model.generate at 16, the same tokens)
    batch_size: int = option(64, "sentences per generation batch", min=1)
    max_length: int = option(256, "maximum tokens of a source and of a target", min=8, max=100_000)
    num_beams: int = option(1, "1 = greedy decoding", min=1, max=64)
    decoding: str = option("auto", "auto: annotated-tails where the task has a grammar and search is greedy, else "
                           "free (a run records which ran); "
                           "free: the model writes what it likes, decoded by alignment afterwards; "
                           "constrained: it may write only a valid annotation of its input (the input's words "
                           "in order, each once; bracket groups of the schema's types and relations; relation "
                           "tails that are runs of input words), within a budget that such an output fits; "
                           "own-brackets: constrained, and where the model's own choice is not allowed it copies "
                           "on rather than open a bracket group; annotated-tails: own-brackets, and every relation "
                           "tail names a span the output annotates, before or after it (without relations: "
                           "own-brackets); greedy only",
                           choices=DECODING_CHOICES, older="free")
    rc_score: str = option("sum", "few-shot relation classification: rank candidate relations by the summed "
                           "(TANL) or the mean token loss of their output", choices=RC_SCORES, family=FEW_SHOT)
    copy_ahead: int = option(0, "decoder-only greedy search: check up to this many guessed tokens (the sentence's "
                             "next words, annotations written before) in each forward pass; the same outputs up to "
                             "floating-point near-ties, faster where a pass of a few tokens costs about what a "
                             "pass of one does (a GPU, a CPU at batch 1), slower on a CPU at large batches "
                             "(docs/BENCHMARKS.md); 0: one token a pass", min=0, max=64)

    def __post_init__(self) -> None:
        check_fields(self)
        check_beams(self.decoding, self.num_beams)
