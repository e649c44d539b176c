"""The served QA model as MLflow models-from-code: this file is what MLflow runs to build the model when it loads
one (`mlflow.pyfunc.load_model`, `mlflow models serve`), so no pickled object of ours is stored in the registry.

It needs the `tasks` package, which travels with the model (`code_paths`).
"""

import mlflow

from tasks.pipeline.serving import QAModel

mlflow.models.set_model(QAModel())
