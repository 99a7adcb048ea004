"""The models of params.yaml are the article's: built on 32x32x3 input, each has exactly the parameter
counts the article printed (ARTICLE.md, "The runs")."""

from __future__ import annotations

import keras
import pytest

from overfit_first.config import FitConfig, ModelSpec, Params, validate
from overfit_first.errors import PipelineError
from overfit_first.models import build_model, build_optimizer

# model: (classes, trainable params, total params), from the article's table
ARTICLE_COUNTS = {
    "mlp": (10, 243_679, 250_023),
    "mlp_256": (100, 838_884, 845_284),
    "mlp_512": (100, 1_757_412, 1_764_324),
    "cnn_overfit": (10, 1_579_178, 1_580_074),
    "cnn_simplified": (10, 323_146, 324_106),
    "cnn_overfit_c100": (100, 727_044, 729_476),
    "cnn_simplified_c100": (100, 807_940, 809_348),
    "cnn_augmented": (100, 3_829_156, 3_831_076),
}


KNOBS = {"$dropout": 0.4, "$batchnorm_momentum": None}


def trainable_count(model: keras.Model) -> int:
    return sum(int(keras.ops.size(weight)) for weight in model.trainable_weights)


@pytest.fixture
def params(default_params: dict) -> Params:
    return validate(default_params)


def test_every_article_model_is_in_params(params: Params) -> None:
    assert set(ARTICLE_COUNTS) <= set(params.models)


@pytest.mark.parametrize("name", ARTICLE_COUNTS)
def test_parameter_counts_match_the_article(params: Params, name: str) -> None:
    classes, trainable, total = ARTICLE_COUNTS[name]
    model = build_model(params.models[name], (32, 32, 3), classes, KNOBS, name=name)
    assert (trainable_count(model), model.count_params()) == (trainable, total)


def test_output_layer_follows_num_classes_and_computes_in_float32(params: Params) -> None:
    for classes in (7, 10):
        model = build_model(params.models["mlp"], (32, 32, 1), classes, KNOBS, name="mlp")
        assert model.output_shape == (None, classes)
        assert model.layers[-1].dtype_policy.compute_dtype == "float32"  # exact softmax under mixed precision


def test_knobs_reach_the_layers_by_placeholder(params: Params) -> None:
    model = build_model(
        params.models["cnn_simplified"], (32, 32, 3), 10, {"$dropout": 0.25, "$batchnorm_momentum": 0.9}
    )
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.25, 0.25, 0.5, 0.3]  # "$dropout" twice, then the article's fixed rates
    momenta = {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}


def test_a_null_knob_leaves_keras_default(params: Params) -> None:
    model = build_model(params.models["mlp"], (32, 32, 3), 10, KNOBS, name="mlp")
    momenta = {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.99}


def test_layer_defaults_and_regularizer(params: Params) -> None:
    model = build_model(params.models["cnn_overfit"], (32, 32, 3), 10, KNOBS)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(conv.padding == "same" and conv.activation.__name__ == "relu" for conv in convs)
    assert convs[2].kernel_size == (2, 2) and convs[0].kernel_size == (3, 3)  # explicit beats default
    assert isinstance(convs[0].kernel_regularizer, keras.regularizers.L2)
    assert convs[0].kernel_regularizer.l2 == pytest.approx(0.01)
    assert convs[1].kernel_regularizer is None


def test_bad_keyword_names_the_entry(params: Params) -> None:
    spec = params.models["mlp"].model_dump()
    spec["layers"][2] = {"Dense": {"unitz": 75}}
    with pytest.raises(PipelineError, match=r"models\.mlp\.layers\[2\]: cannot build Dense\(unitz=75\)"):
        build_model(ModelSpec(**spec), (32, 32, 3), 10, KNOBS, name="mlp")


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("adam", keras.optimizers.Adam),
        ("nadam", keras.optimizers.Nadam),
        ("sgd", keras.optimizers.SGD),
        ("rmsprop", keras.optimizers.RMSprop),
    ],
)
def test_optimizer_factory(name: str, cls: type) -> None:
    fit = FitConfig(optimizer=name, learning_rate=1e-4, batch_size=32, epochs=1, early_stopping=False)
    optimizer = build_optimizer(fit)
    assert isinstance(optimizer, cls)
    assert optimizer.get_config()["learning_rate"] == pytest.approx(1e-4)
