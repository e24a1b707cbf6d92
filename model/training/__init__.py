"""Training: datasets and tiles, batches, the D/G/S steps, losses and the coarse-to-fine loop."""
