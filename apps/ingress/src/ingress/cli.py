"""`aiserve`: the platform's command line (the justfile's recipes call it).

aiserve validate FLEET        check a fleet file, print what it runs where
aiserve render FLEET [--out]  write the Serve config for a fleet (YAML)
aiserve serve [FLEET]         run the fleet locally on an embedded Ray (Ctrl-C stops)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from ingress.fleet import FleetError, load_fleet
from ingress.render_serve import render_serve_config

DEFAULT_FLEET = "fleets/local.yaml"


def _dump(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=100)


def cmd_validate(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.fleet)
    print(f"fleet '{fleet.name}': OK — {len(fleet.models)} services, {len(fleet.groups)} groups")
    for m in fleet.models:
        where = f"{m.group} ({fleet.group(m.group).arch})" if m.group else "any CPU node"  # type: ignore[union-attr]
        print(
            f"  {m.name:<12} {m.route:<12} {m.kind:<10} gpu={m.gpu_fraction:<5g} on {where}:"
            f" {', '.join(m.model_names)}"
        )
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.fleet)
    text = _dump(render_serve_config(fleet))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ingress.local import run_local

    return run_local(load_fleet(args.fleet), port=args.port, host=args.host)


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
    r.set_defaults(func=cmd_render)
    s = sub.add_parser("serve", help="run a fleet locally on an embedded Ray")
    s.add_argument("fleet", nargs="?", default=DEFAULT_FLEET)
    s.add_argument("--port", type=int, default=None, help="HTTP port (default: the fleet's)")
    s.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    s.set_defaults(func=cmd_serve)
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
