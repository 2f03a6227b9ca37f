"""A HyperModel subclass with constructor arguments that have defaults, its build tuning the width."""
import keras
import keras_tuner


class SizedModel(keras_tuner.HyperModel):
    def __init__(self, max_units=48, name=None, tunable=True):
        super().__init__(name=name, tunable=tunable)
        self.max_units = max_units

    def build(self, hp):
        model = keras.Sequential([keras.layers.Dense(hp.Int("units", 16, self.max_units, step=16), activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy", "AUC"])
        return model
