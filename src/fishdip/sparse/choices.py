"""The sparse engine's option values, importable without torch (the options and the CLI read them)."""

DROPOUT_MODES = ("eval", "train", "reference")  # ranking / Fisher passes: never, always, as the reference
FISHER_KINDS = ("square", "abs")  # sum of squared or absolute per-sample gradients
REFRESH_PHASES = ("after", "before")  # a new mask after steps N, 2N, ... or before them (the reference)
