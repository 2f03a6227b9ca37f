"""Ray: the run's session (a private local Ray, or a cluster it joins), and searches as Ray Jobs.

The face: the names other packages use, each with its module, which is imported when the name is first
asked for (``search._lazy_face``)."""

from search import _lazy_face

_FACE = {
    "follow": "jobs", "logs": "jobs", "status": "jobs", "stop": "jobs", "submit": "jobs", "ray_session": "session",
    "use_cluster_token": "session",
}
__all__ = sorted(_FACE)
__getattr__ = _lazy_face(__name__, _FACE)
