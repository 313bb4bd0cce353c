"""Flattening of optimizer and module state into the checkpoint's flat ``name -> tensor`` dict
plus JSON-compatible metadata, and back."""

from __future__ import annotations

from typing import Any

import torch


def optimizer_to_flat(optimizer: torch.optim.Optimizer, prefix: str = "optim.") -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Split an optimizer's state dict into tensors (``{prefix}{param}.{name}``) and its param
    groups as JSON-compatible dicts."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            tensors[f"{prefix}{index}.{name}"] = torch.as_tensor(value)
    groups = []
    for group in state["param_groups"]:
        # A learning rate held as a tensor (optimizers prepared for CUDA-graph capture) is
        # stored as its value.
        groups.append({k: (list(v) if isinstance(v, tuple) else float(v) if isinstance(v, torch.Tensor) else v)
                       for k, v in group.items()})
    return tensors, groups


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                        groups: list[dict[str, Any]], prefix: str = "optim.") -> None:
    """Load state written by :func:`optimizer_to_flat` into ``optimizer`` (built over the same
    parameters)."""
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, name = key[len(prefix):].split(".", 1)
            per_param.setdefault(int(index), {})[name] = value
    restored = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    optimizer.load_state_dict({"state": per_param, "param_groups": restored})


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` with every key prefixed by ``prefix``."""
    return {prefix + k: v for k, v in state.items()}


def unprefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
