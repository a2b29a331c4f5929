"""Run the HR scenario's tool server: ``python -m scenarios.hr [--db PATH] [--http --host H --port P]``.

Serves over stdio by default (what MCP clients launch) or streamable HTTP with ``--http``. Builds the
company database first when it does not exist. Logs go to stderr; stdout belongs to the stdio protocol.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scenarios.hr import default_db_path, ensure_database
from scenarios.hr.db import build_database, counts
from scenarios.serving import add_transport_arguments, configure_logging, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.hr", description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None,
                        help=f"company database (default {default_db_path()}, from $ROUTINE_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=7, help="seed used when the database is built (default 7)")
    parser.add_argument("--build", action="store_true", help="(re)build the database, print its table sizes, exit")
    add_transport_arguments(parser, port=8765)
    args = parser.parse_args(argv)
    configure_logging(args)
    path = args.db.expanduser() if args.db else default_db_path()
    if args.build:
        build_database(path, seed=args.seed)
        for table, n in counts(path).items():
            print(f"{table:20} {n:>8}")
        return 0
    from scenarios.hr.server import create_server

    return serve(create_server(ensure_database(path, seed=args.seed)), args)


if __name__ == "__main__":
    raise SystemExit(main())
