"""Generated text for a batch of sources: greedy search in fishdip's own loop (``greedy_rows``: a
row that is done leaves the batch; free, or constrained by a grammar per row), or ``model.generate``
for beams and generation configs that change the logits; each source has its own token budget, so
its output does not depend on its batch.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from fishdip.errors import FishdipError
from fishdip.formats.grammar import Grammar, Rules
from fishdip.formats.tanl import CLOSE, EQUALS
from fishdip.models.constrained import GrammarRows
from fishdip.models.copy_ahead import Drafts, copy_ahead_rows
from fishdip.models.encoding import encode_sources, prompt_ids, source_span
from fishdip.models.loading import GenerationBudget, LoadedModel
from fishdip.models.steps import DecoderOnlySteps, EncoderDecoderSteps


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
    prefixes: list[str] | None = None,
    context_tokens: int = 0,
    grammars: list[Grammar] | None = None,
    copy_ahead: int = 0,
    rules: Rules = Rules(),
) -> Generated:
    """Greedy (or beam) generation for one batch of sources.

    Each source gets its own token budget (``budget``, else ``loaded.budget``), so the output for
    a sentence does not depend on which other sentences share its batch. ``prefixes``: text in
    front of each source (in-context learning's demonstrations, at most ``context_tokens`` tokens;
    an annotation then ends at its line's end). ``grammars``: constrained decoding, each row writes
    only what its grammar allows (models/constrained.py), within a budget its longest output fits;
    ``rules``: what the constrained decoding adds to the grammars (models/constrained.py: a group
    opens only where the model's top token opens one; relation tails name groups; grammars without
    groups, DST's, decode as plain constrained).
    ``copy_ahead``: a decoder-only model checks that many tokens copied from its prompt in one
    forward pass (models/copy_ahead.py; 0: one token a step).
    Greedy search runs ``greedy_rows`` (a row that is done leaves the batch; with demonstrations a
    row is done at a token that holds a line break); beams, and a generation config that changes the
    logits, run ``model.generate`` to the batch's largest budget and cut each row to its own.
    """
    tok, model = loaded.tokenizer, loaded.model
    budget = budget or loaded.budget
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    if grammars is not None:
        if num_beams != 1:
            raise FishdipError("--decoding constrained runs greedy search; use --num-beams 1, or --decoding free "
                               "for beams")
        limits = [g.max_bytes + 1 for g in grammars]  # every token is a byte or more; + EOS
        rows = GrammarRows(loaded.grammar_tokenizer(), [g.lark for g in grammars],
                           loaded.opening_tokens() if rules.own_brackets and grammars[0].groups else None,
                           [g.tails for g in grammars] if rules.annotated_tails else None)
        choose = rows.choose
    else:
        limits = [budget.tokens(len(tok(s, add_special_tokens=False)["input_ids"]), max_length) for s in sources]
        choose = None
    kwargs = dict(max_new_tokens=max(limits), num_beams=num_beams, do_sample=False,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    stops: frozenset[int] = frozenset()
    if prefixes is not None:  # in-context learning: an annotation ends at its line's end
        kwargs.update(stop_strings=["\n"], tokenizer=tok)
        stops = loaded.line_ends()
    own_loop = num_beams == 1 and (grammars is not None or plain_greedy(model))
    if loaded.is_encoder_decoder:
        if prefixes is not None:
            sources, max_length = [p + s for p, s in zip(prefixes, sources)], max_length + context_tokens
        enc = {k: v.to(device) for k, v in encode_sources(loaded, sources, max_length).items()}
        if own_loop:
            new_tokens = greedy_rows(model, enc["input_ids"], enc["attention_mask"], limits, tok.eos_token_id, choose,
                                     stops)
        else:
            new_tokens = model.generate(**enc, **kwargs)[:, 1:].tolist()  # after the decoder start token
    else:
        prompts = [prompt_ids(loaded, s, max_length) for s in sources]
        if prefixes is not None:
            prompts = [_with_prefix(loaded, prefix, p) for prefix, p in zip(prefixes, prompts)]
        # on the left, so every row ends where generation starts
        enc = tok.pad({"input_ids": prompts}, padding=True, padding_side="left", return_tensors="pt")
        input_ids, attention = enc["input_ids"], enc["attention_mask"]
        width = input_ids.shape[1]
        if own_loop and copy_ahead:
            new_tokens = copy_ahead_rows(model, input_ids.to(device), attention.to(device), limits, tok.eos_token_id,
                                         _drafts(loaded, prompts, sources), copy_ahead,
                                         rows if grammars is not None else None, stops)
        elif own_loop:
            new_tokens = greedy_rows(model, input_ids.to(device), attention.to(device), limits, tok.eos_token_id,
                                     choose, stops)
        else:
            out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
            new_tokens = out[:, width:].tolist()
    model.train(was_training)
    texts, hits = [], []
    for row, limit in zip(new_tokens, limits):
        eos = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
        text = tok.decode(row[: min(eos, limit)], skip_special_tokens=True)
        if prefixes is not None:
            text, newline, _ = text.lstrip().partition("\n")
            eos = eos if not newline else 0  # stopped by the end of the line, not by the budget
        hits.append(eos >= limit)
        texts.append(" ".join(text.split()))
    return Generated(texts, hits)


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
                eos_token_id: int, choose=None, stops: Collection[int] = ()) -> list[list[int]]:
    """Greedy decoding of a batch; each row stops at EOS or a token of ``stops`` (kept) or after
    ``limits[i]`` tokens.
    ``choose(logits, live rows)``: the next token of each live row (default: the argmax; constrained
    decoding: the argmax over the tokens the row's grammar allows, models/constrained.py).

    ``input_ids`` is left-padded prompts for a decoder-only model, the (padded) sources for an
    encoder-decoder. ``model.generate`` runs every row until the last one stops, and on CoNLL04's
    test split fewer than half of those row-steps belong to rows still writing (42 % at 16
    sentences a batch). Here a row that is done leaves the batch, its KV cache rows (and encoder
    states) with it, so later steps run on the rows still writing. Each remaining row gets the
    argmax of the same computation as in ``generate``; only the batch the matrix products run on
    shrinks."""
    steps = (EncoderDecoderSteps if model.config.is_encoder_decoder else DecoderOnlySteps)(
        model, input_ids, attention)
    live = list(range(len(limits)))
    rows: list[list[int]] = [[] for _ in limits]
    while True:
        logits = steps.logits()
        tokens = logits.float().argmax(-1) if choose is None else choose(logits, live)
        keep = []
        for slot, (row, token) in enumerate(zip(live, tokens.tolist())):
            rows[row].append(token)
            if token != eos_token_id and token not in stops and len(rows[row]) < limits[row]:
                keep.append(slot)
        if not keep:
            return rows
        if len(keep) < len(live):  # rows that are done leave the batch
            index = torch.tensor(keep, device=tokens.device)
            steps.select(index)
            live, tokens = [live[i] for i in keep], tokens[index]
        steps.feed(tokens)


def _drafts(loaded: LoadedModel, prompts: list[list[int]], sources: list[str]) -> Drafts:
    """Copy-ahead's guesses for a batch: the annotations end at a group's close (copying goes on)
    or at a relation's ``=`` (a tail comes), as the model writes them after a word."""
    tok = loaded.tokenizer
    close, equals = (tok(f"x {mark}", add_special_tokens=False)["input_ids"][-1] for mark in (CLOSE, EQUALS))
    return Drafts(prompts, [source_span(loaded, p, s) for p, s in zip(prompts, sources)], tok.eos_token_id,
                  closes=[close], tails=[equals])


def _with_prefix(loaded: LoadedModel, prefix: str, prompt: list[int]) -> list[int]:
    """``prefix`` (demonstrations) tokenized in front of a prompt, after its BOS token if it has one."""
    ids = loaded.tokenizer(prefix, add_special_tokens=False)["input_ids"]
    bos = loaded.tokenizer.bos_token_id
    if prompt and bos is not None and prompt[0] == bos:
        return prompt[:1] + ids + prompt[1:]
    return ids + prompt
