"""convbench: parameters, MACs, memory and speed of the classic ImageNet CNNs and their block variants."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("convbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from convbench.errors import UserError
from convbench.registry import create_model, get_model_info, list_models, register_model
from convbench import profile  # noqa: E402  (the module; convbench.profile.profile is the call)

__all__ = ["__version__", "UserError", "create_model", "get_model_info", "list_models", "profile", "register_model"]
