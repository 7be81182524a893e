"""Foundation models used as they come: SAM's promptable and automatic segmentation.

Transformers is imported only when a model is loaded or built, so importing this package
is cheap::

    from visionkit.models.foundation import SamAutomaticMaskGenerator, load_sam

    predictor = load_sam("sam")
    predictor.set_image("dog.jpg")
    result = predictor.predict(points=[(320, 240)])
"""

from visionkit.models.foundation._mask_generator import (
    MaskRecord,
    SamAutomaticMaskGenerator,
    stability_score,
)
from visionkit.models.foundation._sam import SAM_CHECKPOINTS, is_sam_spec, load_sam
from visionkit.models.foundation._sam_predictor import (
    MASK_THRESHOLD,
    PromptMasks,
    SamPredictor,
    mask_boxes,
)

__all__ = [
    "MASK_THRESHOLD",
    "SAM_CHECKPOINTS",
    "MaskRecord",
    "PromptMasks",
    "SamAutomaticMaskGenerator",
    "SamPredictor",
    "is_sam_spec",
    "load_sam",
    "mask_boxes",
    "stability_score",
]
