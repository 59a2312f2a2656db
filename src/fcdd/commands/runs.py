"""``fcdd runs [DIR]``: the finished runs below a folder with their headline metrics, or
``--compare A B ...``: chosen runs side by side."""

from __future__ import annotations

import json
from pathlib import Path

from fcdd.commands.base import add_trust_flag, command
from fcdd.runs_index import RUNS, collect, compare, compare_table, index_table, sort_keys, sort_records


def _arguments(p) -> None:
    p.add_argument("dir", nargs="?", default=str(RUNS), metavar="DIR", help=f"folder to search for finished runs (default: {RUNS})")
    p.add_argument("--sort", default="image_auroc", metavar="KEY",
                   help=f"order by this column or metrics.json entry, numbers highest first ({', '.join(sort_keys())}; default: image_auroc)")
    p.add_argument("--compare", nargs="+", metavar="RUN",
                   help="instead: these run folders side by side, one column each: metrics, then the options that differ")
    p.add_argument("--json", action="store_true", help="print JSON instead of a text table")
    add_trust_flag(p)  # a run without config.yaml is read from its snapshot


@command("runs", "list finished runs with their headline metrics, or compare some side by side", _arguments)
def cmd_runs(args) -> None:
    if args.compare:
        comparison = compare([Path(p) for p in args.compare])
        print(json.dumps(comparison, indent=2) if args.json else compare_table(comparison), end="\n" if args.json else "")
        return
    records = sort_records(collect(Path(args.dir)), args.sort)
    if args.json:
        print(json.dumps([r.row() for r in records], indent=2))
    elif not records:
        print(f"no finished runs below {args.dir}")
    else:
        print(index_table(records), end="")
