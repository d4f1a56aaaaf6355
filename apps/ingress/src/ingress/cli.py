"""`aiserve`: the platform's command line (the justfile's recipes call it).

aiserve validate FLEET                      check a fleet file: what runs where, GPU budgets
aiserve render FLEET [--out FILE]           the fleet's Serve config (YAML)
aiserve render FLEET --kuberay-dir DIR      write the RayService, aliases and kustomization
aiserve render FLEET --kuberay-dir DIR --check   exit 1 if those files are not current
aiserve image-packages FLEET ARCH           what the ARCH image installs (--format build-args
                                            gives `docker build` arguments)
aiserve serve [FLEET]                       run the fleet locally on an embedded Ray
aiserve apply [FLEET]                       push an edited fleet to the running `aiserve serve`
                                            (user_config changes reload in place)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from serve_common.embedded_ray import prepare_embedded_ray

prepare_embedded_ray()  # before anything imports ray (the gateway module does)

from ingress.fleet import FleetError, load_fleet  # noqa: E402
from ingress.render_serve import render_serve_config  # noqa: E402

DEFAULT_FLEET = "fleets/local.yaml"


def _dump(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=100)


def cmd_validate(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.fleet)
    print(f"fleet '{fleet.name}': OK — {len(fleet.models)} services, {len(fleet.groups)} groups")
    for m in fleet.models:
        g = fleet.group(m.group)
        where = f"{g.name} ({g.arch})" if g else "any node"
        print(
            f"  {m.name:<12} {m.route:<12} {m.kind:<10} gpu={m.gpu_fraction:<5g} on {where}:"
            f" {', '.join(m.model_names)}"
        )
    cards, _ = fleet.card_plan()
    if cards:
        print("GPU budgets (fraction; estimated GB used/budget):")
        for card in cards:
            print(f"  {card.describe()}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.fleet)
    if args.kuberay_dir:
        from ingress.render_kuberay import write_kuberay

        changed = write_kuberay(fleet, args.kuberay_dir, check=args.check)
        if args.check:
            if changed:
                names = ", ".join(str(p) for p in changed)
                print(
                    f"out of date: {names}\n  run: aiserve render {args.fleet} "
                    f"--kuberay-dir {args.kuberay_dir}",
                    file=sys.stderr,
                )
                return 1
            print(f"{args.kuberay_dir}: up to date with {args.fleet}")
        else:
            for p in changed:
                print(f"wrote {p}")
            if not changed:
                print(f"{args.kuberay_dir}: already up to date")
        if not args.out:
            return 0
    elif args.check:
        print("error: --check needs --kuberay-dir", file=sys.stderr)
        return 2
    text = _dump(render_serve_config(fleet))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_image_packages(args: argparse.Namespace) -> int:
    import json

    from ingress.images import ImageError, image_plan

    fleet = load_fleet(args.fleet)
    try:
        plan = image_plan(fleet, args.arch, Path(args.root) if args.root else None)
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(plan.to_dict(), indent=2))
    elif args.format == "build-args":
        # Meant for $(...) in a shell: no quoting survives that, so values hold no spaces
        # (lists are comma-separated) and empty ones are left to the Dockerfile's defaults.
        args = {k: v for k, v in plan.build_args().items() if v}
        bad = [k for k, v in args.items() if any(c.isspace() for c in v)]
        if bad:
            print(f"error: build args with spaces: {', '.join(bad)}", file=sys.stderr)
            return 2
        print(" ".join(f"--build-arg {k}={v}" for k, v in args.items()))
    elif args.format == "export-args":
        print(" ".join(plan.export_args()))
    else:
        print(f"image '{args.arch}' for fleet '{fleet.name}' (base {plan.base_image})")
        print(f"  models:     {', '.join(plan.models) or '(none: Ray, Serve and the gateway)'}")
        print(f"  packages:   {', '.join(plan.packages)}  (+ every member's code, no deps)")
        print(f"  extras:     {', '.join(plan.extras) or '-'}")
        if plan.torch_packages:
            print(f"  torch:      {', '.join(plan.torch_packages)} from {plan.torch_index}")
            print(f"  pruned:     {', '.join(plan.prune)} (the lock's CUDA build)")
        if plan.vllm_version:
            print(
                f"  vllm:       {plan.vllm_version} built from source for "
                f"{plan.vllm_target_device} {','.join(plan.gpu_targets)}"
            )
        print(f"  uv export --frozen --no-dev {' '.join(plan.export_args())}")
        print(f"  locked:     {len(plan.locked)} distributions")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ingress.local import run_local

    return run_local(load_fleet(args.fleet), port=args.port, host=args.host)


def cmd_apply(args: argparse.Namespace) -> int:
    from ingress.local import NotRunningError, apply_local

    try:
        return apply_local(load_fleet(args.fleet), timeout_s=args.timeout)
    except NotRunningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aiserve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a fleet file")
    v.add_argument("fleet", nargs="?", default=DEFAULT_FLEET)
    v.set_defaults(func=cmd_validate)
    r = sub.add_parser("render", help="render the Serve config")
    r.add_argument("fleet", nargs="?", default=DEFAULT_FLEET)
    r.add_argument("--out", help="file to write (default: stdout)")
    r.add_argument("--kuberay-dir", help="write the KubeRay manifests into this folder")
    r.add_argument("--check", action="store_true", help="with --kuberay-dir: only compare")
    r.set_defaults(func=cmd_render)
    i = sub.add_parser("image-packages", help="what one GPU arch's image installs")
    i.add_argument("fleet")
    i.add_argument("arch", choices=["cpu", "cuda", "rocm", "xpu"])
    i.add_argument(
        "--format", choices=["text", "json", "build-args", "export-args"], default="text"
    )
    i.add_argument("--root", help="workspace root (default: the folder with uv.lock above cwd)")
    i.set_defaults(func=cmd_image_packages)
    s = sub.add_parser("serve", help="run a fleet locally on an embedded Ray")
    s.add_argument("fleet", nargs="?", default=DEFAULT_FLEET)
    s.add_argument("--port", type=int, default=None, help="HTTP port (default: the fleet's)")
    s.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    s.set_defaults(func=cmd_serve)
    a = sub.add_parser("apply", help="apply an edited fleet to the running local platform")
    a.add_argument("fleet", nargs="?", default=DEFAULT_FLEET)
    a.add_argument("--timeout", type=float, default=1800, help="seconds to wait for RUNNING")
    a.set_defaults(func=cmd_apply)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
