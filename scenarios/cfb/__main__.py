"""Build or serve the CFB scenario: ``python -m scenarios.cfb --build [--out DIR]`` or
``python -m scenarios.cfb [--data DIR] [--http --host H --port P]``.

The build reads the installed ``nestful-wrapper`` package (``pip install --no-deps nestful-wrapper``) and
writes the scenario folder (default ``scenarios/cfb/data``); serving answers from that folder over stdio
(what MCP clients launch) or streamable HTTP. Logs go to stderr; stdout belongs to the stdio protocol.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scenarios.serving import add_transport_arguments, configure_logging, serve


def main(argv: list[str] | None = None) -> int:
    from scenarios.cfb.build import DEFAULT_OUT

    parser = argparse.ArgumentParser(prog="python -m scenarios.cfb", description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="build the scenario folder from nestful-wrapper, print counts, exit")
    parser.add_argument("--out", "--data", dest="data", type=Path, default=DEFAULT_OUT,
                        help=f"the scenario folder to build or serve (default {DEFAULT_OUT})")
    parser.add_argument("--limit", type=int, default=None, help="build only N evenly spaced samples (for tests)")
    add_transport_arguments(parser, port=8766)
    args = parser.parse_args(argv)
    configure_logging(args)
    if args.build:
        from scenarios.cfb.build import build
        from scenarios.cfb.source import SourceMissing

        try:
            counts = build(args.data.expanduser(), limit=args.limit)
        except SourceMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for split in ("train", "test"):
            c = counts[split]
            print(f"{split:5} {c['samples']:>5} samples {c['calls']:>6} calls {c['sequences']:>4} tool sequences")
        print(f"written to {args.data}")
        return 0
    from scenarios.cfb.server import create_server

    try:
        server = create_server(args.data.expanduser())
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return serve(server, args)


if __name__ == "__main__":
    raise SystemExit(main())
