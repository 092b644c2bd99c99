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

With ``annotated_tails``, a row also takes only tokens after which every relation tail it has
written can still name one of its bracket groups (formats/tails.py: a rule beside the grammar, as
it is not context-free): the chosen token is checked, and where the rule refuses it the next best
is, as if the grammar had refused it.
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
    ``own-brackets`` rule; ``tails``: each row's tail rule, or None where it has none)."""

    def __init__(self, lltokenizer, grammars: list[str], opens: torch.Tensor | None = None,
                 tails: list | None = None):
        import llguidance
        import llguidance.torch

        self.matchers = [llguidance.LLMatcher(lltokenizer, g, log_level=0) for g in grammars]
        for matcher in self.matchers:
            if matcher.is_error():
                raise FishdipError(f"a decoding grammar does not compile: {matcher.get_error()}")
        self.lltokenizer, self.eos = lltokenizer, lltokenizer.eos_token
        self.bitmask = llguidance.torch.allocate_token_bitmask(len(grammars), lltokenizer.vocab_size)
        self.failed: set[int] = set()  # rows whose grammar allowed no token (none should)
        self.opens = opens
        self.tails = tails if tails is not None and any(t is not None for t in tails) else None
        self.written = [b""] * len(grammars)  # with tails: each row's output so far
        self.unmet: set[int] = set()  # rows where the tail rule refused every allowed token (none should)

    def choose(self, logits: torch.Tensor, live: list[int]) -> torch.Tensor:
        """The argmax over the tokens each live row's grammar allows, and the matchers advanced by it."""
        import llguidance.torch as lt

        for slot, row in enumerate(live):
            lt.fill_next_token_bitmask(self.matchers[row], self.bitmask, slot)
        mask = self.bitmask[: len(live)].to(logits.device)
        logits = logits.float()
        own = logits.argmax(-1) if self.opens is not None else None
        lt.apply_token_bitmask_inplace(logits, mask)
        tokens = self._pick(logits, own)
        allowed = torch.isfinite(logits.max(-1).values).tolist()
        if self.tails is not None:
            for slot, row in enumerate(live):
                if allowed[slot]:
                    tokens[slot] = self._tail_rule(row, logits[slot: slot + 1],
                                                   own[slot: slot + 1] if own is not None else None, int(tokens[slot]))
        for slot, (row, token) in enumerate(zip(live, tokens.tolist())):
            if not allowed[slot] or not self.matchers[row].consume_token(token):
                self.failed.add(row)  # the engine could not continue this row: end it
                tokens[slot] = self.eos
            elif self.tails is not None:
                self.written[row] += self._bytes(token)
        return tokens

    def _pick(self, logits: torch.Tensor, own: torch.Tensor | None) -> torch.Tensor:
        """The best allowed token of each row (``logits`` masked); with ``own``, the model's top
        tokens, a row whose top token is refused takes the best allowed one that opens no group, if any."""
        tokens = logits.argmax(-1)
        if own is not None:
            refused = ~torch.isfinite(logits.gather(1, own[:, None])[:, 0])
            copying = logits.masked_fill(self.opens.to(logits.device), float("-inf"))
            tokens = torch.where(refused & torch.isfinite(copying.max(-1).values), copying.argmax(-1), tokens)
        return tokens

    def _tail_rule(self, row: int, logits: torch.Tensor, own: torch.Tensor | None, token: int) -> int:
        """``token``, or where the tail rule refuses it, the choice among the tokens left."""
        first = token
        while not self._accepts(row, self.written[row], token):
            logits[0, token] = float("-inf")  # refused, as if by the grammar
            if not torch.isfinite(logits.max()):
                self.unmet.add(row)
                return first
            token = int(self._pick(logits, own)[0])
        return token

    def _accepts(self, row: int, written: bytes, token: int) -> bool:
        rule = self.tails[row] if self.tails is not None else None
        return rule is None or token == self.eos or rule.accepts(written + self._bytes(token))

    def _bytes(self, token: int) -> bytes:
        return b"" if token == self.eos else self.lltokenizer.decode_bytes([token])

    def agreeing(self, row: int, guess: list[int], top: list[int]) -> int:
        """How many leading tokens of ``guess`` equal the model's top tokens ``top`` and are allowed;
        the row's matcher consumes them. Such a token is what ``choose`` takes (an allowed top token
        is the best allowed one, under either rule), without computing a mask over the vocabulary."""
        n = 0
        while n < len(guess) and guess[n] == top[n]:
            n += 1
        n = self.matchers[row].validate_tokens(guess[:n]) if n else 0
        if self.tails is not None:
            written = self.written[row]
            for i, token in enumerate(guess[:n]):
                if not self._accepts(row, written, token):
                    n = i
                    break
                written += self._bytes(token)
            self.written[row] = written  # the tokens kept
        if n and not self.matchers[row].consume_tokens(guess[:n]):
            raise FishdipError("the grammar engine refused tokens it had just validated")
        return n
