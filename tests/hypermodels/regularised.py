"""Batch normalisation and an L2 kernel regulariser with a tuned strength; the loss and the optimizer
as objects, the metric a BinaryAccuracy object."""
import keras


def build_model(hp):
    l2 = keras.regularizers.L2(hp.Float("l2", 1e-5, 1e-2, sampling="log"))
    model = keras.Sequential([
        keras.layers.Dense(32, kernel_regularizer=l2),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-2), loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.BinaryAccuracy()])
    return model
