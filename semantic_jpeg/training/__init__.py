"""Training tools (PyTorch, optional extra ``training``): models, RePr, band-limited convolution, export to
``semantic_jpeg.onnx_models``. Nothing here is imported by the runtime."""
