"""Exact resumption: every random draw of a run is a function of its seed and its position in the run.

The shuffle depends on ``(seed, epoch)`` (:class:`EpochIndexSampler`), the augmentation of an item on
``(seed, epoch, index)`` (:class:`SeededItems`), dropout and drop path on ``(seed, epoch, batch, rank)``
(:func:`seed_all` with :func:`seed_for`, called by the training module per batch).
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler


def seed_for(*parts: int) -> int:
    """A 63-bit seed mixed from integers (stable across processes and Python versions)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value * 1_000_003 + int(part) + 0x632BE59BD9B4E019) % (2**63)
    return value


def seed_all(seed: int) -> None:
    """Seed Python's, torch's (CPU and CUDA) and, when installed, numpy's global RNGs."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
    except ImportError:  # numpy is optional
        return
    np.random.seed(seed % 2**32)


def _global_rng_states() -> tuple[Any, Any]:
    try:
        import numpy as np
    except ImportError:
        return random.getstate(), None
    return random.getstate(), np.random.get_state()


def _restore_global_rng_states(states: tuple[Any, Any]) -> None:
    random.setstate(states[0])
    if states[1] is not None:
        import numpy as np

        np.random.set_state(states[1])


class SeededItems(Dataset):
    """Makes item ``i`` of epoch ``e`` a function of ``(seed, e, i)``, whatever RNG the dataset draws from.

    Keys are ``(index, epoch)`` pairs, as yielded by :class:`EpochIndexSampler`; each item is computed
    under a forked RNG seeded from them, so the augmentations of a batch do not depend on the process,
    the worker, the number of workers or the point a run was resumed from.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, epoch = key
        states = _global_rng_states()
        with torch.random.fork_rng(devices=[]):
            seed_all(seed_for(self.seed, epoch, index))
            try:
                return self.dataset[index]
            finally:
                _restore_global_rng_states(states)


class EpochIndexSampler(DistributedSampler):
    """``DistributedSampler`` (order from ``(seed, epoch)``, one shard per rank) yielding ``(index, epoch)``."""

    def __iter__(self):
        epoch = self.epoch
        return ((index, epoch) for index in super().__iter__())


__all__ = ["EpochIndexSampler", "SeededItems", "seed_all", "seed_for"]
