"""linewatch export stage: a training run -> a verified model bundle (``.pt2``, ONNX, engines)."""
