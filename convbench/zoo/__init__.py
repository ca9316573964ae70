"""What convbench measures: the model zoo (registry, models, blocks, layers), what `--arch` can name, the
comparison cases, and what convbench takes from a forward."""
