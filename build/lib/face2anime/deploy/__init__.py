"""Running exported models without PyTorch (onnxruntime, numpy, Pillow)."""
