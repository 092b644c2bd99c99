"""Fisher scores, regressing-sample selection, sparse masks and mask-respecting optimizers."""
