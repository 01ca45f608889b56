"""corral: keeps a cloud control plane highly available."""

__version__ = "0.1.0"
