"""Generate augmented text for examples and decode it into structures."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from fishdip.evaluation.icl import Demonstrations
from fishdip.evaluation.journal import Journal, batch_key
from fishdip.formats.grammar import Rules, decoding_rules
from fishdip.models.encoding import collate
from fishdip.models.generation import Generated, generate
from fishdip.models.loading import LoadedModel
from fishdip.models.losses import token_losses

LIMIT_ERROR = "generation_limit"  # counted per example whose generation ran out of token budget


def predict(loaded: LoadedModel, task, examples: list, batch_size: int = 64, max_length: int = 256,
            num_beams: int = 1, progress: bool = True, demonstrations: Demonstrations | None = None,
            decoding: str = "free", copy_ahead: int = 0, journal: Journal | None = None) -> tuple[list[str], list]:
    """Generated texts and the structures decoded from them, in example order (``decoding``:
    every one but ``free`` writes only what ``task.grammar`` allows for each example, with its rules:
    formats/grammar.DECODING_RULES;
    ``copy_ahead``: models/generation.py; ``journal``: batches generated before a stop, journal.py)."""
    grammars = [task.grammar(ex, loaded.budget) for ex in examples] if decoding != "free" else None
    out = generate_sorted(loaded, [task.source(ex) for ex in examples], batch_size, max_length, num_beams,
                          progress, "generate", demonstrations, grammars, copy_ahead,
                          decoding_rules(decoding), journal)
    decoded = [task.decode(text, ex) for text, ex in zip(out.texts, examples)]
    for pred, hit in zip(decoded, out.hit_limit):
        if hit:
            pred.errors[LIMIT_ERROR] += 1
    return out.texts, decoded


def generate_sorted(loaded, sources, batch_size, max_length, num_beams, progress=True, desc="generate",
                    demonstrations: Demonstrations | None = None, grammars: list | None = None,
                    copy_ahead: int = 0, rules: Rules = Rules(), journal: Journal | None = None) -> Generated:
    """Generation for any number of sources, in length-sorted batches (little padding), in order;
    ``demonstrations`` give each source its in-context prefix, ``grammars`` (one per source, or
    None for a source the grammar does not cover) constrain what each writes (``rules``:
    models/generation.py); a batch the ``journal`` holds is taken from it, a new one added to it."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    keys = [batch_key(desc, [sources[i] for i in ids]) for ids in batches]
    kept = [journal.get(key) if journal is not None else None for key in keys]
    texts, hits = [""] * len(sources), [False] * len(sources)
    # batches generated before a stop start the bar, so its rate and time left are the new batches'
    done = sum(len(ids) for ids, record in zip(batches, kept) if record is not None)
    bar = tqdm(total=len(sources), initial=done, desc=desc, disable=not progress)
    for ids, key, record in zip(batches, keys, kept):
        batch = [sources[i] for i in ids]
        if record is not None:  # generated before a stop
            out = Generated(record["texts"], record["hit_limit"])
        else:
            prefixes = [demonstrations.prefix(s) for s in batch] if demonstrations is not None else None
            out = generate(loaded, batch, max_length, num_beams, prefixes=prefixes,
                           context_tokens=demonstrations.context_tokens if demonstrations is not None else 0,
                           grammars=[grammars[i] for i in ids] if grammars is not None else None,
                           copy_ahead=copy_ahead, rules=rules)
            if journal is not None:
                journal.add(key, out.texts, out.hit_limit)
            bar.update(len(ids))
        for i, text, hit in zip(ids, out.texts, out.hit_limit):
            texts[i], hits[i] = text, hit
    bar.close()
    return Generated(texts, hits)


@torch.no_grad()
def candidate_losses(loaded: LoadedModel, sources: list[str], candidates: list[list[str]], batch_size: int = 16,
                     max_length: int = 256, progress: bool = True) -> dict[str, list[list[float]]]:
    """The model's loss on every candidate target of every source, two ways: ``sum`` over the
    target's tokens (TANL's ranking: its loss is averaged over the padded label length, the same
    for every candidate of a batch) and ``mean`` per token (favours longer candidates less)."""
    pairs = [(s, t) for s, targets in zip(sources, candidates) for t in targets]
    model = loaded.model
    was_training = model.training
    model.eval()
    sums, counts = [], []
    for start in tqdm(range(0, len(pairs), batch_size), desc="score", disable=not progress):
        total, count = token_losses(loaded, collate(loaded, pairs[start : start + batch_size], max_length))
        sums += total.tolist()
        counts += count.tolist()
    model.train(was_training)
    out: dict[str, list[list[float]]] = {"sum": [], "mean": []}
    pos = 0
    for targets in candidates:
        part = range(pos, pos + len(targets))
        out["sum"].append([sums[i] for i in part])
        out["mean"].append([sums[i] / max(counts[i], 1.0) for i in part])
        pos += len(targets)
    return out


def lowest(scores: list[float]) -> int:
    return min(range(len(scores)), key=scores.__getitem__)
