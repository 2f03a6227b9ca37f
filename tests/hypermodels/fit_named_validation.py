"""A HyperModel whose fit names validation_data and callbacks, and passes them on to model.fit."""
import keras
import keras_tuner


class Network(keras_tuner.HyperModel):
    def build(self, hp):
        model = keras.Sequential([keras.layers.Dense(hp.Choice("units", [8, 16]), activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp, model, x, y, validation_data, callbacks=None, **kwargs):
        x_val, y_val = validation_data
        assert len(x_val) == len(y_val)
        return model.fit(x, y, validation_data=validation_data, callbacks=callbacks, **kwargs)
