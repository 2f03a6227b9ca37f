"""hpsearch's exported model as an MLflow pyfunc, logged as "models from code": MLflow runs this file
to build the model, so loading it unpickles nothing. ``predict`` takes a DataFrame of the table's raw
columns and returns each row's probability and label, as ``hpsearch predict`` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class HpsearchModel(PythonModel):
    def load_context(self, context: Any) -> None:
        import keras

        self.model = keras.saving.load_model(context.artifacts["model"], safe_mode=True, compile=False)
        self.metadata = json.loads(Path(context.artifacts["metadata"]).read_text())

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        from search.export import predict_frame

        predictions, _ = predict_frame(self.model, self.metadata, model_input)
        return predictions


mlflow.models.set_model(HpsearchModel())
