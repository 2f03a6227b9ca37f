"""JAX fits an epoch at a time: all of an epoch's steps in one compiled call, at the XLA
optimisation level that suits the network.

Keras' JAX trainer runs ``steps_per_execution`` as a Python loop over a jitted single step, so
every batch still costs a Python dispatch (0.1-0.3 ms, more than a small network's step). Here
the epoch is one ``lax.scan`` over Keras' own ``train_step``: the same loss, optimizer, dropout,
regularisation and loss scaling, with the Python loop gone.

Every new network pays a compile: at XLA's level 0 about 0.6 s less than at its default level,
but its epochs run 3-7x slower on CPUs. Which pays depends on the network and the table, so each
fit chooses (:func:`quick_compile_pays`) from its own rows, weights and batches.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

# Measured on 2 cores over 72 networks (python -m bench.levels; bench/results/levels-20261123T081910.json):
# against XLA's default level, level 0 compiles a new network about this much sooner (median;
# 0.40-1.23 s)...
QUICK_COMPILE_SAVES_S = 0.65
# ...and then spends this much longer on every epoch (least squares): per training row x weight
# (the matrix products), per row x unit (the element-wise work) and per batch.
QUICK_COMPILE_COSTS_S_PER_ROW_WEIGHT = 8.5e-10
QUICK_COMPILE_COSTS_S_PER_ROW_UNIT = 7.1e-8
QUICK_COMPILE_COSTS_S_PER_STEP = 1.8e-4
# The older CPU emitters compile a small network's step 0.2-0.4 s sooner at level 0; jaxlib 0.11
# dropped them, and XLA refuses an option it does not know (seen on the GPU machine's 0.11.2).
LAST_JAXLIB_WITH_OLDER_EMITTERS = (0, 10)
QUICK_CPU_OPTIONS = {"xla_backend_optimization_level": 0}
# An ASHA trial's expected length (grace period 4, factor 3: most stop at 4, a third reach 12...).
TRIAL_EPOCHS_EXPECTED = 10


def quick_compile_pays(rows: int, weights: int, units: int, batch_size: int, epochs: int) -> bool:
    """Whether ``epochs`` epochs of a network (``weights`` weights, ``units`` units in its layers)
    on ``rows`` rows cost less at XLA's level 0 (quick compile, slow epochs) than at its default
    level. Over the 72 networks measured (10 epochs each), choosing by this cost 6% more than the
    best level for each, against 42-47% more for either level everywhere."""
    per_row = weights * QUICK_COMPILE_COSTS_S_PER_ROW_WEIGHT + units * QUICK_COMPILE_COSTS_S_PER_ROW_UNIT
    extra_per_epoch = rows * per_row + max(1, rows // batch_size) * QUICK_COMPILE_COSTS_S_PER_STEP
    return epochs * extra_per_epoch < QUICK_COMPILE_SAVES_S


def compile_options(model: Any, rows: int, batch_size: int, epochs: int) -> dict[str, Any]:
    """XLA options for this network's programs: level 0 where it pays on CPUs (with the older CPU
    emitters where jaxlib still has them), else none. Never on a GPU: its kernels are what it is
    there for."""
    import jax

    units = sum(getattr(layer, "units", 0) for layer in model.layers)
    if jax.default_backend() != "cpu" or not quick_compile_pays(rows, model.count_params(), units, batch_size,
                                                               epochs):
        return {}
    options: dict[str, Any] = dict(QUICK_CPU_OPTIONS)
    if jaxlib_release() <= LAST_JAXLIB_WITH_OLDER_EMITTERS:
        options["xla_cpu_use_fusion_emitters"] = False
    return options


@functools.cache
def jaxlib_release() -> tuple[int, int]:
    """(major, minor) of the installed jaxlib, read from its metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = version("jaxlib").split(".")[:2]
        return int(major), int(minor)
    except (PackageNotFoundError, ValueError):
        return (0, 0)


