"""Alignment Lab: the Gradio teaching app (Learn, Data, Annotate, Train, Compare, Report).

Usage::

    python app.py                          # http://127.0.0.1:7860, embedded SmolLM2 offline
    python app.py --port 8080 --host 0.0.0.0 --auth teacher:secret
    python app.py --host 0.0.0.0 --auth teacher:s,ana:p1,ben:p2 --teacher teacher --data-dir ../shared/data
    CLASS7_AUTH=teacher:secret python app.py --share

The app is a view on ``AlignmentComparisonManager`` (class7_1.py): the model loads once and is shared by every
tab and every student; trainings are queued (fair across students) and run in worker processes, or as Ray
tasks with ``--ray-address``; each student's runs go to their workspace; annotations go to
``<output-dir>/collected_annotations.json`` (SQLite behind it). With ``--auth`` each login is a student's
identity, the ``--teacher`` logins have the class-wide controls, and failed logins are limited
(``ui/login_guard.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from alignment.data import BUILTIN, DATA_DIR
from alignment.models import DEFAULT_MODEL


def parse_auth(value: str | None):
    """``"user:pass"`` (or several, comma-separated) -> list of (user, pass) for ``launch(auth=...)``."""
    if not value:
        return None
    pairs = []
    for item in value.split(","):
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise SystemExit("--auth / CLASS7_AUTH expects user:password (several separated by commas)")
        pairs.append((user, password))
    return pairs


def parse_data_dirs(values: list[str] | None, env: str | None = None) -> list[str]:
    """``--data-dir`` values (each may hold several, comma-separated), or else ``$CLASS7_DATA_DIRS``: the extra
    folders the Data tab may read. Each must be an existing directory."""
    env = os.environ.get("CLASS7_DATA_DIRS") if env is None else env
    items = [d.strip() for v in (values or [env or ""]) for d in v.split(",") if d.strip()]
    missing = [d for d in items if not os.path.isdir(os.path.expanduser(d))]
    if missing:
        raise SystemExit(f"--data-dir / CLASS7_DATA_DIRS: not a directory: {', '.join(missing)}")
    return [os.path.expanduser(d) for d in items]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Alignment Lab: annotate, train and compare PPO, DPO and GRPO in a browser.")
    p.add_argument("--host", default="127.0.0.1", help="interface to serve on (0.0.0.0 for the whole network)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also create a public gradio.live link (needs internet)")
    p.add_argument("--auth", default=os.environ.get("CLASS7_AUTH"),
                   help="user:password for basic login (default: $CLASS7_AUTH; none if unset)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="hub id, local checkpoint dir, or 'tiny' (tests)")
    p.add_argument("--dataset", default=BUILTIN)
    p.add_argument("--data-dir", action="append", default=[], metavar="DIR",
                   help="a folder whose files students may load in the Data tab (besides data/ and the output "
                        "folder); repeatable or comma-separated (default: $CLASS7_DATA_DIRS, comma-separated)")
    p.add_argument("--teacher", default=os.environ.get("CLASS7_TEACHERS"), metavar="NAME[,NAME]",
                   help="logins with the controls that affect everyone (class dataset, stopping others' trainings); "
                        "default: $CLASS7_TEACHERS, else the first --auth user")
    p.add_argument("--output-dir", default="outputs")
    p.add_argument("--preset", default="classroom", choices=["classroom", "quick"])
    p.add_argument("--eval-samples", type=int, default=1,
                   help="answers per evaluation prompt in the Report tab (default 1: a report holds the shared model "
                        "for about 40 s here, 4 about 2 minutes; the class report of `make run` uses 4)")
    p.add_argument("--eval-prompts", default=None, metavar="FILE",
                   help="the Report tab's evaluation prompts (default data/eval_prompts.json, 30 prompts; "
                        "data/eval_prompts_60.json has 30 more: narrower intervals, twice the time)")
    p.add_argument("--workers", type=int, default=None,
                   help="training jobs that run at once, each in its own process (default: 1 on a CPU, one per GPU)")
    p.add_argument("--ray-address", default=os.environ.get("CLASS7_RAY_ADDRESS"), metavar="ADDRESS",
                   help="run the training jobs as Ray tasks on this cluster ('auto', 'ray://host:10001'; "
                        "'local' starts a private instance) instead of local processes (default: $CLASS7_RAY_ADDRESS)")
    p.add_argument("--ray-cpus-per-job", type=float, default=2, help="Ray: CPUs each job asks for (default 2)")
    p.add_argument("--ray-gpus-per-job", type=float, default=0, help="Ray: GPUs each job asks for (default 0)")
    return p.parse_args(argv)


def parse_teachers(value: str | None, auth) -> list[str]:
    """``--teacher`` names (comma-separated), each one of the ``--auth`` logins; default the first login."""
    if not auth:
        return []
    users = [u for u, _ in auth]
    names = [n.strip() for n in (value or "").split(",") if n.strip()] or users[:1]
    unknown = [n for n in names if n not in users]
    if unknown:
        raise SystemExit(f"--teacher / CLASS7_TEACHERS: no --auth login named {', '.join(unknown)}")
    return names


def default_workers(value: int | None) -> int:
    """``--workers``, else one per GPU when there are GPUs, else 1 (a CPU server: two trainings at once would
    each run at about half speed, and the Compare tab's generation would slow down too). Must be 1..64."""
    if value is None:
        import torch

        value = torch.cuda.device_count() or 1
    if not 1 <= value <= 64:
        raise SystemExit(f"--workers must be between 1 and 64, got {value}")
    return value


def build(args, auth=None):
    """The manager and the Blocks app (model resolved and the shared generation model loaded)."""
    from class7_1 import AlignmentComparisonManager
    from ui import create_app

    manager = AlignmentComparisonManager(args.model, args.dataset, args.output_dir, args.preset,
                                         data_dirs=[DATA_DIR, *parse_data_dirs(getattr(args, "data_dir", None))],
                                         teachers=parse_teachers(getattr(args, "teacher", None), auth),
                                         workers=default_workers(getattr(args, "workers", None)),
                                         ray_address=getattr(args, "ray_address", None),
                                         ray_num_cpus=getattr(args, "ray_cpus_per_job", 2),
                                         ray_num_gpus=getattr(args, "ray_gpus_per_job", 0),
                                         eval_samples=getattr(args, "eval_samples", 1),
                                         eval_prompts=getattr(args, "eval_prompts", None))
    manager.setup_models()
    manager.load_preference_datasets()
    manager.pool.model()  # load once now, so the first click is not slow
    return manager, create_app(manager)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "transformers", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    auth = parse_auth(args.auth)
    from ui import LAUNCH_KWARGS
    from ui.login_guard import guarded_launch_kwargs

    manager, demo = build(args, auth)
    # With a login: failed logins limited per user and address, /gradio_api/cancel and /reset need a login
    # (ui/login_guard.py). Without one, just auth=None.
    # No allowed_paths: Gradio would serve every file under them to anyone logged in (ui.common.downloadable)
    demo.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port, share=args.share,
                                                   **guarded_launch_kwargs(auth), **LAUNCH_KWARGS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
