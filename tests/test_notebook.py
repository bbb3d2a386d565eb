"""The tour notebook (demos/tour.ipynb) runs top to bottom in a real kernel, and shows its pictures inline."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

TOUR = Path(__file__).resolve().parent.parent / "demos" / "tour.ipynb"


def test_the_tour_is_kept_without_outputs():
    notebook = nbformat.read(TOUR, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_the_tour_runs_and_displays_its_pictures_and_page(tmp_path):
    notebook = nbformat.read(TOUR, as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    shown = {}
    for cell in notebook.cells:
        if cell.cell_type == "code":
            for output in cell.outputs:
                assert output.output_type != "error", output
                for kind in output.get("data", {}):
                    shown.setdefault(cell.source.splitlines()[-1], set()).add(kind)
    assert "image/svg+xml" in shown["draw_dot(L)"]
    assert "image/svg+xml" in shown["draw_graph(o)"] and "image/svg+xml" in shown["draw_mlp(model)"]
    assert "text/html" in shown["backprop_page(o)"]
