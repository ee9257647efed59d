"""Distributional agents in torch: C51, n-step C51, Retrace-C51 and Q(λ)-C51 (signed targets)."""
