"""Sigmoid shifted and stretched, to take its two suspected faults apart (claim 2 of the report).

σ(z) is not centred on zero (its outputs average ½) and its slope peaks at ¼. Each variant
changes one of the two, or both, and nothing else, so a 2 × 2 comparison separates them:

| function             | centred | peak slope |
| ---                  | ---     | ---        |
| sigmoid              | no      | 1/4        |
| sigmoid_centred      | yes     | 1/4        |
| sigmoid_x4           | no      | 1          |
| sigmoid_x4_centred   | yes     | 1 (= 2·tanh(z/2)) |

Train them as `train.extra_activations=[pipeline.sigmoid_family:sigmoid_centred, …]`.
"""

from __future__ import annotations

import keras


def sigmoid_centred(z):
    """σ(z) − ½: centred on zero, sigmoid's slope."""
    return keras.ops.sigmoid(z) - 0.5


def sigmoid_x4(z):
    """4·σ(z): not centred (outputs average 2), tanh's peak slope of 1."""
    return 4.0 * keras.ops.sigmoid(z)


def sigmoid_x4_centred(z):
    """4·σ(z) − 2 = 2·tanh(z/2): centred, with a peak slope of 1."""
    return 4.0 * keras.ops.sigmoid(z) - 2.0
