"""Floating-point operations of a built Keras model, counted from its architecture (per image).

Convention (the usual one for convolutional networks; one multiply-add = 2 FLOPs):

    Conv2D   2 * H_out * W_out * K_h * K_w * (C_in / groups) * C_out    (strides and padding via the output shape)
    Dense    2 * in * out, times the positions it is applied to (every axis but the batch and the last)

Ignored: biases, activations, batch normalization, pooling, dropout, flatten and the loss, all linear in the
activations' size and small next to the convolutions (under 2 % of cnn_simplified's count), though not in
time: they are memory-bound, so where they cost time shows in a profile, not in this count. A training step
costs about 3x the forward pass (the backward pass computes the gradients of both the inputs and the
weights, each as many multiply-adds as the forward pass), `TRAINING_FACTOR`; the first layer's input
gradient, which nothing needs, is counted all the same.

Achieved FLOP/s = training FLOPs per image x images per second: comparable with a matrix-multiply peak.
"""

from __future__ import annotations

import math

import keras

TRAINING_FACTOR = 3  # forward + backward (input gradients + weight gradients)


def layer_flops(layer: keras.layers.Layer) -> int:
    """Forward FLOPs per image of one built layer (0 for the layers the convention ignores).

    Raises ValueError for a layer that has not been built (no known output shape).
    """
    if isinstance(layer, keras.Model):
        return forward_flops(layer)
    if not isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
        return 0
    if not layer.built:
        raise ValueError(f"layer {layer.name!r} is not built: build the model on an input shape first")
    kernel = tuple(int(size) for size in layer.kernel.shape)
    output = tuple(layer.output.shape[1:])
    if isinstance(layer, keras.layers.Conv2D):
        # kernel: (K_h, K_w, C_in / groups, C_out); output: (H_out, W_out, C_out) channels last,
        # (C_out, H_out, W_out) channels first.
        spatial = output[:-1] if layer.data_format == "channels_last" else output[1:]
        return 2 * math.prod(spatial) * math.prod(kernel)
    # Dense: kernel (in, out), applied to every position of the axes before the last.
    return 2 * math.prod(output[:-1]) * kernel[0] * kernel[1]


def forward_flops(model: keras.Model) -> int:
    """Forward FLOPs per image of a built model: the sum of `layer_flops` over its layers (nested models too)."""
    return sum(layer_flops(layer) for layer in model.layers)


def training_flops(model: keras.Model) -> int:
    """FLOPs per training image (forward + backward): `TRAINING_FACTOR` x `forward_flops`."""
    return TRAINING_FACTOR * forward_flops(model)
