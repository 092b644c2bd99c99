"""Delta checkpoints: a sparse fine-tune saved as the entries it touched, applied onto its base model.

A sparse method changes only the entries its masks let learn (the sparse optimizers never write any
other), so the fine-tuned model is the base model plus, for every parameter, the union of the
entries its masks ever held and their final values. ``delta.safetensors`` stores exactly that:
``<parameter>.indices`` (flat, int32 where they fit) and ``<parameter>.values``; ``fishdip.json``
names the base model and a checksum of its weights, so a delta is never applied to other weights.
At 1 % density with a few refreshes that is a few percent of the full model's file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from fishdip.errors import FishdipError

DELTA_FILE = "delta.safetensors"


def weights_checksum(model: nn.Module) -> str:
    """sha256 over every parameter's name, shape and float32 values (tied weights counted once)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            digest.update(f"{name}:{tuple(p.shape)};".encode())
            digest.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def is_delta(folder: str | Path) -> bool:
    return (Path(folder) / DELTA_FILE).is_file()


def save_delta(model: nn.Module, touched: dict[str, torch.Tensor], path: Path) -> int:
    """Write the current values of the ``touched`` entries of ``model``; returns the entries written."""
    params = dict(model.named_parameters())
    tensors, count = {}, 0
    for name, idx in touched.items():
        if not idx.numel():
            continue
        flat = params[name].detach().reshape(-1)
        index_dtype = torch.int32 if flat.numel() < 2**31 else torch.int64
        tensors[f"{name}.indices"] = idx.to("cpu", index_dtype).contiguous()
        tensors[f"{name}.values"] = flat[idx.to(flat.device)].to("cpu").contiguous()
        count += idx.numel()
    save_file(tensors, str(path), metadata={"format": "fishdip-delta"})
    return count


def apply_delta(model: nn.Module, path: Path) -> None:
    """Write a delta's values into ``model`` (whose weights must be the delta's base)."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:  # truncated, not safetensors, unreadable
        raise FishdipError(f"{path}: not a readable delta ({exc}); save or copy the model again") from None
    missing = sorted(k for k in {k.rsplit(".", 1)[0] for k in tensors}
                     if f"{k}.indices" not in tensors or f"{k}.values" not in tensors)
    if missing:
        raise FishdipError(f"{path}: {missing[0]} lacks its indices or values: not a fishdip delta")
    params = dict(model.named_parameters())
    names = {key.rsplit(".", 1)[0] for key in tensors}
    unknown = sorted(names - set(params))
    if unknown:
        raise FishdipError(f"{path}: parameters {', '.join(unknown[:3])} are not in the base model")
    with torch.no_grad():
        for name in names:
            flat = params[name].data.view(-1)
            idx = tensors[f"{name}.indices"].to(flat.device, torch.long)
            if idx.numel() and int(idx.max()) >= flat.numel():
                raise FishdipError(f"{path}: {name}: index {int(idx.max())} outside its {flat.numel()} entries")
            flat.index_copy_(0, idx, tensors[f"{name}.values"].to(flat.device, flat.dtype))


def check_base(folder: Path, base: str, expected: str | None, actual: str) -> None:
    if expected is not None and expected != actual:
        raise FishdipError(f"{folder}: this delta was trained from {base} with weights checksum {expected[:16]}, "
                           f"but {base} now has {actual[:16]}: it belongs to other weights, so it is not applied")
