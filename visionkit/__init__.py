"""visionkit: the deep-learning computer-vision workflow behind one API and one CLI.

Importing the package is cheap: torch, torchvision and transformers are imported
inside the functions that need them, so ``visionkit --help`` answers at once.
"""

from visionkit.errors import ConfigError, DataError, ImageError, VisionKitError, WeightsError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "ImageError",
    "VisionKitError",
    "Model",
    "WeightsError",
    "__version__",
]


def __getattr__(name: str) -> object:
    """``visionkit.Model`` without importing the API (and its plotting) at package import."""
    if name == "Model":
        from visionkit.api import Model

        return Model
    raise AttributeError(f"module 'visionkit' has no attribute {name!r}")
