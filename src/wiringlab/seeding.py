"""Explicit random number generators, one per purpose, derived from a run's seed.

Library code never touches torch's or numpy's global RNG. A run's integer seed is
expanded into independent streams ("init", "data", "dropout", "mask", ...) by hashing
(seed, purpose), so adding a new consumer of randomness never shifts the numbers an
existing consumer draws.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "make_generator"]


def derive_seed(seed: int, purpose: str) -> int:
    """Return a 63-bit seed for `purpose`, a pure function of (seed, purpose).

    Args:
        seed: the run's seed.
        purpose: a short name of the consumer, e.g. ``"init"`` or ``"data"``.

    Returns:
        A non-negative integer below 2**63, stable across processes and platforms.
    """
    digest = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def make_generator(seed: int, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a `torch.Generator` on `device` seeded by `derive_seed(seed, purpose)`.

    Pitfall: a generator lives on one device; random ops on CUDA tensors need a CUDA
    generator, so create it on the device of the tensors it will fill.
    """
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(derive_seed(seed, purpose))
    return generator
