"""Command-line options that several tasks share, defined once so their help reads alike."""

from __future__ import annotations

from visionkit.cli._parsing import Option, parse_amp, parse_bool, parse_pair

MODEL = Option("model", "registry name (visionkit models) or a trained checkpoint (.pt)")
WEIGHTS = Option("weights", "DEFAULT, a torchvision weights name, hf:<repo-id> or a local file")
DEVICE = Option("device", "auto, cpu, cuda, cuda:1 or mps")
JSON = Option("json", "print JSON instead of a table (true/false)", parse_bool)
BATCH = Option("batch", "images per step", int)

FLIP = Option("flip", "horizontal flip probability", float)
COLOUR = Option("colour", "colour jitter (true/false)", parse_bool)
WHOLE_IMAGE_AUGMENTATION = [
    FLIP,
    Option("scale", "random rescale range, e.g. 0.5,1.5 (1,1: none)", parse_pair),
    COLOUR,
]
"""Augmentation of whole images and their boxes or masks: ``detect`` and ``segment``."""

CLOSE_MOSAIC = Option("close_mosaic", "final epochs without mosaic (below 1: a share)", float)
CACHE_IMAGES = Option(
    "cache_images", "keep decoded images in memory after the first epoch (true/false)", parse_bool
)

RUN = [
    Option("epochs", "passes over the training data", int),
    BATCH,
    Option("imgsz", "input side in pixels", int),
    Option("project", "runs folder"),
    Option("name", "run name (name2, name3... when taken)"),
    Option("exist_ok", "reuse the run folder (true/false)", parse_bool),
    Option("resume", "continue the run `name` from weights/last.pt (true/false)", parse_bool),
]
"""The run's size and folder: every ``<task> train`` takes these."""

SETTINGS = [
    Option("optimizer", "adamw or sgd", choices=("adamw", "sgd")),
    Option("lr", "peak learning rate", float),
    Option("weight_decay", "weight decay", float),
    Option("momentum", "SGD momentum / AdamW beta1", float),
    Option("warmup_epochs", "linear warmup length in epochs", float),
    Option("lr_final", "final learning rate as a fraction of lr", float),
    Option("grad_clip", "maximum gradient norm", float),
    Option("label_smoothing", "cross-entropy label smoothing", float),
    Option("amp", "mixed precision: true (float16, CUDA only), bf16 or false", parse_amp),
    Option("ema", "keep an EMA of the weights (true/false)", parse_bool),
    Option("patience", "stop after this many epochs without improvement", int),
    Option("time", "training budget in hours: the steps that fit it (replaces epochs)", float),
    Option("val", "validate every epoch (true) or only the last (false)", parse_bool),
    Option("seed", "random seed", int),
    Option("deterministic", "deterministic algorithms (true/false)", parse_bool),
    Option("workers", "data-loading processes", int),
    DEVICE,
    Option("quiet", "no progress bar or epoch lines (true/false)", parse_bool),
    Option("save_period", "also keep weights/epoch<N>.pt every N epochs", int),
]
"""The trainer's settings (:class:`visionkit.train.TrainConfig`)."""
