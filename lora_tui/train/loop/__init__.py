"""The run: flags, set-up, the training loop, optimizers, sampling, events and TensorBoard."""
