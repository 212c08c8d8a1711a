"""The one place the running version is read from, so API, gRPC and metrics agree."""

from importlib import metadata


def version() -> str:
    """Installed distribution version, or a marker when running from a bare checkout."""
    try:
        return metadata.version("chronoraft")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"
