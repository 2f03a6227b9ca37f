"""KerasTuner's "Tune model training", a custom training loop: fit runs two epochs of its own whatever
epochs it is given. hpsearch names it before any trial (ASHA and the CV choose the epochs)."""
import keras
import keras_tuner
import numpy as np


class MyHyperModel(keras_tuner.HyperModel):
    def build(self, hp):
        model = keras.Sequential([keras.layers.Dense(hp.Int("units", 8, 32, step=8), activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy")
        return model

    def fit(self, hp, model, x, y, validation_data, callbacks=None, **kwargs):
        epochs = 2
        best = float("inf")
        for callback in callbacks or []:
            callback.set_model(model)
        for epoch in range(epochs):
            model.train_on_batch(x, y)
            x_val, y_val = validation_data
            loss = float(np.mean(keras.losses.binary_crossentropy(np.reshape(y_val, (-1, 1)), model(x_val))))
            for callback in callbacks or []:
                callback.on_epoch_end(epoch, logs={"my_metric": loss})
            best = min(best, loss)
        return best
