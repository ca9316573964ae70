"""The `convbench` command (convbench.cli.main): one module per sub-command, each registering itself on the
shared Typer app (convbench.cli.app); the decorated function only parses, builds a config and prints."""
