"""Generate augmented text for examples and decode it into structures."""

from __future__ import annotations

from tqdm.auto import tqdm

from fishdip.models.loading import LoadedModel
from fishdip.models.text2text import generate


def predict(loaded: LoadedModel, task, examples: list, batch_size: int = 16, max_length: int = 256,
            num_beams: int = 1, progress: bool = True) -> tuple[list[str], list]:
    """Returns the generated texts and the decoded structures, in example order."""
    # sort by length so a batch pads little; restore the order afterwards
    order = sorted(range(len(examples)), key=lambda i: len(task.source(examples[i])))
    texts: list[str] = [""] * len(examples)
    bar = tqdm(total=len(examples), desc="generate", disable=not progress)
    for start in range(0, len(order), batch_size):
        ids = order[start : start + batch_size]
        outputs = generate(loaded, [task.source(examples[i]) for i in ids], max_length, num_beams)
        for i, text in zip(ids, outputs):
            texts[i] = text
        bar.update(len(ids))
    bar.close()
    return texts, [task.decode(text, ex) for text, ex in zip(texts, examples)]
