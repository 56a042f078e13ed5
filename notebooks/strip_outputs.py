"""Strip executed notebooks for committing: python notebooks/strip_outputs.py NB [NB ...].

Keeps only the outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` (the reference that
``pytest --nbval-lax`` compares against) and their execution counts; removes every other
output, the saved widget state (a plotly FigureWidget stores ~5 MB of plotly.js there) and
per-cell metadata other than tags and a collapsed input. ``--out DIR`` writes the stripped copies there instead of in place.

A checked cell keeps everything nbval compares, stderr included: a warning printed there is
part of the reference, and fails nbval on a machine where it differs or is absent. So this
script warns about it (and about rich output in a checked cell): filter the warning in the
cell's code, or print only rounded numbers there. A checked cell that raised is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

CHECK = "NBVAL_CHECK_OUTPUT"


def strip(book: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    book.metadata = {"kernelspec": book.metadata.get("kernelspec", {
        "display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}),
        "language_info": {"name": "python"}}
    for i, cell in enumerate(book.cells):
        # tags, and "jupyter" (a collapsed input: source_hidden, as a reader left it)
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in ("tags", "jupyter")}
        if cell.cell_type != "code":
            continue
        if CHECK in cell.source and cell.get("execution_count") is not None:
            for out in cell.outputs:
                if out.output_type == "error":
                    raise ValueError(f"{name}: checked cell {i} raised {out.ename}: "
                                     f"{out.evalue} (not stored as a reference)")
                if out.output_type == "stream" and out.name == "stderr":
                    print(f"warning: {name}: checked cell {i} writes to stderr, which nbval "
                          f"compares too: {out.text.strip()[:200]!r}", file=sys.stderr)
                elif out.output_type != "stream":
                    print(f"warning: {name}: checked cell {i} has {out.output_type} output "
                          f"({', '.join(out.get('data', {}))}): nbval compares it too",
                          file=sys.stderr)
        else:
            cell.outputs = []
            cell.execution_count = None
    return book


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    for path in args.notebooks:
        book = strip(nbformat.read(path, as_version=4), path.name)
        target = (args.out / path.name) if args.out else path
        nbformat.write(book, target)
        print(f"{target}: {target.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
