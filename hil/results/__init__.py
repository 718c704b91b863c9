"""A run's results directory: where it is, and what it records about what was qualified."""
