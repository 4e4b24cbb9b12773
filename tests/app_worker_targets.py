"""Worker entry points for the app tests (``LocalProcessBackend(entry=...)``): the real ``run_job`` with one
thing broken, run in the worker process."""


def out_of_memory(spec: dict) -> dict:
    """``run_job`` whose DPO trainer raises as an out-of-memory error would, inside the training function."""
    import alignment.trainers
    from alignment.serving.worker import run_job

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    alignment.trainers.train_dpo = boom  # the registry imports the trainer when the job calls it
    return run_job(spec)


SAMPLING_S = 6.0


def slow_ppo(spec: dict) -> dict:
    """``run_job`` whose PPO rollouts wait ``SAMPLING_S`` before sampling (so a step is long enough to watch in a
    browser), unless Stop was pressed (the run's ``STOP`` file), as the real sampler stops at the next token."""
    import time
    from pathlib import Path

    from alignment.serving.worker import run_job
    from alignment.trainers import ppo

    real_generate = ppo.generate
    stop = Path(spec["run_dir"]) / "STOP"

    def slow_generate(*args, **kwargs):
        deadline = time.time() + SAMPLING_S
        while time.time() < deadline and not stop.exists():
            time.sleep(0.05)
        return real_generate(*args, **kwargs)

    ppo.generate = slow_generate
    return run_job(spec)
