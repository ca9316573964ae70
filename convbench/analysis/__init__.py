"""What convbench makes of finished runs: verdicts, diff, merge, baseline and the report."""
