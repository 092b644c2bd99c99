"""(source, target) text pairs -> token ids and padded tensors.

Encoder-decoders read the source and are trained to write the target. Decoder-only models read
``PROMPT.format(source=...)`` and continue with the target; only the target tokens (and the closing
EOS) are labels. The generation budget fixed by the training targets is measured here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fishdip.formats.tanl import parse
from fishdip.models.loading import GenerationBudget, LoadedModel

PROMPT = "Sentence: {source}\nAnnotated:"
IGNORE = -100


def budget_from_pairs(loaded: LoadedModel, pairs: list[tuple[str, str]], margin: int = 16) -> GenerationBudget:
    """The budget that fits every training target (plus ``margin`` tokens), and the most relations
    and words an annotated span of a training target has (the limits of constrained decoding)."""
    tok = loaded.tokenizer
    longest, ratio, relations, span = 0, 0.0, 0, 1
    for source, target in pairs:
        n_source = max(1, len(tok(source, add_special_tokens=False)["input_ids"]))
        n_target = len(tok(" " + target, add_special_tokens=False)["input_ids"]) + 1  # + EOS
        longest, ratio = max(longest, n_target), max(ratio, n_target / n_source)
        for bracket in parse(target).brackets:
            relations = max(relations, sum("=" in f for f in bracket.fields))
            span = max(span, len(bracket.text.split()))
    return GenerationBudget(longest, round(ratio, 4), margin, max(relations, 1), span)


def _causal_pieces(loaded: LoadedModel, source: str, target: str | None, max_length: int):
    tok = loaded.tokenizer
    # keep the tokenizer's own convention (Llama adds BOS), but a prompt must not end in EOS
    prompt = tok(PROMPT.format(source=source), add_special_tokens=True)["input_ids"]
    if prompt and prompt[-1] == tok.eos_token_id:
        prompt = prompt[:-1]
    if len(prompt) > max_length:
        prompt = _cut_source_keep_cue(loaded, source, max_length)
    if target is None:
        return prompt, []
    answer = tok(" " + target, add_special_tokens=False, truncation=True,
                 max_length=max_length - 1)["input_ids"] + [tok.eos_token_id]
    return prompt, answer


def _cut_source_keep_cue(loaded: LoadedModel, source: str, max_length: int) -> list[int]:
    """A prompt of at most ``max_length`` tokens that keeps the end of the source and the cue.

    The end matters most (a dialogue's latest turns; TANL keeps it too), and without the cue
    ``Annotated:`` a decoder-only model does not know that the annotation comes next."""
    tok = loaded.tokenizer
    head, tail = PROMPT.split("{source}")
    head_ids = tok(head, add_special_tokens=True)["input_ids"]
    if head_ids and head_ids[-1] == tok.eos_token_id:
        head_ids = head_ids[:-1]
    tail_ids = tok(tail, add_special_tokens=False)["input_ids"]
    room = max(0, max_length - len(head_ids) - len(tail_ids))
    source_ids = tok(source, add_special_tokens=False)["input_ids"]
    return head_ids + (source_ids[len(source_ids) - room:] if room else []) + tail_ids


def encode_sources(loaded: LoadedModel, sources: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Encoder inputs; a source longer than ``max_length`` keeps its end (see _cut_source_keep_cue)."""
    tok = loaded.tokenizer
    side, tok.truncation_side = tok.truncation_side, "left"
    try:
        return tok(sources, max_length=max_length, truncation=True, padding=True, return_tensors="pt")
    finally:
        tok.truncation_side = side


@dataclass(frozen=True)
class Encoded:
    """One training pair as token ids: what the model reads and the target positions it is scored on.

    Encoder-decoders: ``input_ids`` is the source and ``labels`` the target. Decoder-only models:
    ``input_ids`` is prompt + target and ``labels`` marks the target (IGNORE on the prompt).
    Encoding a pair once and padding later lets the trainer tokenize each sample a single time."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def cost(self) -> int:
        """Positions the model runs over (for grouping samples of similar length)."""
        return len(self.input_ids) + (len(self.labels) if len(self.labels) != len(self.input_ids) else 0)

    @property
    def target_tokens(self) -> int:
        """Target positions the loss is taken over (a summed loss divided by this is the mean)."""
        return sum(1 for t in self.labels if t != IGNORE)


def encode_pair(loaded: LoadedModel, source: str, target: str, max_length: int) -> Encoded:
    tok = loaded.tokenizer
    if loaded.is_encoder_decoder:
        side, tok.truncation_side = tok.truncation_side, "left"  # keep a long source's end
        try:
            ids = tok(source, max_length=max_length, truncation=True)["input_ids"]
        finally:
            tok.truncation_side = side
        labels = tok(text_target=target, max_length=max_length, truncation=True)["input_ids"]
        return Encoded(tuple(ids), tuple(labels))
    prompt, answer = _causal_pieces(loaded, source, target, max_length)
    return Encoded(tuple(prompt + answer), tuple([IGNORE] * len(prompt) + answer))


def pad_batch(loaded: LoadedModel, rows: list[Encoded]) -> dict[str, torch.Tensor]:
    """Right-padded tensors; padding is IGNORE in ``labels`` and 0 in ``attention_mask``."""
    pad = loaded.tokenizer.pad_token_id

    def stack(seqs: list[tuple[int, ...]], fill: int) -> torch.Tensor:
        out = torch.full((len(seqs), max(len(x) for x in seqs)), fill, dtype=torch.long)
        for i, x in enumerate(seqs):
            out[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        return out

    input_ids = stack([r.input_ids for r in rows], pad)
    attention = stack([(1,) * len(r.input_ids) for r in rows], 0)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": stack([r.labels for r in rows], IGNORE)}


def padded_positions(rows: list[Encoded]) -> int:
    """Positions a batch of ``rows`` runs over once padded (what ``pad_batch`` builds): the longest
    row times the rows, for the inputs and, encoder-decoders, for the labels apart."""
    positions = len(rows) * max(len(r.input_ids) for r in rows)
    if any(len(r.labels) != len(r.input_ids) for r in rows):  # encoder-decoder: the decoder's own length
        positions += len(rows) * max(len(r.labels) for r in rows)
    return positions


def pad_labels_to(loaded: LoadedModel, batch: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    """Encoder-decoder labels padded to ``length`` with the pad token itself, as TANL pads them (never
    IGNORE): every position then counts in the loss, pad predictions after the target included,
    and ``per_sample_loss`` averages over all ``length`` positions (the FISH-DIP reference's loss)."""
    labels = batch["labels"]
    padded = torch.full((labels.shape[0], max(length, labels.shape[1])), loaded.tokenizer.pad_token_id,
                        dtype=labels.dtype)
    padded[:, : labels.shape[1]] = labels.masked_fill(labels == IGNORE, loaded.tokenizer.pad_token_id)
    return {**batch, "labels": padded}


def collate(loaded: LoadedModel, pairs: list[tuple[str, str]], max_length: int) -> dict[str, torch.Tensor]:
    """Training batch with ``labels`` set to IGNORE on prompt and padding positions."""
    return pad_batch(loaded, [encode_pair(loaded, s, t, max_length) for s, t in pairs])


# Decoder-only architectures whose logits are exactly ``lm_head(final hidden state)`` (no scaling or
# soft-capping): for them only the target positions go through the LM head. With a 49k vocabulary the
# head is a fifth of a small model's matrix work, and prompt and padding positions need no logits.


def prompt_ids(loaded: LoadedModel, source: str, max_length: int) -> list[int]:
    """What a decoder-only model reads before it writes the annotation of ``source``."""
    return _causal_pieces(loaded, source, None, max_length)[0]


def source_span(loaded: LoadedModel, prompt: list[int], source: str) -> tuple[int, int]:
    """Where ``source``'s tokens lie in a decoder-only ``prompt`` (``prompt_ids``, demonstrations in
    front allowed): ends before the cue, starts a token early where tokenizing in context merges the
    first word with what precedes it (copy-ahead's guesses need no more)."""
    tok = loaded.tokenizer
    head, tail = PROMPT.split("{source}")
    cue = len(tok(head + "x" + tail, add_special_tokens=False)["input_ids"]) - \
        len(tok(head + "x", add_special_tokens=False)["input_ids"])
    end = max(0, len(prompt) - cue)
    return max(0, end - len(tok(source, add_special_tokens=False)["input_ids"]) - 1), end
