"""hp.Fixed, a log-sampled Int, a stepped Float, and the optimizer chosen by name."""
import keras


def build_model(hp):
    hp.Fixed("activation", "relu")
    model = keras.Sequential([
        keras.layers.Dense(hp.Int("units", 8, 64, sampling="log"), activation=hp.get("activation")),
        keras.layers.Dropout(hp.Float("dropout", 0.0, 0.3, step=0.1)),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=hp.Choice("optimizer", ["adam", "sgd"]), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model
