"""The pipeline end to end: every notebook through papermill on the smoke profile, one HTML report."""
import json
import re

import nbformat
import pytest

from hw1lib import Hw1Error, report
from hw1lib.experiments import EXPERIMENT_RUNNERS

SECTION_HEADINGS = {
    "1.1-deep-vs-shallow": ["1.1 Deep vs shallow", "1.1a Simulate a function", "1.1b Train on a real task"],
}


def test_formulas_become_mathml():
    out = report.latex_to_mathml(r"costs $5 or so; $\frac{\sin(5\pi x)}{5\pi x}$ and $$x^2$$")
    assert "<math" in out and "<mfrac>" in out and 'display="block"' in out
    assert "$" not in out.split("<math")[1]
    assert report.latex_to_mathml("no math here") == "no math here"


def test_without_a_browser_the_pdf_is_skipped_in_one_line(tmp_path, monkeypatch, capsys):
    page = tmp_path / "r.html"
    page.write_text("<html><body>hi</body></html>")
    monkeypatch.setattr(report, "find_browser", lambda: None)
    assert report.write_pdf(page) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "PDF skipped" in out and "apt-get install chromium" in out
    assert list(tmp_path.iterdir()) == [page]


def test_a_failing_notebook_names_itself_and_the_cell_and_keeps_the_copy(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "hw1", "display_name": "hw1", "language": "python"},
        "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    source = tmp_path / "broken.ipynb"
    nbformat.write(nb, source)
    executed = tmp_path / "out" / "broken.ipynb"
    with pytest.raises(Hw1Error, match=r"notebook broken.ipynb failed in cell 1 \(ValueError: boom\)"):
        report.execute_notebook(source, executed, {})
    assert executed.exists()


def test_smoke_report_end_to_end(tmp_path, results_dir):
    out = report.build_report("smoke", device="cpu", out_dir=tmp_path / "report")
    page = out["html"].read_text()
    notebooks = report.select_notebooks()
    assert notebooks, "no notebooks were rendered"
    for nb in notebooks:
        for heading in SECTION_HEADINGS.get(nb.stem, []):
            assert heading in page, heading
        assert (tmp_path / "report" / "executed" / nb.name).exists()
    figures = re.findall(r'<img[^>]+src="data:image/png;base64', page)
    assert len(figures) >= 4 and "No description has been provided" not in page
    assert "<math" in page and "$\\frac" not in page  # formulas rendered, offline
    assert 'nav class="hw1-toc"' in page and "profile | **smoke**" not in page and ">smoke<" in page
    # nothing is loaded from a network when the page is opened
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)="(https?:)?//', page)
    for experiment in EXPERIMENT_RUNNERS:
        summary = json.loads((results_dir / "smoke" / experiment / "summary.json").read_text())
        assert summary["profile"] == "smoke" and summary["table"]
    if report.find_browser():
        assert out["pdf"].stat().st_size > 10_000
    else:
        assert out["pdf"] is None
