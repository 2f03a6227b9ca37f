"""A HyperModel whose fit tunes the batch size and hands on to HyperModel.fit (super().fit)."""
import keras
import keras_tuner


class Network(keras_tuner.HyperModel):
    def build(self, hp):
        model = keras.Sequential([keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss=keras.losses.binary_crossentropy, metrics=[keras.metrics.AUC()])
        return model

    def fit(self, hp, model, *args, **kwargs):
        return super().fit(hp, model, *args, batch_size=hp.Choice("batch_size", [8, 32]), **kwargs)
