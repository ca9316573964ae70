"""convbench: parameters, MACs, memory and speed of the classic ImageNet CNNs and their block variants.

From Python: `convbench.list_models`, `create_model`, `register_model`, and the library calls behind the
commands, each returning a DataFrame: `convbench.profile(...)`, `convbench.compare(...)`, `convbench.train(...)`."""
from convbench._version import __version__

__all__ = ["__version__", "UserError", "compare", "create_model", "get_model_info", "list_models", "profile",
           "register_model", "train"]


def __getattr__(name: str):
    # Each name imports what it needs when first used: the command's entry (convbench.entry) sets up its signal
    # handling before torch is imported, and the measuring calls bring pandas and torch's heavier parts.
    if name == "UserError":
        from convbench.errors import UserError
        return UserError
    if name in ("create_model", "get_model_info", "list_models", "register_model"):
        from convbench.zoo import registry
        return getattr(registry, name)
    if name == "profile":
        from convbench.run.profile import profile
        return profile
    if name == "compare":
        from convbench.run.compare import compare
        return compare
    if name == "train":
        from convbench.run.train import train
        return train
    raise AttributeError(f"module 'convbench' has no attribute {name!r}")
