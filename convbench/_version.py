"""The installed version, in a module of its own so that any module can read it without importing the package
(whose __init__ imports the registry)."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("convbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
