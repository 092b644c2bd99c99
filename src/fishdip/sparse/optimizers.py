"""Optimizers that keep their state only for the entries a sparse mask lets learn.

Why not a dense optimizer with masked gradients? It keeps state for every entry, and
with Adam's momentum or weight decay an entry keeps moving after its gradient is
masked: "frozen" weights drift. (The FISH-DIP reference masks a dense Adafactor
without momentum or weight decay, where they stay put; its cost is the dense
state.) Here an entry outside the mask
is never written, so it stays bit-identical; state exists only for the
``k`` trainable entries (~20 bytes each instead of 8 bytes per model entry).

On a mask refresh, entries that stay keep their moments and step counts,
entries that join start fresh (per-entry step, so bias correction is right),
entries that leave are forgotten.

Gradient memory: inside ``gathering()``, each parameter's masked gradient entries are taken the
moment autograd has accumulated its gradient, and the dense gradient is freed on the spot, so a
backward pass holds one dense gradient at a time instead of one per parameter. Gradients of several
micro-batches add up in the gathered entries (gradient accumulation).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from fishdip.sparse.masks import SparseMask


class SparseOptimizer(torch.optim.Optimizer):
    """Shared machinery: named parameters, mask installation, clipping over masked entries."""

    per_entry_state: tuple[str, ...] = ("step", "exp_avg", "exp_avg_sq")  # carried for entries that stay
    per_tensor_state: tuple[str, ...] = ()  # state of a whole tensor, kept when the mask changes

    def __init__(self, named_params: dict[str, nn.Parameter], defaults: dict):
        self.names = {p: name for name, p in named_params.items()}
        super().__init__(list(named_params.values()), defaults)
        for p in self.names:
            if not p.is_contiguous():
                raise ValueError(f"parameter {self.names[p]} must be contiguous")
            self.state[p]["idx"] = torch.empty(0, dtype=torch.long, device=p.device)
        self._gathering = False
        self._hooks = [p.register_post_accumulate_grad_hook(self._gather) for p in self.names]

    def _gather(self, p: nn.Parameter) -> None:
        """Keep the masked entries of ``p``'s fresh gradient and free the dense one."""
        if not self._gathering or p.grad is None:
            return
        state = self.state[p]
        g = p.grad.reshape(-1)[state["idx"]].float()
        state["grad"] = g if state.get("grad") is None else state["grad"].add_(g)
        p.grad = None

    @contextmanager
    def gathering(self):
        """Backward passes run in this context leave gathered masked gradients, not dense ones."""
        self._gathering = True
        try:
            yield
        finally:
            self._gathering = False

    def sum_gathered(self, sum_) -> None:
        """Apply ``sum_`` (an in-place all-reduce) to every gathered gradient at once: one flat
        buffer of the masked entries, not one call per parameter (several processes, distributed.py)."""
        states = [self.state[p] for p in self.names if self.state[p]["idx"].numel()]
        for state in states:  # a process without samples in this step gathered nothing
            if state.get("grad") is None:
                state["grad"] = torch.zeros(state["idx"].numel(), device=state["idx"].device)
        if not states:
            return
        flat = sum_(torch.cat([s["grad"] for s in states]))
        for state, part in zip(states, flat.split([s["grad"].numel() for s in states])):
            state["grad"] = part

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for state in self.state.values():
            state.pop("grad", None)

    def remove_hooks(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    @torch.no_grad()
    def set_mask(self, mask: SparseMask) -> None:
        """Install a new mask, carrying over state for entries present in both."""
        for p, name in self.names.items():
            state = self.state[p]
            new_idx = mask.indices.get(name, torch.empty(0, dtype=torch.long)).to(p.device)
            old_idx = state["idx"]
            kept = {k: state[k] for k in self.per_tensor_state if k in state}  # statistics of the whole tensor
            carried = {}
            for key in self.per_entry_state:
                carried[key] = torch.zeros(new_idx.numel(), dtype=torch.float32, device=p.device)
            if old_idx.numel() and new_idx.numel() and "step" in state:
                pos = torch.searchsorted(old_idx, new_idx).clamp(max=old_idx.numel() - 1)
                hit = old_idx[pos] == new_idx
                for key in self.per_entry_state:
                    carried[key][hit] = state[key][pos[hit]]
            if state.get("grad") is not None:
                raise RuntimeError("set_mask between backward and step would drop gathered gradients")
            state.clear()
            state["idx"] = new_idx
            state.update(carried)
            state.update(kept)
            # autograd need not produce gradients for parameters with nothing to learn
            p.requires_grad_(new_idx.numel() > 0)

    def _masked_grads(self, group: dict) -> list[tuple[nn.Parameter, torch.Tensor]]:
        out = []
        for p in group["params"]:
            state = self.state[p]
            if not state["idx"].numel():
                continue
            if state.get("grad") is not None:  # gathered during backward
                out.append((p, state.pop("grad")))
            elif p.grad is not None:
                out.append((p, p.grad.reshape(-1)[state["idx"]].float()))
        return out

    @staticmethod
    def _clip(grads: list[tuple[nn.Parameter, torch.Tensor]], max_norm: float | None) -> None:
        """Clip by the norm of the *trainable* gradient entries only."""
        if not max_norm or not grads:
            return
        total = torch.sqrt(sum((g * g).sum() for _, g in grads))
        coef = max_norm / (float(total) + 1e-6)
        if coef < 1.0:
            for _, g in grads:
                g.mul_(coef)

    @staticmethod
    def _write(p: nn.Parameter, idx: torch.Tensor, values: torch.Tensor) -> None:
        p.data.view(-1).index_copy_(0, idx, values.to(p.dtype))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            grads = self._masked_grads(group)
            self._clip(grads, group.get("max_grad_norm"))
            if grads:
                self._update_group(grads, group)
        return loss

    def _update_group(self, grads: list[tuple[nn.Parameter, torch.Tensor]], group: dict) -> None:
        """Update every parameter of a group; one at a time unless a subclass batches them."""
        for p, g in grads:
            self._update(p, g, self.state[p], group)

    def _update(self, p, g, state, group) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def num_state_bytes(self) -> int:
        """Memory held as optimizer state, for benchmarks."""
        return sum(t.numel() * t.element_size() for s in self.state.values() for k, t in s.items()
                   if isinstance(t, torch.Tensor) and k != "grad")


class SparseAdamW(SparseOptimizer):
    """AdamW (decoupled weight decay) on the masked entries only.

    The arithmetic runs as multi-tensor (``torch._foreach_*``) operations over all parameters
    at once, as torch's own AdamW does: one gather and one scatter per parameter remain, but
    not a dozen small kernels each, which matters on a GPU with hundreds of parameters.
    """

    def __init__(self, named_params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 max_grad_norm: float | None = None):
        super().__init__(named_params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                            max_grad_norm=max_grad_norm))

    def _update_group(self, grads, group) -> None:
        lr, (beta1, beta2) = group["lr"], group["betas"]
        params = [p for p, _ in grads]
        g = [g for _, g in grads]
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        m = [s["exp_avg"] for s in states]
        v = [s["exp_avg_sq"] for s in states]
        values = [p.data.view(-1)[s["idx"]].float() for p, s in zip(params, states)]
        torch._foreach_add_(steps, 1)
        if group["weight_decay"]:
            torch._foreach_mul_(values, 1 - lr * group["weight_decay"])
        torch._foreach_lerp_(m, g, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=1 - beta2)
        # per-entry bias corrections: entries that joined the mask later have smaller step counts
        bias1 = torch._foreach_pow(beta1, steps)
        torch._foreach_neg_(bias1)
        torch._foreach_add_(bias1, 1)
        bias2_sqrt = torch._foreach_pow(beta2, steps)
        torch._foreach_neg_(bias2_sqrt)
        torch._foreach_add_(bias2_sqrt, 1)
        torch._foreach_sqrt_(bias2_sqrt)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_mul_(denom, bias1)
        torch._foreach_addcdiv_(values, m, denom, value=-lr)
        for p, state, new in zip(params, states, values):
            self._write(p, state["idx"], new)


