"""Can a Serve config's replicas be placed on a running Ray cluster? Name the ones that cannot.

Ray leaves a replica whose resources no node has pending, and Serve says so only after its
slow-startup delay (30 s by default) in a generic message. This check compares each
deployment's `ray_actor_options` with every live node's total resources and names the missing
resource and, given the fleet, the worker group and node that would have provided it.
"""

from __future__ import annotations

from typing import Any

from ingress.fleet import Fleet

_EPS = 1e-9


def replica_demand(deployment: dict[str, Any]) -> dict[str, float]:
    """The logical resources one replica of a Serve config deployment asks for."""
    opts = deployment.get("ray_actor_options") or {}
    demand = {"CPU": float(opts.get("num_cpus", 1))}
    if opts.get("num_gpus"):
        demand["GPU"] = float(opts["num_gpus"])
    for name, amount in (opts.get("resources") or {}).items():
        demand[name] = float(amount)
    return {k: v for k, v in demand.items() if v > 0}


def _fmt(resources: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))


def placement_problems(
    config: dict[str, Any], nodes: list[dict[str, Any]], fleet: Fleet | None = None
) -> dict[str, str]:
    """Application name → why its replicas fit on no live node (`nodes` as `ray.nodes()`)."""
    capacities = [
        {k: float(v) for k, v in (n.get("Resources") or {}).items()}
        for n in nodes
        if n.get("Alive", True)
    ]
    groups = {g.resource: g for g in fleet.groups} if fleet else {}
    problems: dict[str, str] = {}
    for app in config.get("applications", []):
        for dep in app.get("deployments", []):
            demand = replica_demand(dep)
            if any(all(c.get(k, 0) + _EPS >= v for k, v in demand.items()) for c in capacities):
                continue
            missing = [
                k for k, v in demand.items() if not any(c.get(k, 0) + _EPS >= v for c in capacities)
            ]
            why = (
                f"no live node has {', '.join(missing)}"
                if missing
                else "no single live node has all of them"
            )
            hints = []
            for name in missing:
                g = groups.get(name)
                if g is not None:
                    where = f" (node {g.node})" if g.node else ""
                    hints.append(f"worker group {g.name!r}{where} is not in the cluster")
            hint = f": {'; '.join(hints)}" if hints else ""
            problems[app["name"]] = (
                f"application {app['name']!r} (deployment {dep.get('name')}) cannot be placed: "
                f"each replica needs {_fmt(demand)} and {why}{hint}"
            )
    return problems
