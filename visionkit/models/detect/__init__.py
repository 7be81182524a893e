"""Object detectors, all behind the contract of :mod:`visionkit.models.detect._detector`.

Importing this package registers every detection family with the model registry.
"""

from visionkit.models.detect import (
    _detr,  # noqa: F401  (registers)
    _faster_rcnn_small,  # noqa: F401  (registers)
    _mask_rcnn_small,  # noqa: F401  (registers)
    _rcnn,  # noqa: F401  (registers)
    _sliding_window,  # noqa: F401  (registers)
    _torchvision,  # noqa: F401  (registers)
    _yolo,  # noqa: F401  (registers)
)
from visionkit.models.detect._detector import Detector, Thresholds

__all__ = ["Detector", "Thresholds"]
