"""tenant-dr orchestration: Hera definitions compiled to Argo packages (never imports step logic)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tenant-dr")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
