"""The best-config report: its content, its layout (Markdown and HTML) and its figures.

The face: the names other packages use, each with its module, which is imported when the name is first
asked for (``search._lazy_face``)."""

from search import _lazy_face

_FACE = {
    "REPORT_HTML": "content", "render_report": "content", "summary_json": "content",
    "markdown_table": "layout", "sections": "layout",
}
__all__ = sorted(_FACE)
__getattr__ = _lazy_face(__name__, _FACE)
