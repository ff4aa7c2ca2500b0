"""roomlink: a chat-bridging relay daemon where every party keeps its own record."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("roomlink")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
