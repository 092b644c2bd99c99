"""In-context learning: no training; each test sentence is preceded by annotated training examples.

Demonstrations are the training pairs most similar to the test sentence (cosine similarity of
TF-IDF word vectors; ``random``: a seeded random order instead), added until the prompt would
exceed ``--icl-context`` tokens, the most similar one last (nearest to the sentence). The model then
writes the annotation, which is decoded and scored like a fine-tuned model's output.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fishdip.models.loading import LoadedModel

SELECTIONS = ("tfidf", "random")  # how demonstrations are chosen (Demonstrations)

SEPARATOR = "\n\n"  # between demonstrations; generation stops at the first newline


def _vector(text: str, idf: dict[str, float]) -> dict[str, float]:
    counts = Counter(text.lower().split())
    vec = {w: c * idf.get(w, 0.0) for w, c in counts.items()}
    norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
    return {w: v / norm for w, v in vec.items()}


class Demonstrations:
    """The prompt prefix for a source: annotated training pairs that fit the token budget."""

    def __init__(self, loaded: LoadedModel, pairs: list[tuple[str, str]], context_tokens: int,
                 selection: str = "tfidf", seed: int = 0):
        self.loaded, self.pairs, self.context_tokens, self.selection = loaded, pairs, context_tokens, selection
        documents = [Counter(set(s.lower().split())) for s, _ in pairs]
        df = sum(documents, Counter())
        self.idf = {w: math.log((1 + len(pairs)) / (1 + n)) + 1 for w, n in df.items()}
        self.vectors = [_vector(s, self.idf) for s, _ in pairs]
        self.random_order = list(range(len(pairs)))
        random.Random(seed).shuffle(self.random_order)
        tok = loaded.tokenizer
        self.texts = [self.format(s, t) for s, t in pairs]
        self.lengths = [len(tok(text, add_special_tokens=False)["input_ids"]) for text in self.texts]

    def format(self, source: str, target: str) -> str:
        from fishdip.models.encoding import PROMPT

        if self.loaded.is_encoder_decoder:
            return f"{source} => {target}{SEPARATOR}"
        return f"{PROMPT.format(source=source)} {target}{SEPARATOR}"

    def ranked(self, source: str) -> list[int]:
        if self.selection == "random":
            return self.random_order
        query = _vector(source, self.idf)
        scores = [sum(v * doc.get(w, 0.0) for w, v in query.items()) for doc in self.vectors]
        return sorted(range(len(self.pairs)), key=lambda i: (-scores[i], i))

    def prefix(self, source: str) -> str:
        chosen, used = [], 0
        for i in self.ranked(source):
            if used + self.lengths[i] > self.context_tokens:
                continue  # a shorter, less similar one may still fit
            chosen.append(i)
            used += self.lengths[i]
        return "".join(self.texts[i] for i in reversed(chosen))  # the most similar nearest the sentence
