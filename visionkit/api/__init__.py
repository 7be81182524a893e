"""The Python API: :class:`Model` trains, evaluates and predicts in one line each.

Importing this package is cheap; torch and the model zoo load on the first call that needs
them.
"""

from visionkit.api._model import TASKS, Model
from visionkit.api._results import ClassificationResult, DetectionResult, SegmentationResult

__all__ = ["TASKS", "ClassificationResult", "DetectionResult", "Model", "SegmentationResult"]
