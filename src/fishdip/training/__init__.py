"""Training loop (full, fish, fish-dip, random) and the experiment runner."""
