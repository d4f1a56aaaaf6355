"""One embedded Ray + Serve for a whole test session (or a benchmark run)."""

from __future__ import annotations

import atexit
import os
import socket
import time
from typing import Any

from serve_common.embedded_ray import OFFLINE_ENV, prepare_embedded_ray

__all__ = ["OFFLINE_ENV", "LocalServe", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServe:
    """Start Ray (local, no cluster) and Serve on 127.0.0.1; deploy apps; shut down at exit."""

    _instance: LocalServe | None = None

    def __init__(self, port: int | None = None, num_cpus: int = 16) -> None:
        self.port = port or int(os.environ.get("AI_TEST_HTTP_PORT", 0)) or free_port()
        self.num_cpus = num_cpus
        self.started = False
        self.apps: dict[str, str] = {}

    @classmethod
    def shared(cls) -> LocalServe:
        if cls._instance is None:
            cls._instance = cls()
            cls._instance.start()
            atexit.register(cls._instance.stop)
        return cls._instance

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        prepare_embedded_ray()
        import ray
        from ray import serve

        os.environ.update(OFFLINE_ENV)
        attempts = 5
        for attempt in range(attempts):
            if ray.is_initialized():
                break
            try:
                # Logical CPUs: replicas reserve a fraction each; the machine may have only 2.
                ray.init(
                    address="local",  # always a fresh embedded cluster, never someone else's
                    num_cpus=self.num_cpus,
                    num_gpus=0,
                    include_dashboard=False,
                    log_to_driver=os.environ.get("AI_TEST_RAY_LOGS") == "1",
                    object_store_memory=256 * 1024 * 1024,
                    runtime_env={"env_vars": dict(OFFLINE_ENV)},
                )
            except Exception:
                # On a loaded machine the raylet can give up waiting for its agents
                # ("node timed out during startup"): start again rather than fail the session.
                ray.shutdown()
                if attempt == attempts - 1:
                    raise
                time.sleep(10 * (attempt + 1))
        http = {"host": "127.0.0.1", "port": self.port, "request_timeout_s": 300}
        for attempt in range(3):
            try:  # Serve gives its proxy 60 s to start, which a loaded machine can miss
                serve.start(http_options=http)
                break
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(10)
        self.started = True

    def deploy(self, app: Any, name: str, route_prefix: str, timeout_s: float = 600) -> str:
        from ray import serve

        started = time.monotonic()
        serve.run(app, name=name, route_prefix=route_prefix, blocking=False)
        self.wait_running(name, timeout_s - (time.monotonic() - started))
        self.apps[name] = route_prefix
        return f"{self.base_url}{route_prefix}"

    def wait_running(self, name: str, timeout_s: float) -> None:
        from ray import serve

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            app = serve.status().applications.get(name)
            status = str(app.status) if app else "MISSING"
            if status.endswith("RUNNING"):
                return
            if status.endswith("DEPLOY_FAILED") or status.endswith("UNHEALTHY"):
                raise RuntimeError(f"app {name} {status}: {app.message if app else ''}")
            time.sleep(0.5)
        raise TimeoutError(f"app {name} not RUNNING after {timeout_s:.0f}s")

    def delete(self, name: str) -> None:
        from ray import serve

        serve.delete(name)
        self.apps.pop(name, None)

    def stop(self) -> None:
        if not self.started:
            return
        import ray
        from ray import serve

        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            self.started = False
