"""Data sources, batching and readers; import the submodules."""
