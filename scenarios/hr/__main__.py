"""Run the HR scenario's tool server: ``python -m scenarios.hr [--db PATH] [--http --host H --port P]``.

Serves over stdio by default (what MCP clients launch) or streamable HTTP with ``--http``. Builds the
company database first when it does not exist. Logs go to stderr; stdout belongs to the stdio protocol.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from scenarios.hr import default_db_path, ensure_database
from scenarios.hr.db import build_database, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.hr", description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None,
                        help=f"company database (default {default_db_path()}, from $ROUTINE_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=7, help="seed used when the database is built (default 7)")
    parser.add_argument("--build", action="store_true", help="(re)build the database, print its table sizes, exit")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    parser.add_argument("--log-level", default="INFO", help="logging level on stderr (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = args.db.expanduser() if args.db else default_db_path()
    if args.build:
        build_database(path, seed=args.seed)
        for table, n in counts(path).items():
            print(f"{table:20} {n:>8}")
        return 0
    from scenarios.hr.server import create_server

    server = create_server(ensure_database(path, seed=args.seed))
    if args.http:
        server.run(transport="http", host=args.host, port=args.port, show_banner=False)
    else:
        server.run(transport="stdio", show_banner=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
