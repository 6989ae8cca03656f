"""A pipeline whose outputs are every kind of artifact the run page shows inline."""
# no `from __future__ import annotations` here: kfp reads the annotations as types

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Markdown, Output


@dsl.component(base_image="python:3.11")
def report(page: Output[HTML], notes: Output[Markdown], table: Output[Dataset], roc: Output[ClassificationMetrics]):
    with open(page.path, "w") as f:
        f.write("<h1>chart</h1><script>parent.document.title='owned'</script>")
    with open(notes.path, "w") as f:
        # the component's source is all that travels: the hostile text is written out here
        f.write("# Notes\n\n**bold** and [a link](javascript:alert(1)) and <script>document.title='owned'</script>\n")
    with open(table.path + ".csv", "w") as f:
        f.write("a,b\n" + "\n".join(f"{i},{i * i}" for i in range(30)) + "\n")
    table.uri = table.uri + ".csv"
    roc.log_roc_curve([0.0, 0.1, 0.5, 1.0], [0.0, 0.6, 0.9, 1.0], [1.0, 0.8, 0.5, 0.0])


@dsl.pipeline(name="artifact-kinds")
def artifact_kinds():
    report()
