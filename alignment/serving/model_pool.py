"""The shared generation model of the app: one base model in memory, with the LoRA adapters of the runs that
students look at loaded on demand, and the reward models that score them.

Every Compare, arena and ranking-candidate request generates with this one model under one lock (a 135M model
generates a batch about as fast as one answer on a CPU, and two copies would halve the memory per copy for no
gain), and on one thread (``ModelPool.run``). Adapters are loaded by run directory and modification time, so a
run that is retrained is reloaded; the least recently used adapters are unloaded beyond ``max_adapters`` (30
students, several runs each).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import threading
from collections import OrderedDict
from pathlib import Path


def _stamp(adapter: Path) -> str:
    """A short name for one version of an adapter directory (PEFT adapter names cannot hold dots or slashes)."""
    weights = adapter / "adapter_model.safetensors"
    mtime = weights.stat().st_mtime_ns if weights.is_file() else 0
    return "a" + hashlib.sha1(f"{adapter.resolve()}|{mtime}".encode()).hexdigest()[:12]


@contextlib.contextmanager
def base_only(model):
    """Generate with the base weights: adapters off when ``model`` is a PeftModel."""
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield
    else:
        yield


def _on_model_thread(method):
    """Run a ``ModelPool`` method on the pool's model thread (``ModelPool.run``), wherever it is called from."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return self.run(method, self, *args, **kwargs)
    return wrapper


class ModelPool:
    """The base model plus adapters and reward scorers, loaded on demand (module docstring).

    Args:
        session: the ``alignment.session.Session`` (model source and tokenizer).
        max_adapters: adapters kept loaded at once; max_scorers: reward models kept loaded at once (4: the
            class's proxy and gold pair and one student's, about 0.5 GB each).

    Every use of the model runs on the pool's one thread (``run``), which serialises them; ``lock`` guards the
    pool's state there. Never hold ``lock`` on another thread while waiting for ``run``: the model thread would
    wait for it.
    """

    def __init__(self, session, max_adapters: int = 24, max_scorers: int = 4):
        from concurrent.futures import ThreadPoolExecutor

        self.session, self.max_adapters, self.max_scorers = session, max_adapters, max_scorers
        self.lock = threading.RLock()
        self._thread: threading.Thread | None = None  # the model thread, once started
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-pool",
                                            initializer=lambda: setattr(self, "_thread", threading.current_thread()))
        self._model = None
        self._adapters: OrderedDict[str, str] = OrderedDict()  # stamp -> adapter dir, least recently used first
        self._scorers: OrderedDict[str, object] = OrderedDict()

    def run(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on the pool's one model thread, and its result (its exception re-raised).

        Every forward pass of the server goes through this thread. PyTorch's CPU kernels run on an OpenMP team
        per calling thread, and an idle team keeps spinning for a while: with generation spread over Gradio's
        worker threads, two teams fought over the 2 cores and a Compare request took 12.7 s instead of 7.8 s
        (measured here, embedded SmolLM2, 3 prompts x 2 models x 96 tokens). Calls from the model thread itself
        run directly.
        """
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        # with the caller's context variables: a progress callback (gr.Progress) reports to the caller's event
        return self._executor.submit(contextvars.copy_context().run, fn, *args, **kwargs).result()

    @_on_model_thread
    def model(self, adapters: dict[str, str | Path] | None = None):
        """The shared model with ``adapters`` (``{display name: adapter directory}``) loaded.

        Returns:
            ``(model, names)``: ``names`` maps each display name to the adapter name to use with
            ``alignment.evaluation.compare_answers`` (``"base"`` stays ``"base"``).
        """
        from peft import PeftModel

        from ..models import load_causal_lm

        self.session.setup_model()
        with self.lock:
            if self._model is None:
                self._model = load_causal_lm(self.session.source, self.session.tokenizer, seed=self.session.seed).eval()
            names = {"base": "base"}
            for display, adapter in (adapters or {}).items():
                adapter = Path(adapter)
                stamp = _stamp(adapter)
                if stamp not in self._adapters:
                    if isinstance(self._model, PeftModel):
                        self._model.load_adapter(str(adapter), adapter_name=stamp)
                    else:
                        self._model = PeftModel.from_pretrained(self._model, str(adapter), adapter_name=stamp)
                    self._model.eval()
                self._adapters[stamp] = str(adapter)
                self._adapters.move_to_end(stamp)
                names[display] = stamp
            keep = set(names.values())
            while len(self._adapters) > self.max_adapters:
                old = next((s for s in self._adapters if s not in keep), None)
                if old is None:
                    break
                self._model.delete_adapter(old)
                del self._adapters[old]
            return self._model, names

    @_on_model_thread
    def scorer(self, adapter: str | Path):
        """The ``RewardScorer`` of a reward run's adapter directory (cached by directory and modification time).

        Raises:
            RuntimeError: no trained reward model there.
        """
        from ..pipeline import load_reward_scorer

        adapter = Path(adapter)
        key = _stamp(adapter)
        with self.lock:
            if key not in self._scorers:
                self._scorers[key] = load_reward_scorer(self.session, adapter)
                while len(self._scorers) > self.max_scorers:
                    self._scorers.popitem(last=False)
            self._scorers.move_to_end(key)
            return self._scorers[key]

    @_on_model_thread
    def generate_candidates(self, prompt, k: int, max_new_tokens: int, seed: int) -> list[str]:
        """``k`` base-model answers to ``prompt`` at temperatures evenly spread over 0.5-1.2, one seed each."""
        from ..generation import generate

        model, _ = self.model()
        temps = [0.5 + 0.7 * i / max(1, k - 1) for i in range(k)]
        out = []
        with self.lock, base_only(model):
            for i, t in enumerate(temps):
                g = generate(model, self.session.tokenizer, [prompt], max_new_tokens, t, seed=seed + i, batch_size=1)[0]
                out.append(g.text or "(empty answer)")
        return out
