"""Embedded tasks: each keeps its rows and its answer checker together."""
