"""Experiments over many runs: the side-by-side benchmark, Ray Tune sweeps, the speed benchmark."""
