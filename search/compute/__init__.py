"""What a process trains on: its share of CPUs and GPUs, Keras' backend and threads, and SIGTERM as Ctrl-C.

The face: the names other packages use, each with its module, which is imported when the name is first
asked for (``search._lazy_face``)."""

from search import _lazy_face

_FACE = {
    "modules_hidden": "backend", "use_backend": "backend", "Compute": "devices", "QUIET_TENSORFLOW": "devices",
    "alive_nodes": "devices", "cluster_devices": "devices", "cpu_slots": "devices", "describe": "devices",
    "hide_gpus_in_process": "devices", "in_background_silenced": "devices", "keep_driver_off_gpus": "devices",
    "largest_node": "devices", "native_stderr_silenced": "devices", "put_back_variables": "devices",
    "quiet_tensorflow": "devices", "stderr_restored": "devices", "trials_on_gpu": "devices",
    "use_precision": "devices", "raise_if_stopped": "signals", "sigint_handler_kept": "signals",
    "sigterm_as_ctrl_c": "signals", "stop_requested": "signals",
}
__all__ = sorted(_FACE)
__getattr__ = _lazy_face(__name__, _FACE)
