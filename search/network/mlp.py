"""The network: a dense MLP on the encoded feature matrix, built from one sampled config.

``DEFAULTS`` holds the value of every hyperparameter a space may leave out, so a config
from any valid space builds. The network ends in a sigmoid: it returns P(class 1).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

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
    "numeric_embedding": "none",
    "embedding_scale": 0.1,
    "numeric_clip": "none",
    "numeric_columns": 0,  # set by the run: the encoded matrix's first columns that are numbers
}
# smooth clipping: standardised values far beyond this many standard deviations are squeezed towards it
CLIP_AT = 3.0
# periodic embeddings: frequencies per number, and the width of each number's embedding
FREQUENCIES = 16
EMBEDDING_WIDTH = 16
# Tiny MLPs are bound by per-step dispatch; running many steps per call cuts it (MEASURED.md).
STEPS_PER_EXECUTION = 16


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """The sampled values over the defaults, as plain Python builtins (no NumPy scalars). A hypermodel's
    config keeps its own names, with the batch size and class weights every fit needs."""
    from search.network.hypermodel import DEFAULT_BATCH_SIZE, REF_KEY

    own = REF_KEY in config
    resolved = {"batch_size": DEFAULT_BATCH_SIZE, "class_weight": "none"} if own else dict(DEFAULTS)
    for key, value in config.items():
        resolved[key] = value.item() if hasattr(value, "item") else value
    return resolved


def build_network(config: dict[str, Any], n_features: int, compiled: bool = True,
                  seed: int | None = None) -> keras.Model:
    """An MLP for ``config`` on ``n_features`` encoded inputs, compiled for training unless ``compiled`` is off.

    A config with a ``hypermodel`` builds the user's KerasTuner model instead, compiled as it compiles it.
    With ``seed``, its initial weights are drawn on the host (:func:`host_initializers`) and its
    dropout layers are seeded from it; without, Keras' global seed and initializers are used (the
    network the export assembles, whose weights are then set).
    """
    import keras

    from search.network import hypermodel

    if hypermodel.REF_KEY in config:  # the user's own network (search/network/hypermodel.py)
        return hypermodel.build(config, n_features, compiled)
    c = resolve_config(config)
    init = host_initializers(seed) if seed is not None else {}
    dense = {k: v for k, v in init.items() if k in ("kernel_initializer", "bias_initializer")}
    norm = {k: v for k, v in init.items() if k not in dense}
    regularizer = keras.regularizers.L2(c["l2"]) if c["l2"] > 0 else None
    inputs = keras.Input(shape=(n_features,), name="encoded")
    x = smooth_clip(inputs) if c["numeric_clip"] == "smooth" else inputs
    if c["numeric_embedding"] == "periodic" and int(c["numeric_columns"]) > 0:
        x = periodic_numbers(x, int(c["numeric_columns"]), float(c["embedding_scale"]), seed, dense)
    for i in range(int(c["depth"])):
        x = keras.layers.Dense(
            int(c["width"]), kernel_regularizer=regularizer, name=f"dense_{i}", **dense
        )(x)
        if c["batch_norm"]:
            x = keras.layers.BatchNormalization(name=f"batch_norm_{i}", **norm)(x)
        x = keras.layers.Activation(c["activation"], name=f"{c['activation']}_{i}")(x)
        if c["dropout"] > 0:
            x = keras.layers.Dropout(float(c["dropout"]), name=f"dropout_{i}",
                                     seed=None if seed is None else seed + i)(x)
    # float32 even under mixed precision: a float16 sigmoid saturates, and the loss needs the precision.
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="probability", **dense)(x)
    model = keras.Model(inputs, outputs, name="network")
    if not compiled:
        return model
    model.compile(
        optimizer=make_optimizer(c["optimizer"], float(c["learning_rate"]), host_slots=seed is not None),
        loss="binary_crossentropy",
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


def smooth_clip(x: keras.KerasTensor) -> keras.KerasTensor:
    """x / sqrt(1 + (x / 3)^2) on every encoded column, as RealMLP does (Holzmueller et al. 2024): about x
    within a standard deviation or two, never beyond 3 in size, so that an outlier of a standardised
    number (an income, a count) does not swamp the first layer. The 0/1 columns become 0 and 0.95."""
    from keras import ops

    return ops.divide(x, ops.sqrt(ops.add(1.0, ops.square(ops.divide(x, CLIP_AT)))))


def periodic_numbers(x: keras.KerasTensor, numbers: int, scale: float, seed: int | None,
                     dense: dict[str, Any]) -> keras.KerasTensor:
    """The first ``numbers`` columns as periodic embeddings (PLR-lite, Gorishniy et al. 2022), the rest as
    they are: each number v becomes ReLU(W [cos 2 pi c v, sin 2 pi c v]), with its own trainable
    frequencies c (initially normal with std ``scale``) and one W shared by all numbers. A line in v
    cannot bend; these can follow a clock time or an age's U-shape. Built-in layers and ops only, so the
    exported model still loads in safe mode."""
    import keras
    from keras import ops

    width = x.shape[-1]
    columns = keras.layers.Reshape((width, 1), name="columns")(x)
    values = keras.layers.Cropping1D((0, width - numbers), name="numbers")(columns)
    frequencies = keras.initializers.RandomNormal(stddev=2 * np.pi * scale, seed=seed)
    angles = keras.layers.EinsumDense("bfo,fok->bfk", output_shape=(numbers, FREQUENCIES),
                                      kernel_initializer=frequencies, name="frequencies")(values)
    waves = keras.layers.Concatenate(name="waves")([ops.cos(angles), ops.sin(angles)])
    embedded = keras.layers.Dense(EMBEDDING_WIDTH, activation="relu", name="number_embedding", **dense)(waves)
    embedded = keras.layers.Flatten(name="embedded_numbers")(embedded)
    if numbers == width:
        return embedded
    rest = keras.layers.Flatten(name="other_columns")(keras.layers.Cropping1D((numbers, 0), name="others")(columns))
    return keras.layers.Concatenate(name="embedded")([embedded, rest])


def host_initializers(seed: int) -> dict[str, Any]:
    """Keras' default initial weights (Glorot-uniform kernels, zero biases, unit scales), drawn with NumPy.

    On JAX every Keras initializer, and even copying a NumPy array in, is an XLA program compiled
    for each new weight shape (0.2 s per Glorot kernel, 15-25 ms per copy or zeros): most of a new
    network's build. NumPy draws from the same distributions and ``device_put`` compiles nothing;
    a ``seed`` gives the same weights again.
    """
    glorot, constant = _host_initializer_classes()
    rng = np.random.default_rng(seed)
    zeros, ones = constant(0.0), constant(1.0)
    return {"kernel_initializer": glorot(rng), "bias_initializer": zeros,
            "gamma_initializer": ones, "beta_initializer": zeros,
            "moving_mean_initializer": zeros, "moving_variance_initializer": ones}


@functools.cache
def _host_initializer_classes() -> tuple[type, type]:
    import keras

    def on_device(value: np.ndarray) -> Any:
        if keras.backend.backend() == "jax":
            import jax

            return jax.device_put(value)  # Keras takes a JAX array of the right dtype as it is
        return value

    class HostGlorotUniform(keras.initializers.Initializer):
        def __init__(self, rng: np.random.Generator) -> None:
            self.rng = rng

        def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
            fan_in, fan_out = (shape[0], shape[-1]) if len(shape) > 1 else (shape[0], shape[0])
            limit = np.sqrt(6.0 / max(1.0, fan_in + fan_out))
            dtype = keras.backend.standardize_dtype(dtype)
            return on_device(self.rng.uniform(-limit, limit, size=shape).astype(dtype))

    class HostConstant(keras.initializers.Initializer):
        def __init__(self, value: float) -> None:
            self.value = value

        def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
            return on_device(np.full(shape, self.value, dtype=keras.backend.standardize_dtype(dtype)))

    return HostGlorotUniform, HostConstant


@functools.cache
def _with_host_slots(optimizer: type) -> type:
    """``optimizer`` whose slot variables (Adam's moments, RMSprop's averages) start as host zeros."""
    _, constant = _host_initializer_classes()

    def add_variable_from_reference(self: Any, reference_variable: Any, name: str | None = None,
                                    initializer: Any = "zeros") -> Any:
        if initializer == "zeros":
            initializer = constant(0.0)
        return optimizer.add_variable_from_reference(self, reference_variable, name=name, initializer=initializer)

    return type(optimizer.__name__, (optimizer,), {"add_variable_from_reference": add_variable_from_reference})


def make_optimizer(name: str, learning_rate: float, host_slots: bool = False) -> keras.optimizers.Optimizer:
    import keras

    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }
    optimizer = _with_host_slots(optimizers[name]) if host_slots else optimizers[name]
    return optimizer(learning_rate=learning_rate)


def network_with(config: dict[str, Any], n_features: int, weights: list[np.ndarray]) -> Any:
    """A float32 network of ``config`` holding ``weights`` (whatever precision trained them)."""
    network = build_network(config, n_features, compiled=False)
    network.set_weights(weights)
    return network
