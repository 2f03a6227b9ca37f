"""Metrics, loss and optimizer as objects: AUC(name="auc") and Precision(), BinaryCrossentropy with tuned
label smoothing, RMSprop."""
import keras


def build_model(hp):
    model = keras.Sequential([keras.layers.Dense(hp.Choice("units", [16, 32]), activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.RMSprop(hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")),
                  loss=keras.losses.BinaryCrossentropy(label_smoothing=hp.Float("smoothing", 0.0, 0.1)),
                  metrics=[keras.metrics.AUC(name="auc"), keras.metrics.Precision()])
    return model
