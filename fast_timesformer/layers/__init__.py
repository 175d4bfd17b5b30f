"""Building blocks the attention mechanisms and the model share (torch only).

basic.py       DropPath (stochastic depth), Mlp, PatchEmbed
rotary.py      rotary position embeddings: 1-D time, 2-D space, 3-D joint
fast_paths.py  the CPU fast paths (in-place GELU, explicit short softmax, fused linear pair) and the
               one condition under which each runs
"""

from fast_timesformer.layers.basic import DropPath, Mlp, PatchEmbed
from fast_timesformer.layers.fast_paths import has_hooks
from fast_timesformer.layers.rotary import apply_rotary, rotary_cos_sin

__all__ = ["DropPath", "Mlp", "PatchEmbed", "apply_rotary", "has_hooks", "rotary_cos_sin"]