class SparseAdafactor(SparseOptimizer):
    """Adafactor (Shazeer & Stern 2018) on the masked entries only.

    Follows ``transformers.Adafactor`` step for step, except that the second
    moment is kept per entry: factoring it into row and column statistics saves
    memory only for dense matrices, and at 1 % density the exact per-entry
    moment is about as small. Update clipping uses the RMS of this parameter's
    trainable entries; parameter scaling uses the RMS of the whole parameter.
    """

    def __init__(self, named_params, lr=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8,
                 beta1=None, weight_decay=0.0, scale_parameter=True, relative_step=True,
                 warmup_init=False, max_grad_norm: float | None = None):
        if lr is not None and relative_step:
            raise ValueError("Adafactor: give lr with relative_step=False")
        super().__init__(named_params, dict(
            lr=lr, eps=eps, clip_threshold=clip_threshold, decay_rate=decay_rate, beta1=beta1,
            weight_decay=weight_decay, scale_parameter=scale_parameter, relative_step=relative_step,
            warmup_init=warmup_init, max_grad_norm=max_grad_norm))

    @staticmethod
    def _rms(t: torch.Tensor) -> torch.Tensor:
        return t.norm(2) / math.sqrt(t.numel())

    def _update(self, p, g, state, group) -> None:
        idx, step, v = state["idx"], state["step"], state["exp_avg_sq"]
        step.add_(1)
        if group["relative_step"]:
            min_step = 1e-6 * step if group["warmup_init"] else torch.full_like(step, 1e-2)
            lr = torch.minimum(min_step, step.rsqrt())
            if group["scale_parameter"]:
                lr = lr * max(group["eps"][1], float(self._rms(p.data.float())))
        else:
            lr = torch.full_like(step, group["lr"])
        beta2t = 1.0 - torch.pow(step, group["decay_rate"])
        v.mul_(beta2t).add_((g * g + group["eps"][0]) * (1.0 - beta2t))
        update = v.rsqrt() * g
        update.div_((self._rms(update) / group["clip_threshold"]).clamp_(min=1.0))
        update.mul_(lr)
        if group["beta1"] is not None:
            m = state["exp_avg"]
            m.mul_(group["beta1"]).add_(update, alpha=1 - group["beta1"])
            update = m
        values = p.data.view(-1)[idx].float()
        if group["weight_decay"]:
            values.add_(values * (-group["weight_decay"] * lr))
        values.sub_(update)
        self._write(p, idx, values)


