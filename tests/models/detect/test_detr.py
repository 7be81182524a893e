"""DETR and RT-DETR through transformers, held to transformers' own loss and post-processing."""

from __future__ import annotations

import pytest
import torch
import transformers

from visionkit.errors import ConfigError, WeightsError
from visionkit.models import create_model, read_state_file
from visionkit.ops.boxes import clip_boxes

TINY = {
    "detr-resnet-50": {
        "backbone_config": {
            "depths": [1, 1],
            "hidden_sizes": [8, 16],
            "embedding_size": 8,
            "layer_type": "basic",
            "out_features": ["stage2"],
        },
        "d_model": 16,
        "encoder_layers": 1,
        "decoder_layers": 2,
        "encoder_ffn_dim": 32,
        "decoder_ffn_dim": 32,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "num_queries": 8,
    },
    "rtdetr-r18": {
        "backbone_config": {
            "depths": [1, 1, 1, 1],
            "hidden_sizes": [8, 16, 32, 64],
            "embedding_size": 8,
        },
        "encoder_in_channels": [16, 32, 64],
        "encoder_hidden_dim": 16,
        "encoder_ffn_dim": 32,
        "encoder_attention_heads": 2,
        "d_model": 16,
        "decoder_in_channels": [16, 16, 16],
        "decoder_ffn_dim": 32,
        "decoder_attention_heads": 2,
        "decoder_layers": 2,
        "num_queries": 10,
        "num_denoising": 10,
    },
}
PROCESSORS = {"detr-resnet-50": "DetrImageProcessor", "rtdetr-r18": "RTDetrImageProcessor"}
NAMES = list(TINY)
SIDE = 64


def _tiny(name: str, num_classes: int = 3):
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes, image_size=SIDE, config_overrides=TINY[name])


def _images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(3, 48, 64, generator=generator), torch.rand(3, 80, 40, generator=generator)]


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([[8.0, 12.0, 40.0, 36.0], [0, 0, 64, 48]]),
            "labels": torch.tensor([0, 2]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]


def _capture(module: torch.nn.Module) -> list:
    """The outputs of ``module``'s calls, appended as they happen."""
    outputs = []
    module.register_forward_hook(lambda _, __, output: outputs.append(output))
    return outputs


@pytest.mark.parametrize("name", NAMES)
def test_the_loss_terms_sum_to_transformers_loss(name):
    model = _tiny(name)
    outputs = _capture(model.model)
    losses = model(_images(), _targets())
    assert all(v.dim() == 0 and v.requires_grad for v in losses.values())
    assert "cardinality_error" not in losses
    torch.testing.assert_close(sum(losses.values()), outputs[0].loss)
    if name == "detr-resnet-50":  # DETR weights its raw terms: 1, 5 and 2 per decoder layer
        raw = outputs[0].loss_dict
        for key in ("loss_ce", "loss_bbox_0", "loss_giou"):
            assert torch.equal(losses[key], raw[key] * {"c": 1, "b": 5, "g": 2}[key[5]])


@pytest.mark.parametrize("name", NAMES)
def test_targets_reach_transformers_as_cxcywh_in_0_1_of_each_image(name):
    model = _tiny(name)
    seen = []
    model.model.register_forward_pre_hook(
        lambda _, args, kwargs: seen.append(kwargs["labels"]), with_kwargs=True
    )
    model(_images(), _targets())
    first, second = seen[0]
    expected = torch.tensor([[24 / 64, 24 / 48, 32 / 64, 24 / 48], [0.5, 0.5, 1.0, 1.0]])
    torch.testing.assert_close(first["boxes"], expected)
    assert first["class_labels"].tolist() == [0, 2] and second["boxes"].shape == (0, 4)


def test_detr_boxes_come_back_in_the_pixels_of_each_image():
    model = _tiny("detr-resnet-50").eval()
    with torch.no_grad():  # every query: box cxcywh (0.5, 0.5, 0.5, 0.5), class 1
        model.model.bbox_predictor.layers[-1].weight.zero_()
        model.model.bbox_predictor.layers[-1].bias.zero_()
        model.model.class_labels_classifier.weight.zero_()
        model.model.class_labels_classifier.bias.copy_(torch.tensor([0.0, 6.0, 0.0, 0.0]))
        found = model(_images())
    # Identical boxes of one class: non-maximum suppression keeps one per image.
    assert [f["boxes"].tolist() for f in found] == [[[16, 12, 48, 36]], [[10, 20, 30, 60]]]
    assert [f["labels"].tolist() for f in found] == [[1], [1]]


