"""The sparse engine's option values, importable without torch (the options and the CLI read them)."""

DROPOUT_MODES = ("eval", "train", "reference")  # ranking / Fisher passes: never, always, as the reference
FISHER_KINDS = ("square", "abs")  # sum of squared or absolute per-sample gradients
REFRESH_PHASES = ("after", "before")  # a new mask after steps N, 2N, ... or before them (the reference)
REFRESH_GATES = ("none", "regressing", "never")  # refresh on schedule; only if a sample regressed; never
# --refresh-gate regressing: a sample has regressed when its mean per-token loss is above this and higher
# than at the previous ranking (fixed by issue 35 before any run; not tuned on results)
GATE_MIN_LOSS = 1e-3
