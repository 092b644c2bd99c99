"""Copy-ahead: greedy search that checks several tokens in one forward pass where the output copies
its input (prompt lookup, a form of speculative decoding that needs no second model).

An annotated output mostly copies its sentence, so after a row writes a token that occurs in its
prompt, the prompt's next ``width`` tokens are a good guess of what it writes next. Each step feeds
every live row its last token and its guess at once; the logits at each position say what greedy
search would write there (the argmax, or under a grammar the argmax over the allowed tokens,
models/constrained.py), and the row keeps the longest prefix of its guess that greedy search
agrees with, plus the token greedy search writes where they first differ. That is what greedy
search writes one token at a time, up to floating-point rounding: a block of tokens runs through
other matrix shapes than single tokens do, so a near-tie between two tokens can go the other way
(benchmarks/generation.py counts the rows that differ).

The key-value cache then holds the rejected guesses too; they are masked out of every later step
(attention mask zero) and each row's positions continue from its last accepted token. Decoder-only
models only: an encoder-decoder's cache would need the same holes in its decoder self-attention.
"""

from __future__ import annotations

import torch

from fishdip.models.steps import DecoderOnlySteps


def lookup(prompt: list[int], written: list[int], width: int) -> list[int]:
    """The ``width`` prompt tokens after the last place the row's last two tokens (else its last
    token) occur in its prompt; nothing when they do not occur."""
    for n in (2, 1):
        if len(written) < n:
            continue
        tail = written[-n:]
        for start in range(len(prompt) - n, -1, -1):
            if prompt[start:start + n] == tail:
                return prompt[start + n:start + n + width]
    return []


@torch.no_grad()
def copy_ahead_rows(model, input_ids: torch.Tensor, attention: torch.Tensor, limits: list[int], eos_token_id: int,
                    prompts: list[list[int]], width: int = 8, grammar=None) -> list[list[int]]:
    """Greedy decoding of a batch of left-padded prompts with copy-ahead; rows stop at EOS (kept)
    or after ``limits[i]`` tokens, as in ``greedy_rows``. ``grammar``: a ``GrammarRows`` (constrained
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
                if token == eos_token_id or len(rows[row]) >= limits[row]:
                    break
            else:
                keep.append(slot)
        if not keep:
            return rows
        if len(keep) < len(live):  # rows that are done leave the batch
            steps.select(torch.tensor(keep, device=steps.mask.device))
            live = [live[i] for i in keep]
        guesses = [lookup(prompts[row], rows[row], min(width, limits[row] - len(rows[row]))) for row in live]
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
