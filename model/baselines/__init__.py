"""Baselines of the paper's comparisons (issue 5): pix2pix, pix2pixHD, m-FC-DenseNet (single
scale and pyramid without synthetic pairs) and the mean-teacher consistency method (eq. 9).

They share the project's blocks, discriminators, losses, data and metrics; each trains with
:func:`model.baselines.train.train_baseline` and serves through :func:`model.pipeline.load_pipeline` as a
:class:`model.baselines.inference.BaselinePipeline`. Their configs: :mod:`model.baselines.config`.
"""
