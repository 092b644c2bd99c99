"""Text <-> structures: TANL augmented natural language for each task family."""
