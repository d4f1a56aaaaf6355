"""Settings for an embedded Ray started from this workspace's virtualenv (tests, `aiserve
serve`, benchmarks).

Ray >= 2.44 notices a driver started by `uv run` and starts every worker through `uv run`
too, inside a copy of the working directory (its `working_dir` upload). There the copy has no
`.venv`, so uv builds an empty one and every worker dies with `No module named 'ray'`
("worker startup repeatedly failed"). The workspace venv already is the environment the
workers need, so the embedded cluster turns that hook off. Ray reads the switch when it is
imported: call `prepare_embedded_ray()` before the first `import ray`. It also gives Ray's
agents and workers more time to start (the raylet inherits these variables).
"""

from __future__ import annotations

import os
import sys
import warnings

EMBEDDED_RAY_ENV = {
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    # A loaded 2-core machine can take minutes to start Ray's agents and workers; the raylet
    # otherwise aborts the node ("Timed out waiting for file .../metrics_agent_port_...").
    "RAY_agent_register_timeout_ms": "300000",
    "RAY_worker_register_timeout_seconds": "180",
}

#: No model hub: models come from packages, local folders or the HF cache.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def prepare_embedded_ray() -> None:
    """Set `EMBEDDED_RAY_ENV` (an operator's own value wins)."""
    for key, value in EMBEDDED_RAY_ENV.items():
        os.environ.setdefault(key, value)
    if "ray" in sys.modules:
        from ray._private import ray_constants

        if ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV and os.environ.get(
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV"
        ) in ("0", "false", "False"):
            warnings.warn(
                "ray was imported before prepare_embedded_ray(); workers started under "
                "`uv run` may fail to start",
                RuntimeWarning,
                stacklevel=2,
            )
