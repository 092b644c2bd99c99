"""LISA (Pan et al. 2024, "Layerwise Importance Sampled AdamW"): whole transformer layers take turns.

A few randomly chosen transformer layers learn at a time and the choice is redrawn every
``--refresh-steps`` optimizer steps; everything outside the layers (embeddings, final norms, the
LM head) always learns, as in the paper. The optimizer is the dense one: a frozen layer's parameters
get no gradient, so the optimizer leaves them (and their state) alone until they learn again.
"""

from __future__ import annotations

import random

from torch import nn


def transformer_layers(model: nn.Module) -> list[str]:
    """The names of the model's transformer layers: the members of every ``ModuleList`` whose
    members are all of one class (T5: ``encoder.block.i`` and ``decoder.block.i``; Llama-style:
    ``model.layers.i``), outermost lists only."""
    found: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2:
            continue
        if any(name.startswith(layer + ".") for layer in found):  # a list inside a layer
            continue
        if len({type(m) for m in module}) == 1 and any(True for _ in module[0].parameters()):
            found += [f"{name}.{i}" for i in range(len(module))]
    return found


class LayerTurns:
    """Which parameters learn from a step on: ``n`` of the model's transformer layers, drawn anew at
    every ``choose`` from a generator seeded by (seed, step), so a continued run redraws the same."""

    def __init__(self, model: nn.Module, n: int, seed: int = 0):
        self.layers = transformer_layers(model)
        if not self.layers:
            raise ValueError(f"lisa: {type(model).__name__} has no list of transformer layers to take turns")
        self.n, self.seed = min(n, len(self.layers)), seed
        self.params = dict(model.named_parameters())
        self.owner = {name: next((layer for layer in self.layers if name.startswith(layer + ".")), None)
                      for name in self.params}

    def choose(self, step: int) -> dict:
        """Let the drawn layers (and everything outside the layers) learn; returns the record."""
        chosen = sorted(random.Random(self.seed * 1_000_003 + step).sample(range(len(self.layers)), self.n))
        learning = {self.layers[i] for i in chosen}
        for name, p in self.params.items():
            p.requires_grad_(self.owner[name] is None or self.owner[name] in learning)
        return {"step": step, "layers": [self.layers[i] for i in chosen],
                "learning_parameters": sum(p.numel() for p in self.params.values() if p.requires_grad)}
