"""Blind arena: students vote between two anonymous answers; votes become a leaderboard.

Votes live in ``arena_votes.json`` (same atomic, locked writes as the annotations). Two ratings are shown:

* Bradley-Terry strengths (Bradley & Terry 1952): P(i beats j) = p_i / (p_i + p_j), fitted by the MM
  algorithm of Hunter (2004, Eq. 3), p_i <- W_i / sum_j n_ij / (p_i + p_j), with ties counted as half a win
  each way and a 0.5-win prior against every other model so that undefeated models stay finite. Reported as
  ``400 * log10(p_i) + 1000`` (Elo scale, mean strength 1000).
* Online Elo (K=32, base 1000, order of votes), the chess-style estimate students may know.

The leaderboard says how many votes it rests on and gives each Bradley-Terry rating a 95% bootstrap interval
(percentile method, Efron & Tibshirani 1993: votes resampled with replacement, ratings refitted), so a class
sees when a ranking is still a coin flip.

``students_evaluation`` turns the votes into the report's evaluator ``students``: per aligned model, the
Bradley-Terry probability that it beats base, P = p_m / (p_m + p_base), with a bootstrap interval over votes.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from .annotations import atomic_write_json

ARENA_VOTES = ("A", "B", "tie")


def bradley_terry(votes: list[dict], models: list[str], iters: int = 200, prior: float = 0.5) -> dict[str, float]:
    """Bradley-Terry strengths on the Elo scale. ``votes``: ``{"model_a", "model_b", "winner": "A"|"B"|"tie"}``."""
    idx = {m: i for i, m in enumerate(models)}
    n = len(models)
    wins = [[prior if i != j else 0.0 for j in range(n)] for i in range(n)]  # wins[i][j]: i over j
    for v in votes:
        a, b = idx.get(v["model_a"]), idx.get(v["model_b"])
        if a is None or b is None or a == b:
            continue
        w = {"A": (1.0, 0.0), "B": (0.0, 1.0), "tie": (0.5, 0.5)}[v["winner"]]
        wins[a][b] += w[0]
        wins[b][a] += w[1]
    p = [1.0] * n
    for _ in range(iters):
        new = []
        for i in range(n):
            denom = sum((wins[i][j] + wins[j][i]) / (p[i] + p[j]) for j in range(n) if j != i)
            new.append(sum(wins[i]) / denom if denom else p[i])
        g = math.exp(sum(math.log(x) for x in new) / n)  # fix the scale: geometric mean 1
        p = [x / g for x in new]
    return {m: 1000 + 400 * math.log10(p[idx[m]]) for m in models}


def elo(votes: list[dict], models: list[str], k: float = 32.0) -> dict[str, float]:
    """Sequential Elo ratings (expected score 1 / (1 + 10^((R_b - R_a)/400)))."""
    r = {m: 1000.0 for m in models}
    for v in votes:
        a, b = v["model_a"], v["model_b"]
        if a not in r or b not in r:
            continue
        ea = 1 / (1 + 10 ** ((r[b] - r[a]) / 400))
        sa = {"A": 1.0, "B": 0.0, "tie": 0.5}[v["winner"]]
        r[a] += k * (sa - ea)
        r[b] -= k * (sa - ea)
    return r


def bootstrap_intervals(votes: list[dict], models: list[str], n_boot: int = 200, seed: int = 0,
                        level: float = 0.95) -> dict[str, tuple[float | None, float | None]]:
    """Percentile bootstrap interval of each model's Bradley-Terry rating: ``n_boot`` resamples of the votes
    (with replacement, same size), each refitted (100 MM iterations). ``(None, None)`` without votes."""
    if not votes:
        return {m: (None, None) for m in models}
    rng = random.Random(seed)
    fits = [bradley_terry([rng.choice(votes) for _ in votes], models, iters=100) for _ in range(n_boot)]
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    out = {}
    for m in models:
        r = sorted(f[m] for f in fits)
        out[m] = (round(r[int(lo_q * (n_boot - 1))], 1), round(r[int(math.ceil(hi_q * (n_boot - 1)))], 1))
    return out


class ArenaVotes:
    """The vote file. ``add`` validates and appends under the lock; ``leaderboard`` ranks the models."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(self.path) + ".lock", timeout=30)

    def votes(self) -> list[dict]:
        with self.lock:
            if not self.path.is_file():
                return []
            return json.loads(self.path.read_text(encoding="utf-8"))["votes"]

    def add(self, prompt: str, model_a: str, model_b: str, winner: str, voter: str = "") -> dict:
        """Record one vote. Raises ValueError for an unknown winner or a model voted against itself."""
        if winner not in ARENA_VOTES:
            raise ValueError(f"Vote must be one of {ARENA_VOTES}; got {winner!r}")
        if model_a == model_b:
            raise ValueError("The two answers come from the same model")
        vote = {"id": uuid.uuid4().hex, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "voter": voter, "prompt": prompt, "model_a": model_a, "model_b": model_b, "winner": winner}
        with self.lock:
            data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {"votes": []}
            data["votes"].append(vote)
            atomic_write_json(self.path, data)
        return vote

    def leaderboard(self, models: list[str], n_boot: int = 200, seed: int = 0) -> list[dict]:
        """Rows sorted by Bradley-Terry rating: model, rating, its 95% bootstrap interval (``ci_low``,
        ``ci_high``; None without votes), Elo, games, wins, ties, losses, and ``votes`` (all votes counted)."""
        votes = self.votes()
        models = sorted(set(models) | {v["model_a"] for v in votes} | {v["model_b"] for v in votes})
        bt, el = bradley_terry(votes, models), elo(votes, models)
        ci = bootstrap_intervals(votes, models, n_boot, seed)
        played = {v["model_a"] for v in votes} | {v["model_b"] for v in votes}
        rows = []
        for m in models:
            w, t, lo = _head_to_head(votes, m)
            lo_hi = ci[m] if m in played else (None, None)  # no games: no rating to be sure about
            rows.append({"model": m, "bradley_terry": round(bt[m], 1), "ci_low": lo_hi[0], "ci_high": lo_hi[1],
                         "elo": round(el[m], 1), "games": w + t + lo, "wins": w, "ties": t, "losses": lo,
                         "votes": len(votes)})
        return sorted(rows, key=lambda r: -r["bradley_terry"])


