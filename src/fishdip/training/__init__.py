"""The training loop: methods, the trainer, precision, several processes, training checkpoints."""
