"""(source, target) text pairs -> tensors, per-sample losses and generated text.

Encoder-decoders read the source and are trained to write the target.
Decoder-only models read ``PROMPT.format(source=...)`` and continue with the
target; the loss covers only the target tokens (and the closing EOS).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fishdip.models.loading import LoadedModel

PROMPT = "Sentence: {source}\nAnnotated:"
IGNORE = -100


def _causal_pieces(loaded: LoadedModel, source: str, target: str | None, max_length: int):
    tok = loaded.tokenizer
    # keep the tokenizer's own convention (Llama adds BOS), but a prompt must not end in EOS
    prompt = tok(PROMPT.format(source=source), add_special_tokens=True, truncation=True,
                 max_length=max_length)["input_ids"]
    if prompt and prompt[-1] == tok.eos_token_id:
        prompt = prompt[:-1]
    if target is None:
        return prompt, []
    answer = tok(" " + target, add_special_tokens=False, truncation=True,
                 max_length=max_length - 1)["input_ids"] + [tok.eos_token_id]
    return prompt, answer


def collate(loaded: LoadedModel, pairs: list[tuple[str, str]], max_length: int) -> dict[str, torch.Tensor]:
    """Training batch with ``labels`` set to IGNORE on prompt and padding positions."""
    tok = loaded.tokenizer
    sources = [s for s, _ in pairs]
    targets = [t for _, t in pairs]
    if loaded.is_encoder_decoder:
        enc = tok(sources, max_length=max_length, truncation=True, padding=True, return_tensors="pt")
        dec = tok(text_target=targets, max_length=max_length, truncation=True, padding=True,
                  return_tensors="pt")
        labels = dec["input_ids"].masked_fill(dec["attention_mask"] == 0, IGNORE)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}

    rows = [_causal_pieces(loaded, s, t, max_length) for s, t in pairs]
    width = max(len(p) + len(a) for p, a in rows)
    input_ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (prompt, answer) in enumerate(rows):  # right padding for training
        ids = prompt + answer
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        labels[i, len(prompt) : len(ids)] = torch.tensor(answer)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def per_sample_loss(loaded: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token cross-entropy of each sample over its real target tokens (padding excluded)."""
    model = loaded.model
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    labels = batch["labels"]
    if loaded.is_encoder_decoder:
        decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=decoder_input_ids).logits
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, labels = logits[:, :-1], labels[:, 1:]  # position t predicts token t+1
    token_loss = F.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=IGNORE,
                                 reduction="none")
    real = (labels != IGNORE).float()
    return (token_loss * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)


@torch.no_grad()
def generate(
    loaded: LoadedModel,
    sources: list[str],
    max_length: int,
    num_beams: int = 1,
) -> list[str]:
    """Greedy (or beam) generation for one batch of sources."""
    tok, model = loaded.tokenizer, loaded.model
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    source_lengths = [len(tok(s, add_special_tokens=False)["input_ids"]) for s in sources]
    # augmented text = the copied sentence plus a few tokens per annotation
    max_new = min(max_length, 2 * max(source_lengths) + 24)
    kwargs = dict(max_new_tokens=max_new, num_beams=num_beams, do_sample=False,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    if loaded.is_encoder_decoder:
        enc = tok(sources, max_length=max_length, truncation=True, padding=True, return_tensors="pt")
        out = model.generate(**{k: v.to(device) for k, v in enc.items()}, **kwargs)
        texts = tok.batch_decode(out, skip_special_tokens=True)
    else:
        prompts = [_causal_pieces(loaded, s, None, max_length)[0] for s in sources]
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), tok.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):  # left padding: every row ends where generation starts
            input_ids[i, width - len(prompt):] = torch.tensor(prompt)
            attention[i, width - len(prompt):] = 1
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
        texts = tok.batch_decode(out[:, width:], skip_special_tokens=True)
    model.train(was_training)
    return [" ".join(t.split()) for t in texts]
