"""Torchvision detectors behind the Detector contract: labels, thresholds, sizes and weights.

The registry entries (``_torchvision.py``) and their adapter (``_torchvision_adapter.py``)
are held to torchvision itself: the same modules, layout and tensors as torchvision's own
builders make, with class indices shifted by its background.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models import get_model

from visionkit.errors import ConfigError, WeightsError
from visionkit.models import create_model, list_models, model_info, read_state_file
from visionkit.models.detect import _torchvision_adapter
from visionkit.models.detect._torchvision_weights import PRETRAINED

FAST = "fasterrcnn_mobilenet_v3_large_320_fpn"


def _image(height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


def _same_layout(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Same module types, same trainable parameters, same tensors."""
    assert {k: type(m) for k, m in ours.named_modules()} == {
        k: type(m) for k, m in theirs.named_modules()
    }
    assert {k: p.requires_grad for k, p in ours.named_parameters()} == {
        k: p.requires_grad for k, p in theirs.named_parameters()
    }
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert ours_state.keys() == theirs_state.keys()
    assert all(torch.equal(ours_state[k], theirs_state[k]) for k in ours_state)


def test_every_torchvision_entry_is_registered_with_coco_default_weights():
    names = [n for n in list_models("detect") if n in torchvision.models.list_models()]
    assert sorted(names) == sorted(PRETRAINED)
    for name in names:
        assert model_info(name).default_weights == "DEFAULT"


def test_random_init_loads_nothing_and_keeps_batchnorm_live(empty_caches):
    model = create_model("fasterrcnn_resnet50_fpn", num_classes=3)  # offline: no download
    assert model.num_classes == 3 and model.config.weights is None
    assert model.net.roi_heads.box_predictor.cls_score.out_features == 4  # + background
    assert all(p.requires_grad for p in model.parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.net.backbone.body.modules())
    assert model.config.kwargs == {
        "image_size": 640,
        "trainable_backbone_layers": None,
        "frozen_batchnorm": False,
    }


@pytest.mark.parametrize(
    ("name", "classifier"),
    [
        ("fasterrcnn_resnet50_fpn", "resnet50"),  # frozen BatchNorm, 3 trainable stages
        ("fasterrcnn_resnet50_fpn_v2", "resnet50"),  # live BatchNorm, 3 trainable stages
        ("fasterrcnn_mobilenet_v3_large_fpn", "mobilenet_v3_large"),
    ],
)
def test_backbone_weights_give_torchvision_s_pretrained_layout(name, classifier, monkeypatch):
    torch.manual_seed(0)
    imagenet = get_model(classifier).state_dict()
    # torchvision's builder loads its backbone weights through the enum; both get the same.
    monkeypatch.setattr(
        torchvision.models._api.WeightsEnum, "get_state_dict", lambda *_, **__: imagenet
    )
    monkeypatch.setattr(_torchvision_adapter, "read_state_dict", lambda source: imagenet)
    enum = torchvision.models.get_model_weights(classifier).IMAGENET1K_V1
    torch.manual_seed(1)
    theirs = get_model(name, weights=None, weights_backbone=enum, num_classes=4)
    torch.manual_seed(1)
    ours = create_model(name, num_classes=3, weights_backbone="IMAGENET1K_V1")
    _same_layout(ours.net, theirs)
    assert ours.config.kwargs["trainable_backbone_layers"] == 3


def test_coco_weights_load_torchvision_s_tensors_and_names(monkeypatch):
    torch.manual_seed(0)
    coco = get_model(FAST, weights=None, weights_backbone=None, num_classes=91)
    monkeypatch.setattr(_torchvision_adapter, "read_state_dict", lambda source: coco.state_dict())
    model = create_model(FAST, weights="COCO_V1")
    categories = torchvision.models.get_model_weights(FAST).COCO_V1.meta["categories"]
    assert model.num_classes == 90 and model.config.names == tuple(categories[1:])
    assert model.config.kwargs["frozen_batchnorm"] is True
    state = model.net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in coco.state_dict().items() if k in state)

    tuned = create_model(FAST, weights="COCO_V1", num_classes=3)  # the fine-tuning recipe
    assert tuned.num_classes == 3 and tuned.config.names is None
    predictor = tuned.net.roi_heads.box_predictor
    assert (predictor.cls_score.out_features, predictor.bbox_pred.out_features) == (4, 16)
    tuned_state = tuned.net.state_dict()
    assert all(
        torch.equal(tuned_state[k], v)
        for k, v in coco.state_dict().items()
        if k in tuned_state and not k.startswith("roi_heads.box_predictor.")
    )


def test_coco_weights_offline_name_the_file_and_the_torch_hub_folder(empty_caches):
    folder = empty_caches / "torch" / "hub" / "checkpoints"
    with pytest.raises(WeightsError) as error:
        create_model("fasterrcnn_resnet50_fpn", weights="DEFAULT", num_classes=3)
    assert "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" in str(error.value)
    assert str(folder) in str(error.value)
    with pytest.raises(WeightsError, match=r"resnet50-0676ba61\.pth"):
        create_model("retinanet_resnet50_fpn", weights_backbone="IMAGENET1K_V1")


