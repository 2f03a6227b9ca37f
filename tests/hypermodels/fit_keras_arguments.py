"""A HyperModel whose fit passes its own Keras fit arguments beside **kwargs: class_weight, verbose=1,
and a callback added to the ones it was given."""
import keras
import keras_tuner


class Network(keras_tuner.HyperModel):
    def build(self, hp):
        model = keras.Sequential([keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [1e-3, 1e-2])),
                      loss="binary_crossentropy")
        return model

    def fit(self, hp, model, *args, **kwargs):
        callbacks = kwargs.pop("callbacks", []) + [keras.callbacks.TerminateOnNaN()]
        return model.fit(*args, class_weight={0: 1.0, 1: hp.Float("positive_weight", 1.0, 3.0)}, verbose=1,
                         callbacks=callbacks, **kwargs)
