"""(source, target) text pairs -> tensors, per-sample losses and generated text.

Encoder-decoders read the source and are trained to write the target.
Decoder-only models read ``PROMPT.format(source=...)`` and continue with the
target; the loss covers only the target tokens (and the closing EOS).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GenerationConfig
from transformers.modeling_outputs import BaseModelOutput

from fishdip.models.loading import GenerationBudget, LoadedModel

PROMPT = "Sentence: {source}\nAnnotated:"
IGNORE = -100


def budget_from_pairs(loaded: LoadedModel, pairs: list[tuple[str, str]], margin: int = 16) -> GenerationBudget:
    """The budget that fits every training target (plus ``margin`` tokens)."""
    tok = loaded.tokenizer
    longest, ratio = 0, 0.0
    for source, target in pairs:
        n_source = max(1, len(tok(source, add_special_tokens=False)["input_ids"]))
        n_target = len(tok(" " + target, add_special_tokens=False)["input_ids"]) + 1  # + EOS
        longest, ratio = max(longest, n_target), max(ratio, n_target / n_source)
    return GenerationBudget(longest, round(ratio, 4), margin)


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
PLAIN_LM_HEAD = ("llama", "mistral", "qwen2", "qwen3", "smollm3", "gemma3_text")


def plain_lm_head(model) -> bool:
    """Whether the logits are the output embedding of the decoder's last hidden state and nothing
    more (no soft-capping), so that the head may run on the target positions alone."""
    config = model.config
    return config.model_type in PLAIN_LM_HEAD and getattr(config, "final_logit_softcapping", None) is None


def token_losses(loaded: LoadedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed token cross-entropy of each sample over its real target tokens, and their number."""
    model = loaded.model
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    labels = batch["labels"]
    if not loaded.is_encoder_decoder and plain_lm_head(model):
        hidden = model.get_decoder()(input_ids=batch["input_ids"],
                                     attention_mask=batch["attention_mask"]).last_hidden_state
        labels = labels[:, 1:]  # position t predicts token t+1
        rows, cols = (labels != IGNORE).nonzero(as_tuple=True)
        logits = model.get_output_embeddings()(hidden[rows, cols])
        token_loss = F.cross_entropy(logits.float(), labels[rows, cols], reduction="none")
        total = torch.zeros(labels.shape[0], device=device).index_add_(0, rows, token_loss)
        return total, (labels != IGNORE).float().sum(dim=1)
    if loaded.is_encoder_decoder:
        decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=decoder_input_ids).logits
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, labels = logits[:, :-1], labels[:, 1:]  # position t predicts token t+1
    # flattened: log-softmax over a contiguous last dimension, no transposed copy of the logits
    token_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                 ignore_index=IGNORE, reduction="none").view(labels.shape)
    real = (labels != IGNORE).float()
    return (token_loss * real).sum(dim=1), real.sum(dim=1)


