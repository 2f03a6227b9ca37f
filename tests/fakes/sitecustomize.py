"""Test fakes for hpsearch's processes: Python imports this file at start-up in every process that has
this folder on ``PYTHONPATH`` (the command under test, and the Ray workers it starts, which inherit
its environment). The product reads no test variable; these patches wrap its functions as they load.

- ``HPSEARCH_FAKE_FAIL_ABOVE_LR=x``: building a network whose learning rate is above ``x`` raises
  (a trial whose code fails).
- ``HPSEARCH_FAKE_SEARCH_SETUP_ERROR=text``: setting up the search's searcher raises ValueError(text), in
  the driver, as soon as the search starts.
- ``HPSEARCH_FAKE_ENCODE_ERROR=text``: encoding the trials' data, which runs while Ray starts, raises
  ValueError(text).
- ``HPSEARCH_FAKE_EPOCH_SECONDS=s``: each trial report first sleeps ``s`` seconds (trials long enough
  to be stopped or killed mid-way).
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
import time


def _fail_above_learning_rate(module):  # noqa: ANN001, ANN202
    limit = os.environ.get("HPSEARCH_FAKE_FAIL_ABOVE_LR")
    if not limit:
        return
    build = module.build_network

    @functools.wraps(build)
    def build_network(config, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if float(config.get("learning_rate", 0)) > float(limit):
            raise RuntimeError("injected failure for tests")
        return build(config, *args, **kwargs)

    module.build_network = build_network


def _slow_reports(module):  # noqa: ANN001, ANN202
    seconds = float(os.environ.get("HPSEARCH_FAKE_EPOCH_SECONDS", "0"))
    if not seconds:
        return
    report = module._score_and_report

    @functools.wraps(report)
    def score_and_report(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        time.sleep(seconds)
        return report(*args, **kwargs)

    module._score_and_report = score_and_report


def _failing_searcher(module):  # noqa: ANN001, ANN202
    text = os.environ.get("HPSEARCH_FAKE_SEARCH_SETUP_ERROR")
    if not text:
        return

    def searcher(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise ValueError(text)

    module._searcher = searcher


def _failing_encoding(module):  # noqa: ANN001, ANN202
    text = os.environ.get("HPSEARCH_FAKE_ENCODE_ERROR")
    if not text:
        return

    def encode_and_import_tune(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise ValueError(text)

    module.encode_and_import_tune = encode_and_import_tune


PATCHES = {"search.network.mlp": _fail_above_learning_rate, "search.tuning.trainable": _slow_reports,
           "search.tuning.tuner": _failing_searcher, "search.pipeline": _failing_encoding}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds the patched modules as Python would, and applies the patch once a module has run."""

    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        if name not in PATCHES or path is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module):  # noqa: ANN001, ANN202
            run(module)
            PATCHES[name](module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _PatchAfterImport())
