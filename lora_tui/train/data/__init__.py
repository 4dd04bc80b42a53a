"""Training data: the dataset TOML to batches, captions, images and latent caches."""
