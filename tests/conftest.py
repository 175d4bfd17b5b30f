"""Shared test settings: deterministic, small, CPU-only."""

import os

import torch

# Two cores on CI: keep intra-op threads predictable and avoid oversubscription with DataLoader workers.
torch.set_num_threads(min(2, os.cpu_count() or 1))
