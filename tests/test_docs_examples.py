"""The worked examples in docs/ run as written: each page's ```python blocks are executed in order, in one
namespace, in a temporary working directory (so files they write land there)."""
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(page: str) -> list[str]:
    return BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))


def run_page(page: str, tmp_path, monkeypatch) -> dict:
    blocks = python_blocks(page)
    assert blocks, f"docs/{page} has no python blocks"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page}"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/{page} block {index + 1}", "exec"), namespace)  # noqa: S102
    return namespace


def test_custom_model_example_builds_loads_and_maps(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    namespace = run_page("custom_models.md", tmp_path, monkeypatch)
    model, saliency = namespace["model"], namespace["saliency"]
    assert (tmp_path / "models" / "colour_cam.json").is_file()
    assert model.class_names == ["red", "blue"]
    # the red square (top-left) holds most of the map's mass, the grey rest little
    square = saliency[8:40, 8:40].sum() / saliency.sum()
    assert square > 0.5, square
    # the manifest protects the files: a modified head is refused
    from semantic_jpeg.onnx_models import ModelIntegrityError, load_model

    head = tmp_path / "models" / "colour_cam.head.npy"
    head.write_bytes(head.read_bytes()[:-4] + b"\x00\x00\x80\x3f")
    with pytest.raises(ModelIntegrityError):
        load_model(tmp_path / "models" / "colour_cam.json")


def test_relative_links_in_readme_and_docs_resolve():
    root = DOCS.parent
    pages = [root / "README.md", *sorted(DOCS.glob("*.md")), *sorted((root / "benchmarks" / "results").glob("*.md"))]
    missing = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                missing.append(f"{page.relative_to(root)} -> {target}")
    assert not missing, "broken links:\n" + "\n".join(missing)
