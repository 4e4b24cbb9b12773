"""Where a job's ``run_job`` runs: a spawned local process (default) or a Ray task on a cluster.

Both backends take the same plain-JSON spec and the same entry point (``alignment.serving.worker.run_job``), and
answer the dispatcher's three questions: is it done, how did it end, and kill it. Neither schedules anything:
the queue decides what starts (``alignment.serving.queue``) and, on a cluster, Ray decides where.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ENTRY = "alignment.serving.worker:run_job"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _resolve(entry: str):
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def describe_exit(code: int | None) -> str:
    """``"exit code 1"``, ``"killed by SIGKILL"`` (a negative exit code is the signal that ended the process)."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class LocalProcessBackend:
    """Each job in its own fresh Python process (``python -m alignment.serving.worker SPEC``: spawned, never
    forked, so it shares none of the server's threads, locks or models). A crash, an out-of-memory kill or a
    hang ends only that process. Its stdout and stderr go to the run's ``worker.log``.

    Args:
        entry: ``"module:function"`` the process runs with the spec (tests pass one that crashes on purpose).
    """

    name = "local"

    def __init__(self, entry: str = ENTRY, gpus: int | None = None):
        self.entry = entry
        if gpus is None:
            import torch

            gpus = torch.cuda.device_count()
        self.gpus = list(range(gpus))
        self._gpu_of: dict = {}  # handle -> the GPU it was given

    def _free_gpu(self) -> int | None:
        busy = {g for h, g in self._gpu_of.items() if h.poll() is None}
        self._gpu_of = {h: g for h, g in self._gpu_of.items() if h.poll() is None}
        return next((g for g in self.gpus if g not in busy), None)

    def start(self, spec: dict):
        run_dir = Path(spec["run_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        spec_path = run_dir / "job.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
               "TOKENIZERS_PARALLELISM": "false"}
        gpu = self._free_gpu() if self.gpus else None
        if gpu is not None:  # one GPU per job: --workers defaults to the number of GPUs
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        with open(run_dir / "worker.log", "ab") as log:
            handle = subprocess.Popen([sys.executable, "-m", "alignment.serving.worker", "--entry", self.entry,
                                       str(spec_path)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      cwd=str(PROJECT_ROOT), env=env)
        if gpu is not None:
            self._gpu_of[handle] = gpu
        return handle

    def done(self, handle) -> bool:
        return handle.poll() is not None

    def outcome(self, handle) -> str | None:
        """None when the process ended normally, else what ended it ("exit code 1", "killed by SIGKILL")."""
        code = handle.wait(5)
        return None if code == 0 else describe_exit(code)

    def kill(self, handle) -> None:
        """SIGTERM, then SIGKILL if it is still alive 0.3 s later."""
        if handle.poll() is None:
            handle.terminate()
            try:
                handle.wait(0.3)
            except subprocess.TimeoutExpired:
                handle.kill()
                handle.wait(2)


def _ray_task(entry: str, spec: dict) -> dict:
    return _resolve(entry)(spec)


class RayBackend:
    """Each job as one Ray task on an existing cluster (``ray start --head`` / ``ray start --address=...``), with
    ``num_cpus`` / ``num_gpus`` per task: Ray places it on a node with room.

    The run directory is written where the spec says, so the output folder must be the same shared filesystem
    path on every node (NFS, or one machine), and the project must be at the same path (its folder is put on the
    tasks' ``PYTHONPATH``). ``address="local"`` starts a private local instance instead
    (``ray.init(num_cpus=2, include_dashboard=False)``, the tests).

    Raises:
        ImportError: Ray is not installed; ConnectionError (from Ray): no cluster at ``address``.
    """

    name = "ray"

    def __init__(self, address: str = "auto", num_cpus: float = 1, num_gpus: float = 0, entry: str = ENTRY):
        import ray

        self.ray, self.entry = ray, entry
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                                         os.environ.get("PYTHONPATH")])),
                            "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}}
        if not ray.is_initialized():
            if address == "local":
                ray.init(num_cpus=2, include_dashboard=False, runtime_env=env, log_to_driver=False)
            else:
                ray.init(address=address, runtime_env=env, log_to_driver=False)
        # max_retries=0: a job that died is reported failed, not silently run again
        self._task = ray.remote(max_retries=0)(_ray_task).options(num_cpus=num_cpus, num_gpus=num_gpus)

    def start(self, spec: dict):
        return self._task.remote(self.entry, spec)

    def done(self, handle) -> bool:
        ready, _ = self.ray.wait([handle], timeout=0)
        return bool(ready)

    def outcome(self, handle) -> str | None:
        try:
            self.ray.get(handle, timeout=5)
            return None
        except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, TaskCancelledError...
            return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ''}"

    def kill(self, handle) -> None:
        self.ray.cancel(handle, force=True)
