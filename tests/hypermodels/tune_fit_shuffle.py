"""KerasTuner's "Tune model training": a HyperModel whose fit chooses shuffle and batch_size."""
import keras
import keras_tuner


class MyHyperModel(keras_tuner.HyperModel):
    def build(self, hp):
        model = keras.Sequential()
        model.add(keras.layers.Flatten())
        model.add(keras.layers.Dense(units=hp.Int("units", min_value=8, max_value=32, step=8), activation="relu"))
        model.add(keras.layers.Dense(1, activation="sigmoid"))
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, batch_size=hp.Choice("batch_size", [16, 32]), shuffle=hp.Boolean("shuffle"),
                         **kwargs)
