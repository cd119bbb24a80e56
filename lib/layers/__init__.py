"""Layers and blocks shared by several projects: attention, transformer, conformer."""
