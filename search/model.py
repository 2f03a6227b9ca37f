"""The network: a dense MLP on the encoded feature matrix, built from one sampled config.

``DEFAULTS`` holds the value of every hyperparameter a space may leave out, so a config
from any valid space builds. The network ends in a sigmoid: it returns P(class 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

DEFAULTS: dict[str, Any] = {
    "depth": 2,
    "width": 64,
    "dropout": 0.0,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "l2": 0.0,
    "activation": "relu",
    "optimizer": "adam",
    "batch_norm": False,
    "class_weight": "none",
}
# Tiny MLPs are bound by per-step dispatch; running many steps per call cuts it (MEASURED.md).
STEPS_PER_EXECUTION = 16


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """The sampled values over the defaults, as plain Python builtins (no NumPy scalars)."""
    resolved = dict(DEFAULTS)
    for key, value in config.items():
        resolved[key] = value.item() if hasattr(value, "item") else value
    return resolved


def build_network(config: dict[str, Any], n_features: int, compiled: bool = True) -> keras.Model:
    """An MLP for ``config`` on ``n_features`` encoded inputs, compiled for training unless ``compiled`` is off."""
    import keras

    c = resolve_config(config)
    regularizer = keras.regularizers.L2(c["l2"]) if c["l2"] > 0 else None
    inputs = keras.Input(shape=(n_features,), name="encoded")
    x = inputs
    for i in range(int(c["depth"])):
        x = keras.layers.Dense(
            int(c["width"]), kernel_regularizer=regularizer, name=f"dense_{i}"
        )(x)
        if c["batch_norm"]:
            x = keras.layers.BatchNormalization(name=f"batch_norm_{i}")(x)
        x = keras.layers.Activation(c["activation"], name=f"{c['activation']}_{i}")(x)
        if c["dropout"] > 0:
            x = keras.layers.Dropout(float(c["dropout"]), name=f"dropout_{i}")(x)
    # float32 even under mixed precision: a float16 sigmoid saturates, and the loss needs the precision.
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
    model = keras.Model(inputs, outputs, name="network")
    if not compiled:
        return model
    model.compile(
        optimizer=_optimizer(c["optimizer"], float(c["learning_rate"])),
        loss="binary_crossentropy",
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    import keras

    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }
    return optimizers[name](learning_rate=learning_rate)
