"""routine-mcp's MCP server, its CLI and its settings. ``__version__`` is the installed distribution's
version (pyproject.toml), the one ``routine --version`` prints and MCP clients see as ``serverInfo.version``."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("routine-mcp")
except PackageNotFoundError:  # a source tree that was never installed (pip install -e . fixes it)
    __version__ = "0+unknown"
