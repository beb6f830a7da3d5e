"""Edge worker: decode, batch, infer (onnxruntime), score, sensor checks, heartbeat."""
