"""The block variants that `convbench compare` measures against each other."""
