"""Copy-ahead: greedy search that checks several tokens in one forward pass where the output is
predictable (prompt lookup, a form of speculative decoding that needs no second model).

An annotated output mostly copies its sentence, and its annotations repeat: ``Drafts`` guesses
each row's next ``width`` tokens (where it copies, the sentence's next tokens; where it annotates,
what the batch's rows wrote after the same tokens before). Each step feeds every live row its last
token and its guess at once; the logits at each position say what greedy search would write there
(the argmax, or under a grammar the argmax over the allowed tokens, models/constrained.py), and
the row keeps the longest prefix of its guess that greedy search agrees with, plus the token
greedy search writes where they first differ. That is what greedy search writes one token at a
time, up to floating-point rounding: a block of tokens runs through other matrix shapes than
single tokens do, so a near-tie between two tokens can go the other way (benchmarks/generation.py
counts the rows that differ). A guess changes only how many tokens a pass keeps, never which.

The key-value cache then holds the rejected guesses too; they are masked out of every later step
(attention mask zero) and each row's positions continue from its last accepted token. Decoder-only
models only: an encoder-decoder's cache would need the same holes in its decoder self-attention.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

import torch

from fishdip.models.steps import DecoderOnlySteps


def lookup(prompt: list[int], written: list[int], width: int, end: int | None = None) -> list[int]:
    """The ``width`` prompt tokens (before ``end``) after the last place the row's last two tokens
    (else its last token) occur in the prompt; nothing when they do not occur."""
    end = len(prompt) if end is None else end
    for n in (2, 1):
        if len(written) < n:
            continue
        tail = written[-n:]
        for start in range(end - n, -1, -1):
            if prompt[start:start + n] == tail:
                return prompt[start + n:min(start + n + width, end)]
    return []


@dataclass
class _Row:
    prompt: list[int]
    start: int  # the sentence's tokens in the prompt: [start, end)
    end: int
    at: int | None = None  # the next sentence token to copy; None until the row copies its first
    written: list[int] = field(default_factory=list)
    copying: bool = False  # whether the last written token was the next sentence token
    pending: list[int] = field(default_factory=list)  # annotation positions whose run is not complete


class Drafts:
    """What each row of a batch will likely write next.

    A row copies its sentence and annotates it: ``[ John Smith | person ] works for ...``. A written
    token that is the sentence's next one is a copy and moves the row's copy position; any other is
    an annotation and leaves it. After a copy the guess is the sentence's next tokens (then EOS).
    After an annotation token it is what the batch's rows wrote before after the same two tokens
    (else the same one) up to the end of that annotation (``closes``: a group's end, after which
    the guess goes on with the sentence's next tokens; ``tails``: a relation's ``=``, after which a
    tail comes), so the types and relations a model writes often are guessed after a few sentences;
    with no such history, the sentence's tokens after the place the row's last tokens occur in it
    (a relation's tail), else after the copy position."""

    def __init__(self, prompts: list[list[int]], spans: list[tuple[int, int]], eos: int,
                 closes: Collection[int] = (), tails: Collection[int] = ()):
        self.rows = [_Row(p, start, end) for p, (start, end) in zip(prompts, spans)]
        self.eos, self.closes, self.tails = eos, set(closes), set(tails)
        self.seen: dict[tuple[int, ...], Counter] = defaultdict(Counter)  # last tokens -> annotations after them

    def observe(self, index: int, tokens: list[int]) -> None:
        """Row ``index`` wrote ``tokens``."""
        row = self.rows[index]
        for token in tokens:
            if row.at is None:  # the first copy: the token's first place in the sentence
                row.at = next((i for i in range(row.start, row.end) if row.prompt[i] == token), None)
            row.copying = row.at is not None and row.at < row.end and row.prompt[row.at] == token
            if row.copying:
                row.at += 1
                self._learn(row, len(row.written), then_copy=True)
            else:
                row.pending.append(len(row.written))
            row.written.append(token)
            if not row.copying and (token in self.closes or token in self.tails):
                self._learn(row, len(row.written), then_copy=token in self.closes)

    def _learn(self, row: _Row, stop: int, then_copy: bool) -> None:
        """The annotation runs that started at the row's pending positions end at ``stop``."""
        for i in row.pending:
            run = tuple(row.written[i:stop])
            for n in (2, 1):
                if i >= n:
                    self.seen[tuple(row.written[i - n:i])][(run, then_copy)] += 1
        row.pending = []

    def guess(self, index: int, width: int) -> list[int]:
        """Row ``index``'s likely next ``width`` tokens."""
        row = self.rows[index]
        ahead = [] if row.at is None else (row.prompt[row.at:row.end] + [self.eos])[:width]
        if row.copying or not row.written:
            return ahead
        for n in (2, 1):
            before = self.seen.get(tuple(row.written[-n:])) if len(row.written) >= n else None
            if before:
                (run, then_copy), _ = before.most_common(1)[0]
                return (list(run) + (ahead if then_copy else []))[:width]
        return lookup(row.prompt, row.written, width, row.end) or ahead


@torch.no_grad()
def copy_ahead_rows(model, input_ids: torch.Tensor, attention: torch.Tensor, limits: list[int], eos_token_id: int,
                    drafts: Drafts, width: int = 8, grammar=None, stops: Collection[int] = ()) -> list[list[int]]:
    """Greedy decoding of a batch of left-padded prompts with copy-ahead (``drafts``: the rows'
    guesses, fed every token they keep); rows stop at EOS or a token of ``stops`` (kept) or after
    ``limits[i]`` tokens, as in ``greedy_rows``. ``grammar``: a ``GrammarRows`` (constrained
    decoding) whose matchers advance with every token a row keeps."""
    steps = DecoderOnlySteps(model, input_ids, attention)
    live = list(range(len(limits)))
    rows: list[list[int]] = [[] for _ in limits]
    logits = steps.logits()  # the prompts, exactly as greedy_rows reads them
    steps.mask = attention  # explicit from here on: rejected guesses leave holes in it
    tokens = logits.float().argmax(-1) if grammar is None else grammar.choose(logits, live)
    new = {row: [token] for row, token in zip(live, tokens.tolist())}
    while True:
        keep = []
        for slot, row in enumerate(live):
            for token in new[row]:
                rows[row].append(token)
                if token == eos_token_id or token in stops or len(rows[row]) >= limits[row]:
                    break
            else:
                keep.append(slot)
                drafts.observe(row, new[row])
        if not keep:
            return rows
        if len(keep) < len(live):  # rows that are done leave the batch
            steps.select(torch.tensor(keep, device=steps.mask.device))
            live = [live[i] for i in keep]
        guesses = [drafts.guess(row, min(width, limits[row] - len(rows[row]))) for row in live]
        size = 1 + max(len(g) for g in guesses)
        block = torch.full((len(live), size), eos_token_id, dtype=torch.long, device=steps.mask.device)
        valid = torch.zeros((len(live), size), dtype=torch.long, device=steps.mask.device)
        for slot, (row, guess) in enumerate(zip(live, guesses)):
            block[slot, : 1 + len(guess)] = torch.tensor([rows[row][-1], *guess])
            valid[slot, : 1 + len(guess)] = 1
        positions = steps.positions[:, -1:] + torch.arange(1, size + 1, device=block.device)
        mask = torch.cat([steps.mask, valid], dim=1)
        out = model(input_ids=block, attention_mask=mask, position_ids=positions, use_cache=True,
                    **{steps.cache_key: steps.cache}, **({"logits_to_keep": 0} if steps.extra else {}))
        steps.cache = getattr(out, steps.cache_key)
        kept = []
        for slot, (row, guess) in enumerate(zip(live, guesses)):
            accepted, token = _verify(out.logits[slot], guess, grammar, row)
            new[row] = guess[:accepted] + [token]
            kept.append(accepted)
            mask[slot, mask.shape[1] - size + 1 + accepted:] = 0  # the rejected guesses, masked from now on
        steps.mask = mask
        steps.positions = positions.gather(1, torch.tensor(kept, device=block.device)[:, None])


def _verify(logits: torch.Tensor, guess: list[int], grammar, row: int) -> tuple[int, int]:
    """How many of ``guess`` greedy search writes, and the token it writes after them."""
    if grammar is None:
        chosen = logits[: len(guess) + 1].float().argmax(-1).tolist()
        accepted = 0
        while accepted < len(guess) and chosen[accepted] == guess[accepted]:
            accepted += 1
        return accepted, chosen[accepted]
    top, accepted = logits[: len(guess) + 1].float().argmax(-1).tolist(), 0
    while True:  # a mask over the vocabulary only where the model's top token is not the guess
        accepted += grammar.agreeing(row, guess[accepted:], top[accepted:])
        token = int(grammar.choose(logits[accepted: accepted + 1], [row])[0])
        if accepted == len(guess) or token != guess[accepted]:
            return accepted, token
        accepted += 1
