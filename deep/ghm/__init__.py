"""Geometric horizon models by flow matching: TD-CFM, TD-CFM(C), TD²-CFM (Temporal Difference Flows)."""
