"""Matrix connector (matrix-nio with its ``e2e`` extra: vodozemac, no libolm)."""

from .connector import MatrixConnector

__all__ = ["MatrixConnector"]
