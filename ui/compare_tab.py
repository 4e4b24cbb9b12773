"""Compare tab: the models side by side, a blind arena with a leaderboard, and an optional LLM judge.

Side by side: base and every trained policy answer one prompt with identical decoding settings (same seed),
each scored by three referees (the proxy reward model, the gold reward model, the rules), with length and KL to
base. Arena: two anonymous answers, the student votes, identities are revealed after the vote, votes feed a
Bradley-Terry/Elo leaderboard. The server hands out each pair under a random round id and accepts one vote per
round, from the student it was handed to (the login under ``--auth``), so votes cannot name arbitrary models or be
repeated. Judge (on demand): an OpenAI-compatible model judges each trained model against base, in both orders.
"""

from __future__ import annotations

import gradio as gr

import difflib
import html

from .common import FREE, MODEL, error_text, fmt, identity

MODELS = ["base", "dpo", "ppo", "grpo"]

EXPLAIN = ("Three referees score each answer, **higher = better**. **Proxy RM**: the reward model PPO and GRPO were "
           "trained to maximise, so it favours them (a biased referee). **Gold RM**: a second reward model, trained "
           "on the other half of the pairs; no model was trained on it, so it is an independent referee (a small one: it can be wrong too). **Rules**: exact "
           "checks written for the example prompts (the right fact, the word count, a refusal...): 1 = passes, "
           "0.5 = partly, 0 = fails; a prompt you type yourself usually has none. — means that referee cannot score "
           "this answer. A high proxy score that the other two do not share is a sign of reward hacking. "
           "**KL to base** = log π_model(y|x) − log π_base(y|x) of *this* answer, in nats: how "
           "much more likely the model made this answer than base did (0 for base); averaged over many answers "
           "sampled at a temperature above 0 it estimates the KL divergence at that temperature, the distance the "
           "policy moved (a greedy answer, temperature 0, gives only this one answer's log-ratio).")

SCORE_HEADERS = ["model", "proxy RM (PPO/GRPO trained on it)", "gold RM (no model trained on it)",
                 "rules (1 = passes)", "length (tokens)", "ended with EOS", "KL to base (nats)"]
NONE = "—"  # a referee that cannot score this answer


def _score(value) -> str:
    return NONE if value is None else fmt(value)


def score_rows(answers: dict) -> list[list]:
    """The Scores table: per model the three referees' scores (``NONE`` where one has none), length, EOS, KL."""
    return [[m, _score(r["reward"]), _score(r["gold_reward"]), _score(r["rule_score"]), r["length_tokens"],
             r["ended_with_eos"], fmt(r["kl_to_base"])] for m, r in answers.items()]


def score_note(answers: dict) -> str:
    """Why a referee's column shows ``NONE`` (the same for every model), or "" when all three scored."""
    first = next(iter(answers.values()), None)
    if first is None:
        return ""
    why = ["no reward model yet (train one in the Train tab)" if first["reward"] is None
           else "this reward run trained no gold reward model" if first["gold_reward"] is None else "",
           "this prompt has no rule (the example prompts have one)" if first["rule_score"] is None else ""]
    why = [w for w in why if w]
    return f"{NONE} in the table: {'; '.join(why)}." if why else ""


