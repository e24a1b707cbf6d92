"""Network modules: shared blocks, generator, discriminator and segmenter pyramids."""
