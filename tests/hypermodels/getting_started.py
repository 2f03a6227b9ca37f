"""KerasTuner's "Getting started": one tuned Dense layer, an optional Dropout, a log-sampled learning
rate, compiled with metrics=["accuracy"]."""
import keras


def build_model(hp):
    model = keras.Sequential()
    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dense(units=hp.Int("units", min_value=32, max_value=512, step=32),
                                 activation=hp.Choice("activation", ["relu", "tanh"])))
    if hp.Boolean("dropout"):
        model.add(keras.layers.Dropout(rate=0.25))
    model.add(keras.layers.Dense(1, activation="sigmoid"))
    learning_rate = hp.Float("lr", min_value=1e-4, max_value=1e-2, sampling="log")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model