class ArenaRounds:
    """Blind pairs the server handed out and not yet voted on: ``round_id -> {"voter", "prompt", "models"}``.

    A vote names a round, never the models: ``take`` hands a round back once, to the voter it was issued to, so a
    client cannot choose which models its vote counts for or vote twice. At most ``max_open`` rounds are kept
    (the oldest dropped). Thread-safe.
    """

    def __init__(self, max_open: int = 5000):
        import collections
        import threading

        self.max_open = max_open
        self._lock, self._rounds = threading.Lock(), collections.OrderedDict()

    def issue(self, voter: str, prompt: str, models: list[str]) -> str:
        """Remember a round and return its random id (``secrets.token_urlsafe``, 128 bits)."""
        import secrets

        round_id = secrets.token_urlsafe(16)
        with self._lock:
            self._rounds[round_id] = {"voter": voter, "prompt": prompt, "models": list(models)}
            while len(self._rounds) > self.max_open:
                self._rounds.popitem(last=False)
        return round_id

    def take(self, round_id, voter: str) -> dict:
        """The round, removed. Raises ValueError for an id never issued, already used, or issued to another
        voter (the round then stays open for its owner)."""
        with self._lock:
            rnd = self._rounds.get(round_id) if isinstance(round_id, str) else None
            if rnd is None or rnd["voter"] != voter:
                raise ValueError("Unknown or already used blind pair: ask for a new pair, then vote once")
            return self._rounds.pop(round_id)

    def put_back(self, round_id: str, rnd: dict) -> None:
        """Reopen a round whose vote could not be recorded."""
        with self._lock:
            self._rounds[round_id] = rnd

    def models(self, round_id: str) -> list[str]:
        """The models behind a round (the tests' referee)."""
        with self._lock:
            return list(self._rounds[round_id]["models"])


def _head_to_head(votes: list[dict], model: str, other: str | None = None) -> tuple[int, int, int]:
    """(wins, ties, losses) of ``model`` in the votes between ``model`` and ``other`` (None: any opponent)."""
    w = t = lo = 0
    for v in votes:
        pair = {v["model_a"], v["model_b"]}
        if model not in pair or (other is not None and pair != {model, other}):
            continue
        if v["winner"] == "tie":
            t += 1
        elif (v["winner"] == "A") == (v["model_a"] == model):
            w += 1
        else:
            lo += 1
    return w, t, lo