def epoch_function(model: Any, steps: int, batch: int) -> Any:
    """One pass over ``steps`` batches of ``batch`` rows as a pure function of the model's state: a
    ``lax.scan`` of Keras' ``train_step``, then P(class 1) on ``x_eval`` (None without it)."""
    import jax

    def epoch(state: Any, metrics: Any, x: Any, y: Any, w: Any, order: Any, x_eval: Any) -> Any:
        def step(carry: Any, rows: Any) -> Any:
            xb, yb, wb = rows
            logs, carry = model.train_step(carry, (xb, yb, wb))
            return carry, logs["loss"]

        batches = (x[order].reshape(steps, batch, -1), y[order].reshape(steps, batch),
                   None if w is None else w[order].reshape(steps, batch))
        (trainable, fixed, optimizer, _), losses = jax.lax.scan(step, (*state, metrics), batches)
        evaluated = None if x_eval is None else model.stateless_call(trainable, fixed, x_eval, training=False)[0]
        return (trainable, fixed, optimizer), losses[-1], evaluated  # the loss tracker's mean over the epoch

    return epoch


def per_row_weights(y: np.ndarray, class_weight: dict[int, float] | None) -> np.ndarray | None:
    """Keras' ``class_weight`` as its data adapter applies it: one weight per row (None without)."""
    if not class_weight:
        return None
    return np.where(np.asarray(y) == 1, class_weight.get(1, 1.0), class_weight.get(0, 1.0)).astype(np.float32)


def build_compiled_metrics(model: Any, x: np.ndarray, y: np.ndarray) -> None:
    """Create the variables of the metrics a model was compiled with (``metrics=["accuracy"]``, an
    ``AUC()``...), which Keras otherwise creates in its first ``fit`` step: a ``lax.scan`` needs the
    metrics' state to have one shape from its first step to its last."""
    rows = np.asarray(x[:2], dtype=np.float32)
    model.compute_metrics(rows, np.asarray(y[:2], dtype=np.float32), model(rows, training=False), None)
    model.reset_metrics()


def model_state(model: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """The (trainable, non-trainable, optimizer) values of a compiled model, its optimizer built."""
    if not model.optimizer.built:  # a restored checkpoint built it already
        model.optimizer.build(model.trainable_variables)
    return ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
            [v.value for v in model.optimizer.variables])