def test_labels_are_shifted_past_torchvision_s_background():
    torch.manual_seed(0)
    model = create_model(FAST, num_classes=3, image_size=64)
    seen = []
    model.net.roi_heads.register_forward_pre_hook(lambda _, args: seen.append(args[3]))
    image, box = _image(64, 64), torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    model([image], [{"boxes": box, "labels": torch.tensor([2])}])
    assert seen[0][0]["labels"].tolist() == [3]  # what torchvision trains on

    scores = model.net.roi_heads.box_predictor.cls_score
    with torch.no_grad():  # torchvision's class 3 always wins: our class 2
        scores.weight.zero_()
        scores.bias.copy_(torch.tensor([0.0, -10.0, -10.0, 10.0]))
        found = model.eval()([image])[0]
    assert len(found["labels"]) > 0 and (found["labels"] == 2).all()


def test_retinanet_never_reports_its_unused_background_slot():
    torch.manual_seed(0)
    model = create_model("retinanet_resnet50_fpn", num_classes=3, image_size=64).eval()
    logits = model.net.head.classification_head.cls_logits
    with torch.no_grad():  # slot 0 (no class outside) scores highest, then our class 1
        logits.weight.zero_()
        logits.bias.copy_(torch.tensor([8.0, -8.0, 4.0, -8.0]).repeat(9))
        found = model([_image()])[0]
    assert len(found["labels"]) > 0 and (found["labels"] == 1).all()


def test_thresholds_reach_the_wrapped_post_processing():
    rcnn = create_model(FAST, num_classes=3, image_size=64)
    dense = create_model("ssdlite320_mobilenet_v3_large", num_classes=3, image_size=64)
    for post in (rcnn.net.roi_heads, dense.net):  # set when built
        assert (post.score_thresh, post.nms_thresh, post.detections_per_img) == (0.001, 0.6, 300)
    for model, post in ((rcnn, rcnn.net.roi_heads), (dense, dense.net)):
        model.set_thresholds(conf=0.25, iou=0.45, max_det=7)
        assert (post.score_thresh, post.nms_thresh, post.detections_per_img) == (0.25, 0.45, 7)
        with torch.no_grad():
            found = model.eval()([_image()])[0]
        assert len(found["scores"]) <= 7 and (found["scores"] >= 0.25).all()


@pytest.mark.parametrize("name", [FAST, "fcos_resnet50_fpn"])
def test_images_are_resized_to_image_size_and_boxes_come_back_in_image_pixels(name):
    model = create_model(name, num_classes=3, image_size=128).eval()
    assert model.config.image_size == 128 and model.net.transform.max_size == 128
    seen = []
    model.net.backbone.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape))
    with torch.no_grad():
        found = model([_image(24, 32)])[0]  # enlarged 4x inside, not to 800 px
    assert seen[0][-2:] == (96, 128)
    assert (found["boxes"][:, 2] <= 32).all() and (found["boxes"][:, 3] <= 24).all()


def test_ssdlite_resizes_to_a_square_of_its_native_side():
    model = create_model("ssdlite320_mobilenet_v3_large", num_classes=3)
    assert model.config.image_size == 320 and model.net.transform.fixed_size == (320, 320)
    assert model.config.mean == (0.5, 0.5, 0.5)


def test_a_checkpoint_rebuilds_from_its_config_with_identical_outputs(tmp_path):
    torch.manual_seed(0)
    options = {"image_size": 96, "trainable_backbone_layers": 2, "frozen_batchnorm": True}
    model = create_model(FAST, num_classes=3, **options)
    path = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict()}, path)
    saved = read_state_file(path)

    config = model.config
    rebuilt = create_model(config.name, num_classes=config.num_classes, **config.kwargs)
    rebuilt.load_state_dict(saved["model"])
    from_file = create_model(config.name, weights=str(path), **config.kwargs)
    assert from_file.num_classes == 3  # read from the file's class scores
    images = [_image(), _image(64, 40, seed=1)]
    with torch.no_grad():
        expected = model.eval()(images)
        for again in (rebuilt, from_file):
            _same_layout(again.net, model.net)
            for ours, theirs in zip(again.eval()(images), expected, strict=True):
                assert all(torch.equal(ours[k], theirs[k]) for k in ("boxes", "scores", "labels"))


def test_mask_rcnn_trains_on_masks_and_predicts_them_per_image():
    model = create_model("maskrcnn_resnet50_fpn", num_classes=2, image_size=64)
    target = {"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]), "labels": torch.tensor([1])}
    with pytest.raises(ConfigError, match="masks"):
        model([_image()], [target])
    masks = torch.zeros(1, 48, 64, dtype=torch.uint8)
    masks[0, 4:30, 4:30] = 1
    assert "loss_mask" in model([_image()], [{**target, "masks": masks}])
    model.eval().set_thresholds(max_det=5)
    with torch.no_grad():
        found = model([_image()])[0]
    assert found["masks"].shape == (len(found["boxes"]), 1, 48, 64)
    assert ((found["masks"] >= 0) & (found["masks"] <= 1)).all()


def test_options_that_do_not_fit_are_refused():
    with pytest.raises(ConfigError, match="weights_backbone"):
        create_model("ssdlite320_mobilenet_v3_large", weights_backbone="IMAGENET1K_V1")
    with pytest.raises(ConfigError, match="trainable_backbone_layers"):
        create_model("ssdlite320_mobilenet_v3_large", trainable_backbone_layers=2)
    with pytest.raises(ConfigError, match=r"0\.\.6"):
        create_model(FAST, trainable_backbone_layers=7)
    with pytest.raises(ConfigError, match="rpn_batch_size_per_image"):  # the accepted ones
        create_model(FAST, no_such_option=1)
    with pytest.raises(ConfigError, match="set_thresholds"):
        create_model(FAST, box_score_thresh=0.5)
    with pytest.raises(WeightsError, match="hf checkpoints"):
        create_model(FAST, weights="hf:facebook/detr-resnet-50")
