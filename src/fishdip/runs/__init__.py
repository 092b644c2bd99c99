"""Runs: options -> a run folder (one experiment per method, episodes, grids, rescoring).

Above training/ (the loop), below the CLI and the Python API."""