class EpochRunner:
    """Trains a compiled Keras ``model`` on ``x``, ``y`` an epoch at a time, its state held as JAX
    arrays between epochs; :meth:`to_model` writes that state back into the model's variables.

    Each epoch sees the rows in a new order drawn from ``seed`` and the epoch's number, so a fit
    resumed at epoch ``k`` sees the same orders as one that ran through. With ``chunks`` > 1 an
    epoch is trained in that many equal parts (:meth:`train_chunk`), one compiled call each, so that
    a trial on a big table reports fractions of an epoch. ``x`` must hold whole batches times
    ``chunks`` (``fit.whole_batches``). With ``x_eval``, the same compiled call also returns
    P(class 1) on those rows after the call (one program to trace and compile per network, not two).
    """

    def __init__(self, model: Any, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                 class_weight: dict[int, float] | None = None, epochs_expected: float = TRIAL_EPOCHS_EXPECTED,
                 x_eval: np.ndarray | None = None, chunks: int = 1) -> None:
        import jax

        self.model = model
        self.seed = seed
        self.rows = len(x)
        self.batch_size = min(batch_size, self.rows)  # fewer rows than a batch: one batch of them all, as in Keras
        self.chunks = chunks if self.rows % (self.batch_size * chunks) == 0 else 1
        self.chunk_rows = self.rows // self.chunks
        self.state = model_state(model)
        self.x = jax.device_put(np.asarray(x, dtype=np.float32))
        self.y = jax.device_put(np.asarray(y, dtype=np.float32))
        weights = per_row_weights(y, class_weight)
        self.sample_weight = None if weights is None else jax.device_put(weights)
        self.x_eval = None if x_eval is None else jax.device_put(np.asarray(x_eval, dtype=np.float32))
        build_compiled_metrics(model, x, y)
        self.metrics_zero = [np.zeros(v.shape, v.dtype) for v in model.metrics_variables]
        options = compile_options(model, self.rows, batch_size, int(math.ceil(epochs_expected)))
        self._epoch = jax.jit(self._epoch_program(), compiler_options=options)

    def _epoch_program(self) -> Any:
        return epoch_function(self.model, self.chunk_rows // self.batch_size, self.batch_size)

    def train_epoch(self, epoch: int) -> float:
        """One pass over the rows; returns the epoch's mean training loss (NaN or inf if it diverged).
        With ``x_eval``, :attr:`evaluated` then holds P(class 1) on it."""
        for chunk in range(self.chunks):
            loss = self.train_chunk(epoch, chunk)
        return loss

    def train_chunk(self, epoch: int, chunk: int) -> float:
        """Part ``chunk`` of ``self.chunks`` of epoch ``epoch``; returns its mean training loss."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.rows)
        part = order[chunk * self.chunk_rows:(chunk + 1) * self.chunk_rows]
        self.state, loss, evaluated = self._epoch(self.state, self.metrics_zero, self.x, self.y, self.sample_weight,
                                                  part, self.x_eval)
        self.evaluated = None if evaluated is None else np.asarray(evaluated).ravel()
        return float(loss)

    def to_model(self) -> Any:
        """Write the trained state into the model's variables (for saving or exporting); returns the model."""
        trainable, fixed, optimizer = self.state
        for variables, values in ((self.model.trainable_variables, trainable),
                                  (self.model.non_trainable_variables, fixed),
                                  (self.model.optimizer.variables, optimizer)):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        return self.model


class FoldsRunner:
    """Trains one configuration's CV folds together: one network per fold (each with its own initial
    weights, rows, order of rows and held-out rows), their states stacked on a leading fold axis, and
    one compiled program, the vmapped epoch of :func:`epoch_function`, for all of them.

    Separate fits compile one program per fold (its rows differ by one, and so its shapes); here the
    folds are padded to one shape first: training rows to ``rows`` (whole batches, ``fit.whole_batches``)
    and held-out rows with zeros, which are cut off again. Each fold sees the same orders of rows as
    an :class:`EpochRunner` with its seed, so the result is that of the folds' separate fits.
    """

    def __init__(self, models: list[Any], xs: list[np.ndarray], ys: list[np.ndarray], batch_size: int,
                 seeds: list[int], class_weights: list[dict[int, float] | None], x_evals: list[np.ndarray],
                 epochs_expected: float) -> None:
        import jax
        import jax.numpy as jnp

        self.seeds, self.rows = seeds, len(xs[0])
        self.models = models
        self.eval_rows = [len(x) for x in x_evals]
        batch = min(batch_size, self.rows)
        stack = lambda arrays: jax.device_put(np.stack(arrays))  # noqa: E731
        self.x = stack([np.asarray(x, np.float32) for x in xs])
        self.y = stack([np.asarray(y, np.float32) for y in ys])
        weights = [per_row_weights(y, w) for y, w in zip(ys, class_weights, strict=True)]
        self.sample_weight = None if weights[0] is None else stack(weights)
        width = max(self.eval_rows)
        self.x_eval = stack([np.pad(np.asarray(x, np.float32), ((0, width - len(x)), (0, 0))) for x in x_evals])
        for model, x, y in zip(models, xs, ys, strict=True):
            build_compiled_metrics(model, x, y)
        self.state = jax.tree.map(lambda *values: jnp.stack(values), *[model_state(m) for m in models])
        self.metrics_zero = [np.zeros(v.shape, v.dtype) for v in models[0].metrics_variables]
        options = compile_options(models[0], self.rows * len(models), batch, int(math.ceil(epochs_expected)))
        program = jax.vmap(epoch_function(models[0], self.rows // batch, batch), in_axes=(0, None, 0, 0, 0, 0, 0))
        self._epoch = jax.jit(program, compiler_options=options)

    def train_epoch(self, epoch: int) -> np.ndarray:
        """One pass of every fold; returns each fold's mean training loss. :attr:`evaluated` then holds
        each fold's P(class 1) on its held-out rows."""
        orders = np.stack([np.random.default_rng([seed, epoch]).permutation(self.rows) for seed in self.seeds])
        self.state, losses, evaluated = self._epoch(self.state, self.metrics_zero, self.x, self.y, self.sample_weight,
                                                    orders, self.x_eval)
        evaluated = np.asarray(evaluated)
        self.evaluated = [evaluated[f, :n].ravel() for f, n in enumerate(self.eval_rows)]
        return np.asarray(losses)

    def fold_weights(self) -> list[list[np.ndarray]]:
        """Each fold's network weights now, as its model's ``get_weights()`` (the state written back first)."""
        trainable, fixed, _ = self.state
        weights = []
        for f, model in enumerate(self.models):
            for variables, values in ((model.trainable_variables, trainable), (model.non_trainable_variables, fixed)):
                for variable, value in zip(variables, values, strict=True):
                    variable.assign(value[f])
            weights.append([np.asarray(w) for w in model.get_weights()])
        return weights
