"""The local platform: an embedded Ray (no cluster, no Kubernetes) running a fleet's Serve config.

`run_local(fleet)` starts Ray in this process, deploys every application, prints progress while
models load, then the URLs and a ready table, and blocks until Ctrl-C, when it shuts Serve and
Ray down cleanly. While it runs, a state file (`local_state_path()`) holds the embedded
cluster's address, so that `apply_local(fleet)` (`aiserve apply`, `just apply`) from another
shell can push an edited fleet to it: Serve then reconfigures in place what only changed
`user_config` (the model reloads beside the old one, no request fails) and rolls replicas
whose code, args or resources changed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ingress.fleet import Fleet
from ingress.render_serve import render_serve_config
from serve_common.embedded_ray import OFFLINE_ENV, prepare_embedded_ray


class NotRunningError(RuntimeError):
    """No local platform to apply to."""


def local_state_path() -> Path:
    """Where a running `aiserve serve` records its cluster (`AI_LOCAL_STATE` overrides)."""
    env = os.environ.get("AI_LOCAL_STATE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "ai-inference" / "local-platform.json"


def _write_state(config: dict[str, Any]) -> Path:
    import ray

    path = local_state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "pid": os.getpid(),
        "gcs_address": ray.get_runtime_context().gcs_address,
        # Ray >= 2.5x turns token auth on for a new local cluster; a client must opt in
        # (RAY_AUTH_MODE=token, token from ~/.ray/auth_token) before it imports ray.
        "auth_mode": os.environ.get("RAY_AUTH_MODE", ""),
        "http_options": config["http_options"],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)
    return path


def _read_state() -> dict[str, Any]:
    path = local_state_path()
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise NotRunningError(
            f"no running local platform (state file {path}); start one with `just serve`"
        ) from None
    return dict(state)


def _status_line(apps: dict[str, Any]) -> str:
    return "  ".join(f"{name}={st}" for name, st in apps.items())


def app_states() -> dict[str, tuple[str, str]]:
    """Each Serve application's state and message, on the Ray this process is connected to."""
    from ray import serve

    out: dict[str, tuple[str, str]] = {}
    for name, app in serve.status().applications.items():
        out[name] = (str(app.status).split(".")[-1], app.message or "")
    return out


def start(
    fleet: Fleet,
    *,
    port: int | None = None,
    host: str | None = None,
    offline: bool = True,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Start embedded Ray + Serve and submit the fleet's Serve config; return that config."""
    prepare_embedded_ray()
    import ray
    from ray.serve._private import api as serve_api
    from ray.serve.config import ProxyLocation
    from ray.serve.schema import ServeDeploySchema

    config = render_serve_config(fleet)
    config["http_options"]["port"] = port or config["http_options"]["port"]
    config["http_options"]["host"] = host or "127.0.0.1"
    config["proxy_location"] = "HeadOnly"
    env = dict(OFFLINE_ENV) if offline else {}
    os.environ.update(env)
    if not ray.is_initialized():
        wanted = sum(
            float(a["deployments"][0]["ray_actor_options"].get("num_cpus", 1))
            for a in config["applications"]
        )
        ray.init(
            address="local",
            num_cpus=num_cpus or max(8, int(wanted) + 4),
            include_dashboard=False,
            runtime_env={"env_vars": env},
            log_to_driver=os.environ.get("AI_RAY_LOGS", "1") == "1",
        )
    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(), proxy_location=ProxyLocation.HeadOnly
    )
    client.deploy_apps(schema, _blocking=False)
    return config