def diff_html(base: str, other: str) -> str:
    """``other`` as escaped HTML with the words it adds to ``base`` marked (``<mark>``) and the words it drops
    struck through (``<del>``): a word-level ``difflib`` diff."""
    a, b = base.split(), other.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            out.append(f"<del>{html.escape(' '.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            out.append(f"<mark>{html.escape(' '.join(b[j1:j2]))}</mark>")
        if op == "equal":
            out.append(html.escape(" ".join(b[j1:j2])))
    return " ".join(out)


def differences_html(answers: dict) -> str:
    """The 'what changed' panel: each aligned model's answer against base, or why identical answers still
    have different KL."""
    if "base" not in answers or len(answers) < 2:
        return ""
    base = answers["base"]["response"]
    others = {m: r for m, r in answers.items() if m != "base"}
    if all(r["response"] == base for r in others.values()):
        moved = any(abs(r.get("kl_to_base") or 0.0) > 1e-6 for r in others.values())
        return ("<p><b>All models gave the same answer.</b> The same seed and decoding settings picked the same "
                + ("tokens, yet the KL column differs: each model gives those same tokens a different probability, "
                   "and KL measures that difference, not the text.</p>" if moved else
                   "tokens, and the KL column is 0 too: the models give these tokens the same probabilities.</p>"))
    rows = [f"<div class='cmp-diff'><b>{html.escape(m.upper())}</b> vs base: "
            + ("<i>same answer as base</i>" if r["response"] == base else diff_html(base, r["response"])) + "</div>"
            for m, r in others.items()]
    return ("<p><mark>highlighted</mark> = words the model added, <del>struck</del> = words of base it dropped.</p>"
            + "".join(rows))


def _examples(manager) -> list[tuple[str, str]]:
    try:
        prompts = manager.datasets["eval_prompts"] if manager.datasets else []
    except Exception:
        prompts = []
    if not prompts:
        from alignment.data import load_eval_prompts

        prompts = load_eval_prompts()
    return [(f"[{p['category']}] {p['prompt'][:70]}", p["prompt"]) for p in prompts]


def create_compare_tab(manager) -> dict:
    gr.Markdown("## Compare the models\nSame prompt, same decoding settings, same random seed: differences come "
                "from the weights.\n\n" + EXPLAIN)
    with gr.Row():
        example = gr.Dropdown(_examples(manager), value=None, label="Example prompts by category", scale=2)
        prompt = gr.Textbox(label="Prompt", lines=2, scale=3, elem_id="cmp-prompt")
    with gr.Row():
        max_tokens = gr.Slider(8, 256, value=manager.COMPARE_MAX_NEW_TOKENS, step=8, label="Max new tokens",
                               info="Enough for a complete short answer; fewer is faster")
        temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.1, label="Temperature (0 = greedy)")
        seed = gr.Number(value=manager.seed, precision=0, label="Seed")
    with gr.Accordion("Which runs: the class models, or your own", open=False, elem_id="cmp-runs"):
        with gr.Row():
            picks = {m: gr.Dropdown([("class model", "class")], value="class", label=label, elem_id=f"cmp-run-{m}",
                                    allow_custom_value=False)
                     for m, label in (("dpo", "DPO"), ("ppo", "PPO"), ("grpo", "GRPO"), ("reward", "Reward model (scores)"))}
            refresh = gr.Button("↻ my runs", scale=0, elem_id="cmp-refresh")
    go = gr.Button("Generate side by side", variant="primary", elem_id="cmp-go")
    cmp_status = gr.Markdown()
    boxes = {}
    with gr.Row():
        for name in MODELS:
            with gr.Column(min_width=200):
                boxes[name] = gr.Textbox(label=name.upper(), lines=8, interactive=False, elem_id=f"cmp-{name}")
    table = gr.Dataframe(headers=SCORE_HEADERS, label="Scores", elem_id="cmp-scores", wrap=True,  # px: on a phone
                         column_widths=["72px", "168px", "168px", "112px", "112px", "112px", "128px"])  # it scrolls
    diff = gr.HTML(elem_id="cmp-diff")

    with gr.Accordion("Blind arena: which answer is better?", open=True):
        voter_name = gr.Textbox(label="Your name (optional)", max_length=64,
                           info="Not verified: anyone can type any name. With a login the name is your login.")
        arena_go = gr.Button("New blind pair for this prompt", elem_id="arena-go")
        with gr.Row():
            ans1 = gr.Textbox(label="Answer 1", lines=6, interactive=False, elem_id="arena-1")
            ans2 = gr.Textbox(label="Answer 2", lines=6, interactive=False, elem_id="arena-2")
        with gr.Row():
            v1 = gr.Button("Answer 1 is better", elem_id="arena-v1")
            vt = gr.Button("Tie", elem_id="arena-vt")
            v2 = gr.Button("Answer 2 is better", elem_id="arena-v2")
        reveal = gr.Markdown(elem_id="arena-reveal")
        board = gr.Dataframe(headers=["model", "Bradley-Terry", "95% interval", "Elo", "games", "wins", "ties",
                                      "losses"], label="Leaderboard from students' votes", elem_id="arena-board",
                             wrap=True)
        board_note = gr.Markdown(elem_id="arena-board-note")
    arena_state = gr.State(None)

    with gr.Accordion("LLM judge (optional, OpenAI-compatible)", open=False):
        judge_info = gr.Markdown(manager.judge()[1])
        judge_go = gr.Button("Judge the side-by-side answers against base")
        judge_table = gr.Dataframe(headers=["model", "verdict vs base", "order a,b", "order b,a", "error"])
    last_answers = gr.State(None)

    # ------------------------------------------------------------------ handlers
    def on_compare(request: gr.Request, p, n, t, s, who, *chosen):
        user = identity(request, who) or None
        try:
            res = manager.compare_models(p, int(n), float(t), int(s) if s is not None else None,
                                         runs=dict(zip(picks, chosen)), user=user)
        except Exception as exc:
            return [error_text(exc)] + [gr.update()] * (len(MODELS) + 2) + [None]
        busy = {j["method"] for j in manager.training_status(user, detail=False)["jobs"] if j["state"] in ("queued", "running")}
        missing = {m: "(your run of it is training or queued: pick it when it ends)" if m in busy else "(not trained yet)"
                   for m in MODELS}
        short = " ".join(p.split())
        short = short if len(short) <= 60 else short[:57] + "…"
        texts = [gr.update(value=res[m]["response"] if m in res else missing[m], label=f"{m.upper()} · to: {short}")
                 for m in MODELS]
        return [score_note(res), *texts, score_rows(res), differences_html(res), {"prompt": p.strip(), "answers": res}]

    def run_options(request: gr.Request, who):
        choices = manager.run_choices(identity(request, who) or None)
        return [gr.update(choices=choices[m]) for m in picks]

    def new_pair(p, who, request: gr.Request):
        try:
            rnd = manager.arena_round(p, identity(request, who))
        except Exception as exc:
            return error_text(exc), "", "", None
        return "Vote for the better answer; the models are revealed after your vote.", *rnd["answers"], rnd

    def vote(state, who, winner, request):
        if not state:
            return "Ask for a blind pair first.", gr.update(), gr.update(), None
        try:
            res = manager.arena_vote(state["round_id"], winner, identity(request, who))
        except ValueError as exc:
            return error_text(exc), gr.update(), gr.update(), None
        a, b = res["models"]
        said = {"A": f"Answer 1 ({a})", "B": f"Answer 2 ({b})", "tie": "a tie"}[winner]
        return (f"You chose {said}. Answer 1 was **{a.upper()}**, answer 2 was **{b.upper()}**.",
                _board_rows(res["leaderboard"]), _board_note(res["leaderboard"]), None)

    def vote_handler(winner):
        def handler(request: gr.Request, state, who):
            return vote(state, who, winner, request)
        return handler

    def _board_rows(board):
        return [[r["model"], r["bradley_terry"], "-" if r["ci_low"] is None else f"{r['ci_low']:.0f}–{r['ci_high']:.0f}",
                 r["elo"], r["games"], r["wins"], r["ties"], r["losses"]] for r in board]

    def _board_note(board):
        n = board[0]["votes"] if board else 0
        return (f"Based on **{n} vote{'s' if n != 1 else ''}** from the class. Ratings on the Elo scale (mean 1000); "
                "the 95% interval comes from resampling the votes and shows how much a rating could still move "
                "(a model without games has none). With few votes the intervals are wide and the order can change.")

    def on_judge(state):
        judge, info = manager.judge()
        if judge is None:
            return info, []
        if not state:
            return "Generate side-by-side answers first.", []
        base = state["answers"].get("base", {}).get("response", "")
        rows = []
        for m, r in state["answers"].items():
            if m == "base":
                continue
            v = judge.judge(state["prompt"], r["response"], base)
            orders = {o["order"]: o["verdict"] for o in v["orders"]}
            verdict = {"A": f"{m} better", "B": "base better", "tie": "tie", None: "no verdict"}[v["verdict"]]
            rows.append([m, verdict, orders.get("a,b"), orders.get("b,a"), v["error"] or ""])
        return info, rows

    # ------------------------------------------------------------------ wiring
    example.change(lambda e: e or gr.update(), example, prompt, api_visibility="private", **FREE)
    refresh.click(run_options, voter_name, list(picks.values()), api_visibility="private", **FREE)
    go.click(on_compare, [prompt, max_tokens, temperature, seed, voter_name, *picks.values()],
             [cmp_status, *boxes.values(), table, diff, last_answers], api_visibility="private", **MODEL)
    arena_go.click(new_pair, [prompt, voter_name], [reveal, ans1, ans2, arena_state], api_visibility="private", **MODEL)
    for btn, winner in ((v1, "A"), (vt, "tie"), (v2, "B")):
        btn.click(vote_handler(winner), [arena_state, voter_name], [reveal, board, board_note, arena_state],
                  api_visibility="private", **FREE)
    judge_go.click(on_judge, last_answers, [judge_info, judge_table], api_visibility="private",
                   concurrency_id="judge", concurrency_limit=1)  # paid API calls: one judging at a time

    def compare(prompt: str, max_new_tokens: int = manager.COMPARE_MAX_NEW_TOKENS, temperature: float = 0.7,
                seed: int = 42, runs: dict | None = None, name: str = "", request: gr.Request = None) -> dict:
        """Answers of base and each policy: {model: {response, reward, gold_reward, rule_score, length_tokens,
        ended_with_eos, kl_to_base}}: ``reward`` by the proxy reward model (the one PPO and GRPO were trained on),
        ``gold_reward`` by the gold one (trained on other pairs, no model trained on it; None when the reward run
        trained none), ``rule_score`` 1 / 0.5 / 0 by the prompt's rule (None without one: the example prompts and
        the built-in training questions have rules). ``runs``: ``{method: run key}`` of your own runs to use
        instead of the class models (keys from /training_status)."""
        try:
            return manager.compare_models(prompt, int(max_new_tokens), float(temperature), int(seed), runs=runs,
                                          user=identity(request, name) or None)
        except (ValueError, OverflowError) as exc:
            raise gr.Error(str(exc)) from exc

    def arena_round(prompt: str, voter: str = "", request: gr.Request = None) -> dict:
        """A blind pair for ``prompt``: ``{"round_id", "prompt", "answers": [a, b]}`` (models hidden until the vote)."""
        try:
            return manager.arena_round(prompt, identity(request, voter))
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    def arena_vote(round_id: str, winner: str, voter: str = "", request: gr.Request = None) -> dict:
        """Vote once on a pair from ``/arena_round`` (winner 'A', 'B' or 'tie'), as the student it was handed to:
        ``{"models": [a, b], "leaderboard": [...]}``."""
        try:
            res = manager.arena_vote(round_id, winner, identity(request, voter))
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return {"models": res["models"], "leaderboard": res["leaderboard"]}

    gr.api(compare, api_name="compare", **MODEL)
    gr.api(arena_round, api_name="arena_round", **MODEL)
    gr.api(arena_vote, api_name="arena_vote", **FREE)
    return {"example": example, "prompt": prompt, "go": go, "table": table, **{f"answer_{m}": b for m, b in boxes.items()},
            "arena_go": arena_go, "answer_1": ans1, "answer_2": ans2, "vote_1": v1, "vote_tie": vt, "vote_2": v2,
            "reveal": reveal, "leaderboard": board, "voter": voter_name,
            "judge": judge_go, "judge_table": judge_table, "picks": picks, "refresh": refresh,
            "run_options": run_options}