@pytest.mark.parametrize("name", NAMES)
def test_eval_detections_are_transformers_post_processing_in_each_image(name):
    model = _tiny(name).eval()
    model.set_thresholds(conf=0.0, iou=1.0, max_det=300)  # nothing suppressed
    outputs = _capture(model.model)
    images = _images()
    with torch.no_grad():
        found = model(images)
    processor = getattr(transformers, PROCESSORS[name])()
    sizes = [tuple(image.shape[-2:]) for image in images]
    reference = processor.post_process_object_detection(outputs[0], 0.0, target_sizes=sizes)
    for ours, theirs, (height, width) in zip(found, reference, sizes, strict=True):
        order = theirs["scores"].argsort(descending=True, stable=True)
        torch.testing.assert_close(ours["scores"], theirs["scores"][order])
        assert torch.equal(ours["labels"], theirs["labels"][order])
        torch.testing.assert_close(ours["boxes"], clip_boxes(theirs["boxes"][order], height, width))


@pytest.mark.parametrize(("name", "prefix"), [(NAMES[0], "hf:"), (NAMES[1], "")])
def test_a_save_pretrained_folder_reloads_offline_with_identical_outputs(
    name, prefix, tmp_path, monkeypatch
):
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = _tiny(name).eval()
    model.model.save_pretrained(tmp_path)
    again = create_model(name, weights=f"{prefix}{tmp_path}", image_size=SIDE)
    assert again.training and again.num_classes == 3 and again.config.names is None
    config = again.config
    rebuilt = create_model(name, num_classes=config.num_classes, **config.kwargs)
    rebuilt.load_state_dict(again.state_dict())
    with torch.no_grad():
        expected = model(_images())
        for other in (again.eval(), rebuilt.eval()):
            for ours, theirs in zip(other(_images()), expected, strict=True):
                assert all(torch.equal(ours[k], theirs[k]) for k in ("boxes", "scores", "labels"))


def test_another_class_count_gets_a_new_class_head(tmp_path):
    model = _tiny("detr-resnet-50")
    model.model.save_pretrained(tmp_path)
    tuned = create_model("detr-resnet-50", weights=f"hf:{tmp_path}", num_classes=5)
    assert tuned.num_classes == 5
    assert tuned.model.class_labels_classifier.out_features == 6  # + "no object"
    torch.testing.assert_close(
        tuned.model.bbox_predictor.state_dict(), model.model.bbox_predictor.state_dict()
    )


def test_a_visionkit_weights_file_brings_its_class_count(tmp_path):
    model = _tiny("rtdetr-r18", num_classes=4).eval()
    path = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict()}, path)
    again = create_model("rtdetr-r18", weights=str(path), **model.config.kwargs).eval()
    assert again.num_classes == 4
    assert read_state_file(path)["model_config"]["kwargs"] == model.config.kwargs
    with torch.no_grad():
        assert torch.equal(again(_images())[0]["boxes"], model(_images())[0]["boxes"])


def test_hub_weights_offline_name_the_cache_folder_to_fill(empty_caches):
    with pytest.raises(WeightsError) as error:
        create_model("detr-resnet-50", weights="DEFAULT")
    assert str(empty_caches / "hf" / "hub" / "models--facebook--detr-resnet-50") in str(error.value)


def test_bad_configurations_are_refused():
    with pytest.raises(ConfigError, match="image_size"):  # 3 x 3 + ... tokens, 300 queries
        create_model("rtdetr-r18", image_size=64)
    with pytest.raises(ConfigError, match="config_overrides"):
        create_model("detr-resnet-50", config_overrides={"no_such_field": 1})
    with pytest.raises(WeightsError, match="hf:<repo-id>"):
        create_model("detr-resnet-50", weights="COCO_V1")
