"""KerasTuner's "Tune model training", data preprocessing tuned in fit: fit(hp, model, x, y, **kwargs)
normalises x when hp.Boolean("normalize") says so."""
import keras
import keras_tuner


class MyHyperModel(keras_tuner.HyperModel):
    def build(self, hp):
        model = keras.Sequential([keras.layers.Dense(hp.Int("units", 8, 32, step=8), activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp, model, x, y, **kwargs):
        if hp.Boolean("normalize"):
            x = keras.layers.Normalization()(x)
        return model.fit(x, y, **kwargs)