def per_sample_loss(loaded: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token cross-entropy of each sample over its real target tokens (padding excluded)."""
    total, count = token_losses(loaded, batch)
    return total / count.clamp(min=1.0)


@dataclass
class Generated:
    texts: list[str]
    hit_limit: list[bool]  # stopped by the token budget, not by EOS: the text may be cut


@torch.no_grad()
def generate(
    loaded: LoadedModel,
    sources: list[str],
    max_length: int,
    num_beams: int = 1,
    budget: GenerationBudget | None = None,
) -> Generated:
    """Greedy (or beam) generation for one batch of sources.

    Each source gets its own token budget (``budget``, else ``loaded.budget``), so the output for
    a sentence does not depend on which other sentences share its batch. Greedy search runs
    ``greedy_rows`` (a row that is done leaves the batch); beams, in-context learning and a
    generation config that changes the logits run ``model.generate`` to the batch's largest
    budget and cut each row to its own.
    """
    tok, model = loaded.tokenizer, loaded.model
    budget = budget or loaded.budget
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    limits = [budget.tokens(len(tok(s, add_special_tokens=False)["input_ids"]), max_length) for s in sources]
    kwargs = dict(max_new_tokens=max(limits), num_beams=num_beams, do_sample=False,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    demos = loaded.demonstrations
    if demos is not None:  # in-context learning: an annotation ends at its line's end
        kwargs.update(stop_strings=["\n"], tokenizer=tok)
    if loaded.is_encoder_decoder:
        if demos is not None:
            sources, max_length = [demos.prefix(s) + s for s in sources], max_length + demos.context_tokens
        enc = {k: v.to(device) for k, v in encode_sources(loaded, sources, max_length).items()}
        if num_beams == 1 and demos is None and plain_greedy(model):
            new_tokens = greedy_rows(model, enc["input_ids"], enc["attention_mask"], limits, tok.eos_token_id)
        else:
            new_tokens = model.generate(**enc, **kwargs)[:, 1:].tolist()  # after the decoder start token
    else:
        prompts = [prompt_ids(loaded, s, max_length) for s in sources]
        if demos is not None:
            prompts = [_with_prefix(loaded, demos.prefix(s), p) for s, p in zip(sources, prompts)]
        # on the left, so every row ends where generation starts
        enc = tok.pad({"input_ids": prompts}, padding=True, padding_side="left", return_tensors="pt")
        input_ids, attention = enc["input_ids"], enc["attention_mask"]
        width = input_ids.shape[1]
        if num_beams == 1 and demos is None and plain_greedy(model):
            new_tokens = greedy_rows(model, input_ids.to(device), attention.to(device), limits, tok.eos_token_id)
        else:
            out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
            new_tokens = out[:, width:].tolist()
    model.train(was_training)
    texts, hits = [], []
    for row, limit in zip(new_tokens, limits):
        eos = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
        text = tok.decode(row[: min(eos, limit)], skip_special_tokens=True)
        if demos is not None:
            text, newline, _ = text.lstrip().partition("\n")
            eos = eos if not newline else 0  # stopped by the end of the line, not by the budget
        hits.append(eos >= limit)
        texts.append(" ".join(text.split()))
    return Generated(texts, hits)


def prompt_ids(loaded: LoadedModel, source: str, max_length: int) -> list[int]:
    """What a decoder-only model reads before it writes the annotation of ``source``."""
    return _causal_pieces(loaded, source, None, max_length)[0]


# GenerationConfig fields with which model.generate's greedy search is more than the argmax of the logits
LOGITS_CHANGING = ("repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size",
                   "encoder_no_repeat_ngram_size", "bad_words_ids", "min_length", "min_new_tokens",
                   "forced_bos_token_id", "forced_eos_token_id", "forced_decoder_ids", "suppress_tokens",
                   "begin_suppress_tokens", "sequence_bias", "exponential_decay_length_penalty", "guidance_scale",
                   "watermarking_config", "remove_invalid_values")


def plain_greedy(model) -> bool:
    """Whether the model's own generation config leaves greedy search an argmax of the logits (no
    repetition penalty, banned or forced tokens...): then ``greedy_rows`` writes what it would."""
    default, own = GenerationConfig(), getattr(model, "generation_config", None) or GenerationConfig()
    return all(getattr(own, name, None) == getattr(default, name, None) for name in LOGITS_CHANGING)


@torch.no_grad()
def greedy_rows(model, input_ids: torch.Tensor, attention: torch.Tensor, limits: list[int],
                eos_token_id: int) -> list[list[int]]:
    """Greedy decoding of a batch; each row stops at EOS (kept) or after ``limits[i]`` tokens.

    ``input_ids`` is left-padded prompts for a decoder-only model, the (padded) sources for an
    encoder-decoder. ``model.generate`` runs every row until the last one stops, and on CoNLL04's
    test split fewer than half of those row-steps belong to rows still writing (42 % at 16
    sentences a batch). Here a row that is done leaves the batch, its KV cache rows (and encoder
    states) with it, so later steps run on the rows still writing. Each remaining row gets the
    argmax of the same computation as in ``generate``; only the batch the matrix products run on
    shrinks."""
    steps = (_EncoderDecoderSteps if model.config.is_encoder_decoder else _DecoderOnlySteps)(
        model, input_ids, attention)
    live = list(range(len(limits)))
    rows: list[list[int]] = [[] for _ in limits]
    while True:
        tokens = steps.next_tokens()
        keep = []
        for slot, (row, token) in enumerate(zip(live, tokens.tolist())):
            rows[row].append(token)
            if token != eos_token_id and len(rows[row]) < limits[row]:
                keep.append(slot)
        if not keep:
            return rows
        if len(keep) < len(live):  # rows that are done leave the batch
            index = torch.tensor(keep, device=tokens.device)
            steps.select(index)
            live, tokens = [live[i] for i in keep], tokens[index]
        steps.feed(tokens)


class _Steps:
    """The model state of one greedy batch: the KV cache and what the next forward pass reads."""

    def __init__(self, model):
        params = inspect.signature(model.forward).parameters
        self.model, self.cache = model, None
        self.cache_key = "cache" if "cache" in params else "past_key_values"  # transformers >= 5 renamed it
        self.extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def inputs(self) -> dict:
        raise NotImplementedError

    def next_tokens(self) -> torch.Tensor:
        """Each live row's next token: the argmax of the last position's logits."""
        out = self.model(**self.inputs(), use_cache=True, **{self.cache_key: self.cache}, **self.extra)
        self.cache = getattr(out, self.cache_key)
        return out.logits[:, -1].float().argmax(-1)

    def select(self, index: torch.Tensor) -> None:
        """Keep only the rows ``index`` (in the cache and whatever else is per row)."""
        self.cache.batch_select_indices(index)

    def feed(self, tokens: torch.Tensor) -> None:
        """The next step reads ``tokens``, one per live row."""
        raise NotImplementedError


class _DecoderOnlySteps(_Steps):
    """As ``generate`` runs a decoder-only model: positions from the mask, no mask when unpadded."""

    def __init__(self, model, input_ids: torch.Tensor, attention: torch.Tensor):
        super().__init__(model)
        self.ids = input_ids
        self.positions = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 0)
        self.mask = None if bool(attention.all()) else attention

    def inputs(self) -> dict:
        return {"input_ids": self.ids, "attention_mask": self.mask, "position_ids": self.positions}

    def select(self, index: torch.Tensor) -> None:
        super().select(index)
        self.positions = self.positions[index]
        self.mask = None if self.mask is None else self.mask[index]

    def feed(self, tokens: torch.Tensor) -> None:
        self.ids, self.positions = tokens[:, None], self.positions[:, -1:] + 1
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)


class _EncoderDecoderSteps(_Steps):
    """As ``generate`` runs an encoder-decoder: the encoder once, the decoder from its start token."""

    def __init__(self, model, input_ids: torch.Tensor, attention: torch.Tensor):
        super().__init__(model)
        self.encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention, return_dict=True)
        self.mask = attention
        start = model.generation_config.decoder_start_token_id
        start = model.config.decoder_start_token_id if start is None else start
        self.ids = torch.full((len(input_ids), 1), start, dtype=torch.long, device=input_ids.device)

    def inputs(self) -> dict:
        return {"encoder_outputs": self.encoded, "attention_mask": self.mask, "decoder_input_ids": self.ids}

    def select(self, index: torch.Tensor) -> None:
        super().select(index)
        self.encoded = BaseModelOutput(last_hidden_state=self.encoded.last_hidden_state[index])
        self.mask = self.mask[index]

    def feed(self, tokens: torch.Tensor) -> None:
        self.ids = tokens[:, None]


def _with_prefix(loaded: LoadedModel, prefix: str, prompt: list[int]) -> list[int]:
    """``prefix`` (demonstrations) tokenized in front of a prompt, after its BOS token if it has one."""
    ids = loaded.tokenizer(prefix, add_special_tokens=False)["input_ids"]
    bos = loaded.tokenizer.bos_token_id
    if prompt and bos is not None and prompt[0] == bos:
        return prompt[:1] + ids + prompt[1:]
    return ids + prompt
