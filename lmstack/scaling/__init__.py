"""Scaling laws: sweeps of small runs, fits of L(N, D) and L(C), compute-optimal plans."""
