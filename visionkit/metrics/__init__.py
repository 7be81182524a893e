"""Metrics for every task, pycocotools-faithful, on a 0-1 scale with torchmetrics' key names.

Each module takes plain arrays (numpy, or anything ``np.asarray`` accepts, torch tensors
included) and depends on layer 1 only, so the trainer and every tool above can use it:
``detection`` (COCO and VOC AP, confusion matrix), ``segmentation`` (IoU, mIoU, Dice,
boundary IoU), ``classification`` (top-k, per-class P/R/F1, calibration, per group),
``tracking`` (CLEAR, Identity, HOTA, single-object success) and ``dense`` (depth, flow).
"""
