"""The model state of one greedy batch (generation.py, copy_ahead.py): the KV cache, what the next
forward pass reads, and which rows are still in the batch. ``DecoderOnlySteps`` and
``EncoderDecoderSteps`` run the model the way ``model.generate`` does, so the same argmax comes out.
"""

from __future__ import annotations

import inspect

import torch
from transformers.modeling_outputs import BaseModelOutput


class Steps:
    """The model state of one greedy batch: the KV cache and what the next forward pass reads."""

    def __init__(self, model):
        params = inspect.signature(model.forward).parameters
        self.model, self.cache = model, None
        self.cache_key = "cache" if "cache" in params else "past_key_values"  # transformers >= 5 renamed it
        self.extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def inputs(self) -> dict:
        raise NotImplementedError

    def logits(self) -> torch.Tensor:
        """Each live row's logits for its next token (the last position's)."""
        out = self.model(**self.inputs(), use_cache=True, **{self.cache_key: self.cache}, **self.extra)
        self.cache = getattr(out, self.cache_key)
        return out.logits[:, -1]

    def select(self, index: torch.Tensor) -> None:
        """Keep only the rows ``index`` (in the cache and whatever else is per row)."""
        self.cache.batch_select_indices(index)

    def feed(self, tokens: torch.Tensor) -> None:
        """The next step reads ``tokens``, one per live row."""
        raise NotImplementedError


class DecoderOnlySteps(Steps):
    """As ``generate`` runs a decoder-only model: positions from the mask, no mask when unpadded."""

    def __init__(self, model, input_ids: torch.Tensor, attention: torch.Tensor):
        super().__init__(model)
        self.ids = input_ids
        self.positions = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 0)
        self.mask = None if bool(attention.all()) else attention

    def inputs(self) -> dict:
        return {"input_ids": self.ids, "attention_mask": self.mask, "position_ids": self.positions}

    def select(self, index: torch.Tensor) -> None:
        super().select(index)
        self.positions = self.positions[index]
        self.mask = None if self.mask is None else self.mask[index]

    def feed(self, tokens: torch.Tensor) -> None:
        self.ids, self.positions = tokens[:, None], self.positions[:, -1:] + 1
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)


class EncoderDecoderSteps(Steps):
    """As ``generate`` runs an encoder-decoder: the encoder once, the decoder from its start token."""

    def __init__(self, model, input_ids: torch.Tensor, attention: torch.Tensor):
        super().__init__(model)
        self.encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention, return_dict=True)
        self.mask = attention
        start = model.generation_config.decoder_start_token_id
        start = model.config.decoder_start_token_id if start is None else start
        self.ids = torch.full((len(input_ids), 1), start, dtype=torch.long, device=input_ids.device)

    def inputs(self) -> dict:
        return {"encoder_outputs": self.encoded, "attention_mask": self.mask, "decoder_input_ids": self.ids}

    def select(self, index: torch.Tensor) -> None:
        super().select(index)
        self.encoded = BaseModelOutput(last_hidden_state=self.encoded.last_hidden_state[index])
        self.mask = self.mask[index]

    def feed(self, tokens: torch.Tensor) -> None:
        self.ids = tokens[:, None]
