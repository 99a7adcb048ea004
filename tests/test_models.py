"""The models of params.yaml are the article's: built on 32x32x3 input, each has exactly the parameter
counts the article printed (ARTICLE.md, "The runs")."""

from __future__ import annotations

import copy

import keras
import pytest

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


def trainable_count(model: keras.Model) -> int:
    return sum(int(keras.ops.size(weight)) for weight in model.trainable_weights)


def test_every_article_model_is_in_params(default_params: dict) -> None:
    assert set(ARTICLE_COUNTS) <= set(default_params["models"])


@pytest.mark.parametrize("name", ARTICLE_COUNTS)
def test_parameter_counts_match_the_article(default_params: dict, name: str) -> None:
    classes, trainable, total = ARTICLE_COUNTS[name]
    model = build_model(default_params["models"][name], (32, 32, 3), classes, dropout=0.4, name=name)
    assert (trainable_count(model), model.count_params()) == (trainable, total)


def test_output_layer_follows_num_classes(default_params: dict) -> None:
    for classes in (7, 10):
        model = build_model(default_params["models"]["mlp"], (32, 32, 1), classes, dropout=0.4, name="mlp")
        assert model.output_shape == (None, classes)


def test_dropout_placeholder_takes_the_value(default_params: dict) -> None:
    model = build_model(default_params["models"]["cnn_simplified"], (32, 32, 3), 10, dropout=0.25)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.25, 0.25, 0.5, 0.3]  # "$dropout" twice, then the article's fixed rates


def test_layer_defaults_and_regularizer(default_params: dict) -> None:
    model = build_model(default_params["models"]["cnn_overfit"], (32, 32, 3), 10, dropout=0.4)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(conv.padding == "same" and conv.activation.__name__ == "relu" for conv in convs)
    assert convs[2].kernel_size == (2, 2) and convs[0].kernel_size == (3, 3)  # explicit beats default
    assert isinstance(convs[0].kernel_regularizer, keras.regularizers.L2)
    assert convs[0].kernel_regularizer.l2 == pytest.approx(0.01)
    assert convs[1].kernel_regularizer is None


def test_unknown_layer_type_names_the_entry_and_the_allowed_types(default_params: dict) -> None:
    spec = copy.deepcopy(default_params["models"]["mlp"])
    spec["layers"].insert(2, {"LSTM": {"units": 8}})
    with pytest.raises(PipelineError, match=r"models\.mlp\.layers\[2\]: unknown layer type 'LSTM'; allowed types: .*Conv2D"):
        build_model(spec, (32, 32, 3), 10, dropout=0.4, name="mlp")


def test_bad_keyword_names_the_entry(default_params: dict) -> None:
    spec = copy.deepcopy(default_params["models"]["mlp"])
    spec["layers"][2] = {"Dense": {"unitz": 75}}
    with pytest.raises(PipelineError, match=r"models\.mlp\.layers\[2\]: cannot build Dense\(unitz=75\)"):
        build_model(spec, (32, 32, 3), 10, dropout=0.4, name="mlp")


def test_unknown_placeholder_is_named(default_params: dict) -> None:
    spec = copy.deepcopy(default_params["models"]["mlp"])
    spec["layers"][-1] = {"Dense": {"units": "$classes"}}
    with pytest.raises(PipelineError, match=r"models\.mlp\.layers\[9\]\.units: unknown placeholder '\$classes'"):
        build_model(spec, (32, 32, 3), 10, dropout=0.4, name="mlp")


@pytest.mark.parametrize(("name", "cls"), [("adam", keras.optimizers.Adam), ("nadam", keras.optimizers.Nadam),
                                            ("sgd", keras.optimizers.SGD), ("rmsprop", keras.optimizers.RMSprop)])
def test_optimizer_factory(name: str, cls: type) -> None:
    optimizer = build_optimizer({"optimizer": name, "learning_rate": 1e-4})
    assert isinstance(optimizer, cls)
    assert optimizer.get_config()["learning_rate"] == pytest.approx(1e-4)


def test_unknown_optimizer_is_named() -> None:
    with pytest.raises(PipelineError, match=r"models\.mlp\.training\.optimizer is 'adamw2'; use one of"):
        build_optimizer({"optimizer": "adamw2", "learning_rate": 1e-3}, name="mlp")