def deploy_config(config: dict[str, Any]) -> None:
    """Submit a rendered Serve config to the Serve instance this process is connected to
    (declarative, like `serve deploy`: apps not in it are removed)."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config), _blocking=False)


def apply_local(fleet: Fleet, *, timeout_s: float = 1800, out: TextIO = sys.stdout) -> int:
    """Push `fleet` to the running local platform and wait until every app is RUNNING."""
    state = _read_state()
    if state.get("auth_mode"):
        os.environ.setdefault("RAY_AUTH_MODE", state["auth_mode"])
    prepare_embedded_ray()
    import ray

    config = render_serve_config(fleet)
    config["http_options"] = state["http_options"]  # a running Serve keeps its HTTP options
    config["proxy_location"] = "HeadOnly"
    ray.init(address=state["gcs_address"], log_to_driver=False)
    try:
        before = app_states()
        deploy_config(config)
        print(f"applied fleet '{fleet.name}' to the local platform (pid {state['pid']})", file=out)
        time.sleep(1.0)  # let the controller pick the new config up before polling states
        states = wait_ready(config, timeout_s=timeout_s, out=out)
    finally:
        ray.shutdown()  # disconnects; the cluster belongs to `aiserve serve`
    removed = sorted(set(before) - set(states))
    if removed:
        print(f"removed: {', '.join(removed)}", file=out)
    failed = {n: s for n, s in states.items() if s[0] != "RUNNING"}
    for name, (state_name, msg) in failed.items():
        print(f"  {name}: {state_name} {msg}", file=out)
    return 1 if failed else 0


def wait_ready(
    config: dict[str, Any],
    *,
    timeout_s: float = 1800,
    out: TextIO = sys.stdout,
    poll_s: float = 2.0,
) -> dict[str, tuple[str, str]]:
    """Print each application's state as it changes until all are RUNNING (or one failed)."""
    names = [a["name"] for a in config["applications"]]
    started = time.monotonic()
    last: dict[str, str] = {}
    last_print = 0.0
    while True:
        states = app_states()
        elapsed = time.monotonic() - started
        for name in names:
            state, msg = states.get(name, ("PENDING", ""))
            if last.get(name) != state:
                note = f"  {msg.splitlines()[0][:120]}" if msg and state != "RUNNING" else ""
                print(f"[{elapsed:6.1f}s] {name:<12} {state}{note}", file=out, flush=True)
                last[name] = state
                last_print = elapsed
        done = [
            n for n in names if states.get(n, ("",))[0] in ("RUNNING", "DEPLOY_FAILED", "UNHEALTHY")
        ]
        if len(done) == len(names):
            return states
        if elapsed - last_print >= 15:
            waiting = [f"{n} {last.get(n, 'PENDING')}" for n in names if n not in done]
            print(f"[{elapsed:6.1f}s] still loading: {', '.join(waiting)}", file=out, flush=True)
            last_print = elapsed
        if elapsed > timeout_s:
            raise TimeoutError(f"not ready after {timeout_s:.0f}s: {_status_line(last)}")
        time.sleep(poll_s)


def ready_table(fleet: Fleet, config: dict[str, Any], states: dict[str, tuple[str, str]]) -> str:
    http = config["http_options"]
    host = "127.0.0.1" if http["host"] in ("0.0.0.0", "::") else http["host"]
    base = f"http://{host}:{http['port']}"
    rows = [("SERVICE", "STATE", "MODELS", "URL (OpenAI base_url)")]
    for m in fleet.models:
        state = states.get(m.name, ("?", ""))[0]
        rows.append((m.name, state, ", ".join(m.model_names), f"{base}{m.route}/v1"))
    rows.append(("gateway", states.get("gateway", ("?", ""))[0], "all of the above", f"{base}/v1"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    failed = [f"  {n}: {msg}" for n, (s, msg) in states.items() if s != "RUNNING" and msg]
    return "\n".join(lines + (["", "Problems:", *failed] if failed else []))


def stop() -> None:
    import ray
    from ray import serve

    try:
        if ray.is_initialized():
            serve.shutdown()
    finally:
        ray.shutdown()


def run_local(
    fleet: Fleet, *, port: int | None = None, host: str | None = None, out: TextIO = sys.stdout
) -> int:
    print(
        f"Starting fleet '{fleet.name}' on an embedded Ray "
        f"({len(fleet.models)} services + gateway)...",
        file=out,
        flush=True,
    )
    stopping = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stopping["flag"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        config = start(fleet, port=port, host=host)
        states = wait_ready(config, out=out)
        print("\n" + ready_table(fleet, config, states) + "\n", file=out, flush=True)
        _write_state(config)
        print(
            "Edit the fleet and run `just apply` (aiserve apply FLEET) to reload in place.",
            file=out,
        )
        print("Serving. Press Ctrl-C to stop.", file=out, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nStopping: shutting down Serve and Ray...", file=out, flush=True)
        return 0
    finally:
        state = local_state_path()
        try:
            if json.loads(state.read_text()).get("pid") == os.getpid():
                state.unlink()
        except (OSError, ValueError, AttributeError):
            pass
        stop()
        print("Stopped.", file=out, flush=True)
