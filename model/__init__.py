"""HistoSynth model: mask-conditioned pyramid GAN with segmenters (pure PyTorch)."""
