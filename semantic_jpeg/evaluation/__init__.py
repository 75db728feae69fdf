"""Defense evaluation harness (Prakash, PhD thesis, Brandeis 2019, Tables 3.1, 4.1-4.11;
Dziedzic, dissertation, U. Chicago 2019, ch. 3; adaptive attacks after Athalye et al., ICML 2018).

Attacks EfficientNet-Lite0 with the adversarial-robustness-toolbox, purifies the adversarial images with the
``semantic_jpeg.defense_filters`` presets and with ART's peer defenses, and reports top-1 accuracy (single draw
and Ens-10 majority vote) and the destruction rate, plus adaptive BPDA+EOT attacks that know the defense.

Run it with ``python -m semantic_jpeg.evaluation`` or ``semantic-jpeg evaluate`` (needs the ``evaluation`` extra).
This package file imports nothing heavy: torch and ART load only inside the submodules that need them.
"""
