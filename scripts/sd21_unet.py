"""The SD 2.1 (768-v) UNet configuration, as ComfyUI's model detection reads it from the checkpoint.

One copy for everything that builds a random-weight SD 2.1 UNet with ComfyUI's classes: the real-server test
checkpoints (``scripts/checkpoints.py``) and the benchmarks (``benchmarks/overhead.py``, ``benchmarks/gpu_check.py``).
Plain data, no imports.
"""

from __future__ import annotations

__all__ = ["SD21_UNET", "VPRED_PROBE_KEY"]

SD21_UNET: dict = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "model_channels": 320, "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1,
    "use_linear_in_transformer": True, "context_dim": 1024, "num_head_channels": 64,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_temporal_attention": False, "use_temporal_resblock": False,
}
#: ComfyUI's ``SD20.model_type`` calls a model v-prediction when this UNet tensor's standard deviation is > 0.09
VPRED_PROBE_KEY = "output_blocks.11.1.transformer_blocks.0.norm1.bias"
