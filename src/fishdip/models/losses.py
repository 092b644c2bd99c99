"""Per-sample losses of padded batches (models/encoding.py): the training loss, the ranking of
samples and the candidates' scores of few-shot relation classification all come from here."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fishdip.models.encoding import IGNORE
from fishdip.models.loading import LoadedModel

PLAIN_LM_HEAD = ("llama", "mistral", "qwen2", "qwen3", "smollm3", "gemma3_text")


def plain_lm_head(model) -> bool:
    """Whether the logits are the output embedding of the decoder's last hidden state and nothing
    more (no soft-capping), so that the head may run on the target positions alone."""
    config = model.config
    return config.model_type in PLAIN_LM_HEAD and getattr(config, "final_logit_softcapping", None) is None


def token_losses(loaded: LoadedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed token cross-entropy of each sample over its real target tokens, and their number."""
    model = loaded.model
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    labels = batch["labels"]
    if not loaded.is_encoder_decoder and plain_lm_head(model):
        hidden = model.get_decoder()(input_ids=batch["input_ids"],
                                     attention_mask=batch["attention_mask"]).last_hidden_state
        labels = labels[:, 1:]  # position t predicts token t+1
        rows, cols = (labels != IGNORE).nonzero(as_tuple=True)
        logits = model.get_output_embeddings()(hidden[rows, cols])
        token_loss = F.cross_entropy(logits.float(), labels[rows, cols], reduction="none")
        total = torch.zeros(labels.shape[0], device=device).index_add_(0, rows, token_loss)
        return total, (labels != IGNORE).float().sum(dim=1)
    if loaded.is_encoder_decoder:
        decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=decoder_input_ids).logits
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, labels = logits[:, :-1], labels[:, 1:]  # position t predicts token t+1
    # flattened: log-softmax over a contiguous last dimension, no transposed copy of the logits
    token_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                 ignore_index=IGNORE, reduction="none").view(labels.shape)
    real = (labels != IGNORE).float()
    return (token_loss * real).sum(dim=1), real.sum(dim=1)


def per_sample_loss(loaded: LoadedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token cross-entropy of each sample over its real target tokens (padding excluded)."""
    total, count = token_losses(loaded, batch)
    return total / count.clamp(min=1.0)
