"""Explainer implementations, one module per backend; importing a module registers its entries."""
