"""Datasets and data modules for pirtune."""
