"""HistoSynth workers: RQ jobs (train, augment), storage (local and S3), model store, settings."""
