"""KerasTuner's "Getting started", the number of layers tuned: a for loop over hp.Int, metrics=["AUC"]."""
import keras


def build_model(hp):
    model = keras.Sequential()
    for i in range(hp.Int("num_layers", 1, 3)):
        model.add(keras.layers.Dense(units=hp.Int(f"units_{i}", min_value=8, max_value=64, step=8),
                                     activation="relu"))
    model.add(keras.layers.Dense(1, activation="sigmoid"))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["AUC"])
    return model
