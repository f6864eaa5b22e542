"""A tiny search space shared by the search tests: valid at 64x128 (max_level <= 6)."""

TINY = {"name": "tiny", "base": "ESeg-Lite-S", "params": {
    "encoder.width": {"type": "float", "low": 0.25, "high": 0.5, "step": 0.25},
    "encoder.depth": {"type": "categorical", "choices": [0.3]},
    "decoder.channels": {"type": "int", "low": 16, "high": 32, "step": 16},
    "decoder.repeats": {"type": "int", "low": 1, "high": 2},
    "decoder.max_level": {"type": "int", "low": 5, "high": 6}}}
SIZE = (64, 128)  # (H, W) pixels
