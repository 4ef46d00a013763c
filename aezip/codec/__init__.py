"""numpy-only stages of the codec: normalize, tile, entropy-code."""
