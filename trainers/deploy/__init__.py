"""A trained model as users run it: ``model_folder.py`` -- ``ModelInfo`` and the model card;
``inference.py`` -- ``load_text_classifier``, ``TextClassifier`` (PyTorch, ONNX Runtime or
TorchScript), ``PredictedLabel``, ``onnx_providers``; ``export.py`` -- ``export_model``;
``quantize.py`` -- ``export_int8``, ``quantize_file`` (an int8 ONNX file for a CPU);
``precisions.py`` -- ``evaluate_precisions`` (a trained model's dev figure in each serving
precision);
``timing.py`` -- ``measure`` (every model in each precision, int8 in ONNX Runtime, and batch-1
latency), ``measure_one`` (a model's throughput, the paper's way)."""
