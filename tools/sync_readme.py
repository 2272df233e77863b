"""Copy notebook 12's written answer and its tables into the README, so the two say the same thing.

The notebook's cells whose source starts with "# README: NAME" display Markdown; the README holds each one between
<!-- NAME --> and <!-- /NAME -->. `python tools/sync_readme.py` rewrites those sections from the committed notebook (run
it after `make notebooks`); tests/test_notebooks.py fails while they differ.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "12_which_to_trust.ipynb"
README = ROOT / "README.md"


def notebook_sections(path: Path = NOTEBOOK) -> dict[str, str]:
    """{NAME: the Markdown a "# README: NAME" cell displayed}, from the committed outputs."""
    sections = {}
    for cell in json.loads(path.read_text())["cells"]:
        found = re.match(r"# README: ([\w-]+)", "".join(cell["source"]))
        if cell["cell_type"] != "code" or not found:
            continue
        shown = [o["data"]["text/markdown"] for o in cell["outputs"] if "text/markdown" in o.get("data", {})]
        if len(shown) != 1:
            raise SystemExit(f"{path.name}: the cell '# README: {found.group(1)}' must display one Markdown output")
        sections[found.group(1)] = "".join(shown[0]).strip()
    return sections


def readme_sections(text: str) -> dict[str, str]:
    """{NAME: what the README holds between <!-- NAME --> and <!-- /NAME -->}."""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"<!-- ([\w-]+) -->\n(.*?)<!-- /\1 -->", text, re.S)}


def synced(text: str, sections: dict[str, str]) -> str:
    for name, body in sections.items():
        pattern = re.compile(rf"(<!-- {name} -->\n).*?(<!-- /{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name} --> ... <!-- /{name} --> section for notebook 12's output")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


if __name__ == "__main__":
    before = README.read_text()
    after = synced(before, notebook_sections())
    README.write_text(after)
    print("README.md: " + ("updated from notebook 12" if after != before else "already as notebook 12 says"))
