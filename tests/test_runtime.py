"""The allocator tuning the command applies: freed activation memory is reused instead of faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Allocates and frees a 64 MiB tensor again and again and prints the page faults of ten touches once the
# heap has settled. glibc serves a block that size with fresh mmap pages every time by default (above its
# 32 MiB dynamic-threshold cap). Tuned, the first few touches may still grow the heap: torch allocates with
# posix_memalign, whose padding keeps a freed block from fitting the next request of the same size until
# the heap holds a few of them (glibc 2.36); after that every touch reuses memory.
PROGRAM = """
import resource, torch
from fast_timesformer.inference.runtime import tune_allocator
applied = tune_allocator()
def faults_of_one_touch():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 * 2**20).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
for _ in range(10):
    faults_of_one_touch()
print(applied, sum(faults_of_one_touch() for _ in range(10)))
"""


def run(env_value: str | None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("FAST_TIMESFORMER_ALLOCATOR", None)
    if env_value is not None:
        env["FAST_TIMESFORMER_ALLOCATOR"] = env_value
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator tuning is Linux-only")
def test_tuned_allocator_reuses_freed_memory_and_can_be_turned_off():
    applied, faults = run(None)
    assert applied and faults < 2000  # 10 x 64 MiB = 163,840 pages: reused, not faulted in again
    applied, faults = run("default")
    assert not applied and faults > 100_000  # glibc's default: fresh pages for every tensor