class MaskedDenseAdafactor(SparseOptimizer):
    """The FISH-DIP reference's update, without its dense state: transformers' Adafactor run on
    gradients that are zero outside the mask (``--recipe paper``).

    Its factored second moment of a matrix averages g**2 over whole rows and columns, zeros outside
    the mask included, and its update clipping takes the RMS over the whole tensor, so its steps on
    masked entries are several times larger than ``SparseAdafactor``'s. This class keeps exactly
    those statistics: a row and a column vector per matrix (no full-size state) and one step count
    per tensor, advanced every step for every parameter, masked or not. Vectors (biases, norms)
    keep their full second moment, as transformers does; they are a negligible fraction of the
    model. Entries outside the mask are never written. ``scale_parameter`` multiplies the learning
    rate by the parameter's RMS, as in transformers even with ``relative_step=False``.
    """

    per_entry_state = ()
    per_tensor_state = ("tensor_step", "row", "col", "sq")

    def __init__(self, named_params, lr=1e-2, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8,
                 scale_parameter=True, max_grad_norm: float | None = None):
        super().__init__(named_params, dict(lr=lr, eps=eps, clip_threshold=clip_threshold, decay_rate=decay_rate,
                                            scale_parameter=scale_parameter, max_grad_norm=max_grad_norm))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            grads = dict(self._masked_grads(group))
            self._clip(list(grads.items()), group.get("max_grad_norm"))
            for p in group["params"]:  # every parameter: its statistics decay even without masked entries
                g = grads.get(p)
                if g is None:
                    g = torch.zeros(0, device=p.device)
                self._update(p, g, self.state[p], group)
        return loss

    def _update(self, p, g, state, group) -> None:
        idx, eps1 = state["idx"], group["eps"][0]
        if "tensor_step" not in state:
            state["tensor_step"] = 0
            if p.dim() >= 2:
                state["row"] = torch.zeros(p.shape[:-1].numel(), device=p.device)
                state["col"] = torch.zeros(p.shape[-1], device=p.device)
            else:
                state["sq"] = torch.zeros(p.numel(), device=p.device)
        state["tensor_step"] += 1
        beta2t = 1.0 - math.pow(state["tensor_step"], group["decay_rate"])
        sq = g * g
        if p.dim() >= 2:  # mean of (g**2 + eps1) over each row / column of the masked dense gradient
            rows, cols = p.shape[:-1].numel(), p.shape[-1]
            r, c = idx // cols, idx % cols
            row_mean = torch.zeros(rows, device=p.device).index_add_(0, r, sq).div_(cols).add_(eps1)
            col_mean = torch.zeros(cols, device=p.device).index_add_(0, c, sq).div_(rows).add_(eps1)
            state["row"].mul_(beta2t).add_(row_mean, alpha=1 - beta2t)
            state["col"].mul_(beta2t).add_(col_mean, alpha=1 - beta2t)
            if not idx.numel():
                return
            r_factor = (state["row"] / state["row"].mean()).rsqrt_()
            update = r_factor[r] * state["col"].rsqrt()[c] * g
        else:
            state["sq"].mul_(beta2t).add_(eps1 * (1 - beta2t))
            state["sq"].index_add_(0, idx, sq * (1 - beta2t))
            if not idx.numel():
                return
            update = state["sq"][idx].rsqrt() * g
        rms = update.norm(2) / math.sqrt(p.numel())  # the dense update is zero outside the mask
        update.div_((rms / group["clip_threshold"]).clamp_(min=1.0))
        lr = group["lr"]
        if group["scale_parameter"]:
            lr *= max(group["eps"][1], float(p.data.float().norm(2) / math.sqrt(p.numel())))
        values = p.data.view(-1)[idx].float()
        values.sub_(update * lr)
        self._write(p, idx, values)
