"""Constrained greedy search: each row writes only what its grammar (formats/grammar.py) allows.

The grammar engine is llguidance (microsoft/llguidance): it compiles a sentence's grammar in a few
milliseconds and computes the next token's mask over the whole vocabulary from the grammar and the
tokenizer's byte strings, so every tokenization of an allowed text is allowed
(benchmarks/constrained.py measures it against xgrammar). ``GrammarRows`` holds one matcher per row
of a batch; ``greedy_rows`` (generation.py) hands it the logits of the live rows, it masks them to
the allowed tokens, takes the argmax and advances the rows' matchers. A grammar that has been
completed allows only the end of the sequence, so a constrained row always ends by EOS.

With ``opens`` (decoding ``own-brackets``), a row whose top token the grammar refuses takes the best
allowed token that opens no bracket group, where there is one: a group opens only where the model
itself opens one. Plain constrained decoding takes the best allowed token, and a model that wanted
to skip or reword a word then often opens a group on it instead, which is a wrong entity.
"""

from __future__ import annotations

import torch

from fishdip.errors import FishdipError
from fishdip.formats.tanl import OPEN


class _ByteTokens:
    """What llguidance needs of a tokenizer without a Rust backend (ByT5's: one token per byte)."""

    def __init__(self, tokenizer, vocab_size: int):
        self.eos_token_id, self.bos_token_id = tokenizer.eos_token_id, tokenizer.bos_token_id
        self.offset = tokenizer.offset  # ids below it are pad, eos, unk
        specials = {tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id}
        self.special_token_ids = sorted(specials)
        self.tokens = [str(tokenizer.convert_ids_to_tokens(i)).encode() if i < self.offset or i >= 256 + self.offset
                       else bytes([i - self.offset]) for i in range(vocab_size)]

    def __call__(self, text: bytes) -> list[int]:
        return [b + self.offset for b in text]


def grammar_tokenizer(tokenizer, vocab_size: int):
    """llguidance's view of ``tokenizer`` with ``vocab_size`` logits (built in about a second: kept
    by the caller, ``LoadedModel.constraint_tokenizer``)."""
    import llguidance
    import llguidance.hf
    from transformers import ByT5Tokenizer, PreTrainedTokenizerFast

    if isinstance(tokenizer, PreTrainedTokenizerFast):
        return llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
    if isinstance(tokenizer, ByT5Tokenizer):
        return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteTokens(tokenizer, vocab_size)),
                                      n_vocab=vocab_size)
    raise FishdipError(f"constrained decoding needs a fast tokenizer (tokenizers library); {type(tokenizer).__name__} "
                       "is not one: use --decoding free")


def opening_tokens(lltokenizer, vocab_size: int) -> torch.Tensor:
    """Which tokens open a bracket group: their bytes hold the group's opening mark (input words are
    escaped, formats/entity_relation.escape, so no copied word holds it)."""
    mark = OPEN.encode()
    return torch.tensor([mark in lltokenizer.decode_bytes([i]) for i in range(vocab_size)])


class GrammarRows:
    """One grammar matcher per row of a generation batch (``opens``: ``opening_tokens``, for the
    ``own-brackets`` rule)."""

    def __init__(self, lltokenizer, grammars: list[str], opens: torch.Tensor | None = None):
        import llguidance
        import llguidance.torch

        self.matchers = [llguidance.LLMatcher(lltokenizer, g, log_level=0) for g in grammars]
        for matcher in self.matchers:
            if matcher.is_error():
                raise FishdipError(f"a decoding grammar does not compile: {matcher.get_error()}")
        self.eos = lltokenizer.eos_token
        self.bitmask = llguidance.torch.allocate_token_bitmask(len(grammars), lltokenizer.vocab_size)
        self.failed: set[int] = set()  # rows whose grammar allowed no token (none should)
        self.opens = opens

    def choose(self, logits: torch.Tensor, live: list[int]) -> torch.Tensor:
        """The argmax over the tokens each live row's grammar allows, and the matchers advanced by it."""
        import llguidance.torch as lt

        for slot, row in enumerate(live):
            lt.fill_next_token_bitmask(self.matchers[row], self.bitmask, slot)
        mask = self.bitmask[: len(live)].to(logits.device)
        logits = logits.float()
        own = logits.argmax(-1) if self.opens is not None else None
        lt.apply_token_bitmask_inplace(logits, mask)
        tokens = logits.argmax(-1)
        if own is not None:  # refused top token: the best allowed one that opens no group, if any
            refused = ~torch.isfinite(logits.gather(1, own[:, None])[:, 0])
            copying = logits.masked_fill(self.opens.to(logits.device), float("-inf"))
            tokens = torch.where(refused & torch.isfinite(copying.max(-1).values), copying.argmax(-1), tokens)
        allowed = torch.isfinite(logits.max(-1).values).tolist()
        for slot, (row, token) in enumerate(zip(live, tokens.tolist())):
            if not allowed[slot] or not self.matchers[row].consume_token(token):
                self.failed.add(row)  # the engine could not continue this row: end it
                tokens[slot] = self.eos
        return tokens

    def agreeing(self, row: int, guess: list[int], top: list[int]) -> int:
        """How many leading tokens of ``guess`` equal the model's top tokens ``top`` and are allowed;
        the row's matcher consumes them. Such a token is what ``choose`` takes (an allowed top token
        is the best allowed one, under either rule), without computing a mask over the vocabulary."""
        n = 0
        while n < len(guess) and guess[n] == top[n]:
            n += 1
        n = self.matchers[row].validate_tokens(guess[:n]) if n else 0
        if n and not self.matchers[row].consume_tokens(guess[:n]):
            raise FishdipError("the grammar engine refused tokens it had just validated")
        return n
