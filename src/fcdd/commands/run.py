"""``fcdd run``: one model per nominal class per seed, then the aggregated table.

The jobs run here one after another, as Ray tasks (``--executor ray``), or split over the tasks
of a scheduler array (``--shard K/N`` in each, then ``--aggregate`` once).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fcdd.commands.base import add_config_flags, command, config_from_args
from fcdd.executors import EXECUTORS, ExecutorSettings
from fcdd.runner import Shard, aggregate_experiment, run_experiment
from fcdd.runs_index import run_folder


def _arguments(parser) -> None:
    add_config_flags(parser, skip=("category",))
    parser.add_argument("--classes", help="comma-separated nominal classes (default: every category folder / class)")
    parser.add_argument("--seeds", type=int, default=1, help="runs per class with seeds seed, seed+1, ... (default: 1)")
    jobs = parser.add_argument_group("where the jobs run", "every class x seed is a job with its own resumable run folder")
    jobs.add_argument("--executor", choices=EXECUTORS.names(), default="sequential",
                      help="sequential: one after another in this process; ray: each a Ray task, as many at once "
                           "as the cluster has resources for (pip install 'fcdd[ray]') (default: sequential)")
    jobs.add_argument("--ray-address", metavar="ADDRESS",
                      help="Ray cluster to join, e.g. HOST:6379 (default: $RAY_ADDRESS, a cluster `ray start` began "
                           "on this machine, else a new local Ray on this machine's CPUs and GPUs)")
    jobs.add_argument("--cpus-per-job", type=float, metavar="X", help="CPUs Ray reserves for each job (default: 1)")
    jobs.add_argument("--gpus-per-job", type=float, metavar="X",
                      help="GPUs Ray reserves for each job; a fraction shares one GPU between jobs (default: 0)")
    jobs.add_argument("--shard", metavar="K/N",
                      help="run only part K of N of the jobs (index mod N = K-1), e.g. $SLURM_ARRAY_TASK_ID/N in a "
                           "scheduler array, and skip the table; needs --out")
    jobs.add_argument("--aggregate", action="store_true",
                      help="write the table of an experiment whose shards have all finished (same options, no --shard)")


@command("run", "train one model per class and seed (resumable) and aggregate the results", _arguments)
def cmd_run(args) -> None:
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    requested = config_from_args(args)
    shard = _shard(args, requested.out)
    settings = _executor_settings(args)
    if args.executor != "sequential" and settings.gpus_per_job == 0 and requested.device.startswith("cuda"):
        raise ValueError(f"--device {requested.device} with --executor {args.executor} needs --gpus-per-job: "
                         "jobs given no GPU see none")
    if args.aggregate:
        aggregate_experiment(requested, classes, args.seeds)
        _print_table(Path(requested.out))
        return
    with run_folder(requested) as config:
        if config.out != requested.out:
            print(f"experiment folder: {config.out}", file=sys.stderr)
        run_experiment(config, classes, args.seeds, args.executor, settings, shard, args.trust_pickle)
    out = Path(config.out)
    if shard:
        print(f"shard {shard} of {out} done; once every shard is, the table: the same command with --aggregate "
              "instead of --shard", file=sys.stderr)
        return
    _print_table(out)


def _print_table(out: Path) -> None:
    print((out / "results.md").read_text())
    print(f"table: {out / 'results.csv'}")


def _shard(args, out: str | None) -> Shard | None:
    """``--shard`` checked with ``--aggregate``: both need the one folder every shard writes into."""
    if args.shard is not None and args.aggregate:
        raise ValueError("give --shard K/N (run a part) or --aggregate (the table afterwards), not both")
    if (args.shard is not None or args.aggregate) and not out:
        raise ValueError(f"{'--shard' if args.shard is not None else '--aggregate'} needs --out RUN_DIR: "
                         "every shard must write into the same folder")
    return Shard.parse(args.shard) if args.shard is not None else None


def _executor_settings(args) -> ExecutorSettings:
    """The cluster flags; refused for the sequential executor, which would silently ignore them."""
    flags = {"--ray-address": args.ray_address, "--cpus-per-job": args.cpus_per_job, "--gpus-per-job": args.gpus_per_job}
    given = [flag for flag, value in flags.items() if value is not None]
    if given and args.executor == "sequential":
        raise ValueError(f"{', '.join(given)}: only with a cluster executor (--executor ray); the sequential one "
                         "runs every job in this process")
    defaults = ExecutorSettings()
    return ExecutorSettings(
        address=args.ray_address,
        cpus_per_job=defaults.cpus_per_job if args.cpus_per_job is None else args.cpus_per_job,
        gpus_per_job=defaults.gpus_per_job if args.gpus_per_job is None else args.gpus_per_job,
    )
