"""Parameter counts of a model, by top-level component, for the training log."""

from typing import Dict

from torch import nn


def parameter_counts(model: nn.Module) -> Dict[str, int]:
    """Parameters of ``model`` in all (key ``"total"``) and per top-level child, in the
    children's order; a parameter shared between children counts once, in the first."""
    counts: Dict[str, int] = {}
    seen = set()
    for name, child in model.named_children():
        own = [p for p in child.parameters() if id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            counts[name] = sum(p.numel() for p in own)
    direct = [p for p in model.parameters(recurse=False) if id(p) not in seen]
    if direct:
        counts["(own)"] = sum(p.numel() for p in direct)
    counts["total"] = sum(counts.values())
    return counts


def format_parameter_counts(counts: Dict[str, int]) -> str:
    """``"Parameters: 1,852,806 (backbone 1,429,683, ...)"``."""
    parts = ", ".join(f"{name} {n:,}" for name, n in counts.items() if name != "total")
    return f"Parameters: {counts['total']:,} ({parts})"
