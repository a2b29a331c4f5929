"""What a scenario's ``python -m`` entry point shares: the transport options and serving with them.

A scenario server speaks stdio by default (what MCP clients launch) or streamable HTTP; logs go to stderr,
because stdout belongs to the stdio protocol.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def add_transport_arguments(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"HTTP port (default {port})")
    parser.add_argument("--log-level", default="INFO", help="logging level on stderr (default INFO)")


def configure_logging(args: argparse.Namespace) -> None:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(server: Any, args: argparse.Namespace) -> int:
    """Run a FastMCP ``server`` on the transport ``args`` name; returns the exit code."""
    if args.http:
        server.run(transport="http", host=args.host, port=args.port, show_banner=False)
    else:
        server.run(transport="stdio", show_banner=False)
    return 0
