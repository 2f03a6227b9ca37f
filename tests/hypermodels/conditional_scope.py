"""KerasTuner's conditional hyperparameters: two model types, each with its own hyperparameters under
hp.conditional_scope."""
import keras


def build_model(hp):
    model = keras.Sequential()
    model_type = hp.Choice("model_type", ["small", "large"])
    if model_type == "small":
        with hp.conditional_scope("model_type", ["small"]):
            model.add(keras.layers.Dense(hp.Int("small_units", 4, 16, step=4), activation="relu"))
    else:
        with hp.conditional_scope("model_type", ["large"]):
            for i in range(hp.Int("large_layers", 2, 3)):
                model.add(keras.layers.Dense(hp.Int(f"large_units_{i}", 16, 64, step=16), activation="relu"))
    model.add(keras.layers.Dense(1, activation="sigmoid"))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model
