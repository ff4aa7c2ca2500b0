"""Shared fixtures. The end-to-end kit lives in rlkit.py (on pythonpath via pyproject)."""
