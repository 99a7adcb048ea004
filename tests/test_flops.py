"""FLOPs counted from the architecture (overfit_first.flops) against counts worked out by hand."""

from __future__ import annotations

import keras
import pytest

from overfit_first import flops
from overfit_first.config import Params, validate
from overfit_first.models import build_model

KNOBS = {"$dropout": 0.4, "$batchnorm_momentum": None}


def test_tiny_model_by_hand() -> None:
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same"),  # 2 * 8*8 * 3*3*3 * 4 = 13,824
            keras.layers.BatchNormalization(),  # ignored
            keras.layers.Conv2D(6, 2, strides=2),  # valid, stride 2: 4x4 out; 2 * 4*4 * 2*2*4 * 6 = 3,072
            keras.layers.MaxPooling2D(),  # ignored: 2x2x6 out
            keras.layers.Flatten(),  # 24
            keras.layers.Dropout(0.5),  # ignored
            keras.layers.Dense(5, activation="relu"),  # 2 * 24 * 5 = 240
            keras.layers.Dense(2),  # 2 * 5 * 2 = 20
        ]
    )
    assert [flops.layer_flops(layer) for layer in model.layers] == [13_824, 0, 3_072, 0, 0, 0, 240, 20]
    assert flops.forward_flops(model) == 17_156
    assert flops.training_flops(model) == 3 * 17_156


def test_dense_on_every_position_and_grouped_conv() -> None:
    model = keras.Sequential(
        [
            keras.Input(shape=(4, 4, 8)),
            keras.layers.Conv2D(8, 1, groups=4),  # kernel (1, 1, 2, 8): 2 * 16 * 2 * 8 = 512
            keras.layers.Dense(3),  # on each of the 16 positions: 2 * 16 * 8 * 3 = 768
        ]
    )
    assert flops.forward_flops(model) == 512 + 768


def test_nested_model_is_counted() -> None:
    inner = keras.Sequential([keras.Input(shape=(10,)), keras.layers.Dense(4)])  # 80
    outer = keras.Sequential([keras.Input(shape=(10,)), inner, keras.layers.Dense(2)])  # + 16
    assert flops.forward_flops(outer) == 96


def test_unbuilt_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="not built"):
        flops.layer_flops(keras.layers.Dense(3))


def test_article_cnn_simplified(default_params: dict) -> None:
    """About 62 MFLOP per image forward (issue 12), here exactly, layer by layer on 32x32x3 CIFAR images."""
    params: Params = validate(default_params)
    model = build_model(params.models["cnn_simplified"], (32, 32, 3), 10, KNOBS, name="cnn_simplified")
    by_hand = [
        2 * 32 * 32 * 3 * 3 * 3 * 32,  # Conv2D 32, 3x3, same: 1,769,472
        2 * 32 * 32 * 3 * 3 * 32 * 32,  # Conv2D 32: 18,874,368; then pooling to 16x16
        2 * 16 * 16 * 2 * 2 * 32 * 64,  # Conv2D 64, 2x2: 4,194,304
        2 * 16 * 16 * 2 * 2 * 64 * 64,  # Conv2D 64, 2x2: 8,388,608; then pooling to 8x8
        2 * 8 * 8 * 3 * 3 * 64 * 128,  # Conv2D 128: 9,437,184
        2 * 8 * 8 * 3 * 3 * 128 * 128,  # Conv2D 128: 18,874,368; then pooling to 4x4x128 = 2048
        2 * 2048 * 32,  # Dense 32: 131,072
        2 * 32 * 10,  # Dense 10: 640
    ]
    counted = [flops.layer_flops(layer) for layer in model.layers if flops.layer_flops(layer)]
    assert counted == by_hand
    assert flops.forward_flops(model) == sum(by_hand) == 61_670_016
    assert flops.training_flops(model) == 185_010_048  # about 185 MFLOP per training image (issue 12)
