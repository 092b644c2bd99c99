"""Generate augmented text for examples and decode it into structures."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from fishdip.models.loading import LoadedModel
from fishdip.models.text2text import collate, generate, per_sample_loss


def predict(loaded: LoadedModel, task, examples: list, batch_size: int = 16, max_length: int = 256,
            num_beams: int = 1, progress: bool = True) -> tuple[list[str], list]:
    """Generated texts and the structures decoded from them, in example order."""
    texts = _generate_sorted(loaded, [task.source(ex) for ex in examples], batch_size, max_length, num_beams,
                             progress, "generate")
    return texts, [task.decode(text, ex) for text, ex in zip(texts, examples)]


def _generate_sorted(loaded, sources, batch_size, max_length, num_beams, progress, desc) -> list[str]:
    # sort by length so a batch pads little; restore the order afterwards
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    texts = [""] * len(sources)
    bar = tqdm(total=len(sources), desc=desc, disable=not progress)
    for start in range(0, len(order), batch_size):
        ids = order[start : start + batch_size]
        for i, text in zip(ids, generate(loaded, [sources[i] for i in ids], max_length, num_beams)):
            texts[i] = text
        bar.update(len(ids))
    bar.close()
    return texts


def generate_texts(loaded: LoadedModel, sources: list[str], cfg, progress: bool = True,
                   desc: str = "generate") -> list[str]:
    """Generated text for each source with an experiment config's generation settings."""
    return _generate_sorted(loaded, sources, cfg.eval_batch_size, cfg.train.max_length, cfg.num_beams,
                            progress, desc)


@torch.no_grad()
def rank_candidates(loaded: LoadedModel, sources: list[str], candidates: list[list[str]], batch_size: int = 16,
                    max_length: int = 256, progress: bool = True) -> list[int]:
    """For each source, the index of the candidate target with the lowest loss."""
    pairs = [(s, t) for s, targets in zip(sources, candidates) for t in targets]
    model = loaded.model
    was_training = model.training
    model.eval()
    losses = []
    for start in tqdm(range(0, len(pairs), batch_size), desc="score", disable=not progress):
        batch = collate(loaded, pairs[start : start + batch_size], max_length)
        losses += per_sample_loss(loaded, batch).tolist()
    model.train(was_training)
    choice, pos = [], 0
    for targets in candidates:
        scores = losses[pos : pos + len(targets)]
        choice.append(min(range(len(targets)), key=scores.__getitem__))
        pos += len(targets)
    return choice
