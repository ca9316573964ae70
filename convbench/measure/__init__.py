"""Measurers: each takes a model (or a model name) and returns a flat dict of columns."""
