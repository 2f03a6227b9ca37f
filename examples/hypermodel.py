"""A KerasTuner hypermodel, searched by hpsearch on Ray Tune with ASHA:

    hpsearch run pima.csv --hypermodel examples/hypermodel.py:build_model

The same function runs unchanged in KerasTuner's own tuners (``keras_tuner.RandomSearch(build_model,
...)``). The model gets the encoded feature matrix: leave out the Input layer and Keras sizes the
first Dense layer from it. It must end in one sigmoid unit, P(class 1), and be compiled.
"""

import keras


def build_model(hp):
    model = keras.Sequential(name="hypermodel")
    for i in range(hp.Int("layers", 1, 3)):
        model.add(keras.layers.Dense(hp.Int(f"units_{i}", 16, 256, sampling="log"),
                                     activation=hp.Choice("activation", ["relu", "gelu", "tanh"])))
    if hp.Boolean("dropout"):
        with hp.conditional_scope("dropout", [True]):  # the rate is searched only where dropout is on
            model.add(keras.layers.Dropout(hp.Float("rate", 0.05, 0.5)))
    model.add(keras.layers.Dense(1, activation="sigmoid"))
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")),
                  loss="binary_crossentropy")
    return model