def students_evaluation(evaluation: dict, votes: list[dict], models: list[str] | None = None, base: str = "base",
                        n_boot: int = 200, seed: int = 0, level: float = 0.95) -> dict | None:
    """Add the students' blind-arena votes as the evaluator ``students`` to ``evaluation`` (in place).

    What it computes: the Bradley-Terry model (Bradley & Terry 1952, "Rank Analysis of Incomplete Block Designs:
    I. The Method of Paired Comparisons"), fitted to every vote as the arena's leaderboard fits it
    (``bradley_terry``: Hunter's MM algorithm, a tie half a win each way, the 0.5-win prior), over base, the
    evaluated models and every other voted model; per aligned model m, the predicted probability that m beats
    base, P = p_m / (p_m + p_base) = 1 / (1 + 10^((R_base - R_m) / 400)) on the Elo scale, with a percentile
    bootstrap interval (``n_boot`` resamples of the votes with replacement, refitted; Efron & Tibshirani 1993).
    It uses votes between m and other models too (the model is transitive), so it is a prediction, not a count.

    Not the same test as the other evaluators: the votes compare answers to the students' own prompts, not the
    evaluation prompts, each answer sampled with its own seed; and a vote names the class model of that method at
    the time of the vote.

    Args:
        votes: ``ArenaVotes.votes()`` records (``model_a``, ``model_b``, ``winner`` "A" / "B" / "tie").
        models: the aligned models to rate (default every evaluated model but base): pass only those whose
            evaluated run is the class model the votes were cast on.

    Writes, per rated model with at least one vote while base has one too: ``summary["win_rate_vs_base"]
    ["students"]`` = ``{"win_rate"`` (the BT probability), ``"ci_low"``, ``"ci_high"``, ``"half_width"``,
    ``"level"``, ``"n"`` (votes between m and base), ``"wins"``, ``"ties"``, ``"losses"`` (of those votes),
    ``"n_votes"`` (all votes fitted), ``"n_votes_model"`` (votes with m), ``"method"``, ``"tie_rule"``,
    ``"description"}``; and ``evaluation["evaluators"]["students"]`` (votes, models rated, description).

    Returns:
        The ``evaluators["students"]`` entry, or None without votes (nothing is written then).
    """
    if not votes:
        return None
    evaluated = list((evaluation.get("models") or {}))
    rated = [m for m in (models if models is not None else evaluated) if m != base and m in evaluated]
    everyone = sorted(set(evaluated) | {base} | {v["model_a"] for v in votes} | {v["model_b"] for v in votes})
    voted = {v["model_a"] for v in votes} | {v["model_b"] for v in votes}
    rated = [m for m in rated if m in voted and base in voted]

    def win_prob(ratings: dict, m: str) -> float:
        return 1 / (1 + 10 ** ((ratings[base] - ratings[m]) / 400))

    point = bradley_terry(votes, everyone)
    rng = random.Random(seed)
    fits = [bradley_terry([rng.choice(votes) for _ in votes], everyone, iters=100) for _ in range(n_boot)]
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    for m in rated:
        boots = sorted(win_prob(f, m) for f in fits)
        lo, hi = boots[int(lo_q * (n_boot - 1))], boots[int(math.ceil(hi_q * (n_boot - 1)))]
        w, t, lost = _head_to_head(votes, m, base)
        with_m = sum(m in (v["model_a"], v["model_b"]) for v in votes)
        entry = {"win_rate": win_prob(point, m), "ci_low": lo, "ci_high": hi, "half_width": (hi - lo) / 2,
                 "level": level, "n": w + t + lost, "wins": w, "ties": t, "losses": lost, "n_votes": len(votes),
                 "n_votes_model": with_m, "method": "bradley_terry",
                 "tie_rule": "a 'tie' vote counts half a win for each model, as in the arena",
                 "description": (f"Bradley-Terry-predicted probability that {m.upper()} beats base, fitted to "
                                 f"{len(votes)} blind-arena votes ({with_m} with {m.upper()}, {w + t + lost} of them "
                                 f"against base); the votes compare answers to the students' own prompts, not the "
                                 "evaluation prompts")}
        evaluation["models"][m].setdefault("summary", {}).setdefault("win_rate_vs_base", {})["students"] = entry
    stamps = sorted(v["timestamp"] for v in votes if v.get("timestamp"))
    info = {"trained": [], "votes": len(votes), "rated": rated, "models_fitted": everyone,
            "not_rated": [m for m in evaluated if m != base and m not in rated],
            "first_vote": stamps[0] if stamps else None, "last_vote": stamps[-1] if stamps else None,
            "description": (f"the students' blind-arena votes ({len(votes)} vote{'s' * (len(votes) != 1)}) as a "
                            "Bradley-Terry ranking (Bradley & Terry 1952): the win rate is the predicted probability "
                            "of beating base, with a bootstrap interval over votes; the votes compare answers to the "
                            "students' own prompts, not the evaluation prompts, and were cast on the class models")}
    evaluation.setdefault("evaluators", {})["students"] = info
    return info
