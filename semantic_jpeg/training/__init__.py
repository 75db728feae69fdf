"""Training tools (PyTorch, optional extra ``training``): models, RePr, band-limited convolution, export to
``semantic_jpeg.onnx_models``. Nothing here is imported by the runtime.

Modules (import them explicitly; this package imports no torch by itself):

- :mod:`~semantic_jpeg.training.repr` -- RePr (Prakash et al., CVPR 2019) as a callback for any conv net/optimizer
- :mod:`~semantic_jpeg.training.ranking` -- filter ranking metrics (ortho eq. 5.1-5.2, weight, random,
  activation, APoZ, Taylor, greedy oracle)
- :mod:`~semantic_jpeg.training.fit` -- small training loop (progress, checkpoints + resume, metrics log), C^n(X)
- :mod:`~semantic_jpeg.training.msroi_net` -- the paper's MS-ROI network (sec 2.3), Aug-MSROI, ONNX export
- :mod:`~semantic_jpeg.training.distill` -- MS-ROI network distilled from the pretrained EfficientNet-Lite0
- :mod:`~semantic_jpeg.training.export`, :mod:`~semantic_jpeg.training.class_table` -- the shipped CAM model's ONNX
  export and its ImageNet/WordNet class table
- :mod:`~semantic_jpeg.training.selective_dropout` -- selective dropout (Hinthorn, Princeton, sec. 5.3)
- :mod:`~semantic_jpeg.training.data`, :mod:`~semantic_jpeg.training.plots` -- data loading, Figure 5.1 plots
- ``semantic-jpeg train ...`` / ``semantic-jpeg export`` -- :mod:`~semantic_jpeg.training.cli`
"""
