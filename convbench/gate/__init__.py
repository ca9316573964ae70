"""The latency regression gate: the base and the candidate measured on the same machine in the same run.

A committed benchmark baseline says nothing about another CPU (the shape of a machine's speed, not only its
scale, differs from one model to the next), so by default the gate rebuilds the base revision's source in a
scratch tree, runs the candidate's suite against both sides in alternation, and judges their ratio."""
