"""Compare tab: the models side by side, a blind arena with a leaderboard, and an optional LLM judge.

Side by side: base and every trained policy answer one prompt with identical decoding settings (same seed),
each with its reward-model score, length and KL to base. Arena: two anonymous answers, the student votes,
identities are revealed after the vote, votes feed a Bradley-Terry/Elo leaderboard. Judge: an OpenAI-compatible
model judges each trained model against base, in both orders.
"""

from __future__ import annotations

import gradio as gr

from .common import error_text, fmt

MODELS = ["base", "dpo", "ppo", "grpo"]


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
                "from the weights. **Score** is the reward model's; **KL** is log π(y|x) − log π_base(y|x) of that "
                "answer in nats (how surprising the answer is for the base model).")
    with gr.Row():
        example = gr.Dropdown(_examples(manager), value=None, label="Example prompts by category", scale=2)
        prompt = gr.Textbox(label="Prompt", lines=2, scale=3, elem_id="cmp-prompt")
    with gr.Row():
        max_tokens = gr.Slider(8, 128, value=manager.config_for("dpo").max_completion_length, step=8,
                               label="Max new tokens")
        temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.1, label="Temperature (0 = greedy)")
        seed = gr.Number(value=manager.seed, precision=0, label="Seed")
    go = gr.Button("Generate side by side", variant="primary", elem_id="cmp-go")
    cmp_status = gr.Markdown()
    boxes = {}
    with gr.Row():
        for name in MODELS:
            with gr.Column(min_width=200):
                boxes[name] = gr.Textbox(label=name.upper(), lines=8, interactive=False, elem_id=f"cmp-{name}")
    table = gr.Dataframe(headers=["model", "reward score", "length (tokens)", "ended with EOS", "KL to base (nats)"],
                         label="Scores")

    with gr.Accordion("Blind arena: which answer is better?", open=True):
        voter = gr.Textbox(label="Your name (optional)")
        arena_go = gr.Button("New blind pair for this prompt", elem_id="arena-go")
        with gr.Row():
            ans1 = gr.Textbox(label="Answer 1", lines=6, interactive=False, elem_id="arena-1")
            ans2 = gr.Textbox(label="Answer 2", lines=6, interactive=False, elem_id="arena-2")
        with gr.Row():
            v1 = gr.Button("Answer 1 is better", elem_id="arena-v1")
            vt = gr.Button("Tie", elem_id="arena-vt")
            v2 = gr.Button("Answer 2 is better", elem_id="arena-v2")
        reveal = gr.Markdown(elem_id="arena-reveal")
        board = gr.Dataframe(headers=["model", "Bradley-Terry", "Elo", "games", "wins", "ties", "losses"],
                             label="Leaderboard from students' votes")
    arena_state = gr.State(None)

    with gr.Accordion("LLM judge (optional, OpenAI-compatible)", open=False):
        judge_info = gr.Markdown(manager.judge()[1])
        judge_go = gr.Button("Judge the side-by-side answers against base")
        judge_table = gr.Dataframe(headers=["model", "verdict vs base", "order a,b", "order b,a", "error"])
    last_answers = gr.State(None)

    # ------------------------------------------------------------------ handlers
    def on_compare(p, n, t, s):
        try:
            res = manager.compare_models(p, int(n), float(t), int(s) if s is not None else None)
        except Exception as exc:
            return [error_text(exc)] + [gr.update()] * (len(MODELS) + 1) + [None]
        job = manager.training_status() or {}
        missing = {m: "(training now: its answer appears when the run ends)" if job.get("running") and job.get("method") == m
                   else "(not trained yet)" for m in MODELS}
        texts = [res[m]["response"] if m in res else missing[m] for m in MODELS]
        rows = [[m, fmt(r["reward"]), r["length_tokens"], r["ended_with_eos"], fmt(r["kl_to_base"])] for m, r in res.items()]
        note = "" if manager.reward_scorer_or_none() else "No reward model yet: train one in the Train tab for scores."
        return [note, *texts, rows, {"prompt": p.strip(), "answers": res}]

    def new_pair(p):
        try:
            rnd = manager.arena_round(p)
        except Exception as exc:
            return error_text(exc), "", "", None
        return "Vote for the better answer; the models are revealed after your vote.", *rnd["answers"], rnd

    def vote(state, who, winner):
        if not state:
            return "Ask for a blind pair first.", gr.update(), None
        try:
            manager.arena.add(state["prompt"], state["models"][0], state["models"][1], winner, (who or "").strip())
        except ValueError as exc:
            return error_text(exc), gr.update(), state
        a, b = state["models"]
        said = {"A": f"Answer 1 ({a})", "B": f"Answer 2 ({b})", "tie": "a tie"}[winner]
        return (f"You chose {said}. Answer 1 was **{a.upper()}**, answer 2 was **{b.upper()}**.",
                leaderboard(), None)

    def leaderboard():
        return [[r["model"], r["bradley_terry"], r["elo"], r["games"], r["wins"], r["ties"], r["losses"]]
                for r in manager.arena.leaderboard(["base", *manager.trained_policies()])]

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
    example.change(lambda e: e or gr.update(), example, prompt, api_visibility="private")
    go.click(on_compare, [prompt, max_tokens, temperature, seed],
             [cmp_status, *boxes.values(), table, last_answers], api_visibility="private")
    arena_go.click(new_pair, prompt, [reveal, ans1, ans2, arena_state], api_visibility="private")
    v1.click(lambda s, w: vote(s, w, "A"), [arena_state, voter], [reveal, board, arena_state], api_visibility="private")
    vt.click(lambda s, w: vote(s, w, "tie"), [arena_state, voter], [reveal, board, arena_state], api_visibility="private")
    v2.click(lambda s, w: vote(s, w, "B"), [arena_state, voter], [reveal, board, arena_state], api_visibility="private")
    judge_go.click(on_judge, last_answers, [judge_info, judge_table], api_visibility="private")

    def compare(prompt: str, max_new_tokens: int = 32, temperature: float = 0.7, seed: int = 42) -> dict:
        """Answers of base and each trained policy: {model: {response, reward, length_tokens, kl_to_base}}."""
        return manager.compare_models(prompt, int(max_new_tokens), float(temperature), int(seed))

    def arena_vote(prompt: str, model_a: str, model_b: str, winner: str, voter: str = "") -> list:
        """Record a blind vote (winner 'A', 'B' or 'tie') and return the leaderboard."""
        manager.arena.add(prompt, model_a, model_b, winner, voter)
        return manager.arena.leaderboard(["base", *manager.trained_policies()])

    gr.api(compare, api_name="compare")
    gr.api(arena_vote, api_name="arena_vote")
    return {"example": example, "prompt": prompt, "go": go, "table": table, **{f"answer_{m}": b for m, b in boxes.items()},
            "arena_go": arena_go, "answer_1": ans1, "answer_2": ans2, "vote_1": v1, "vote_tie": vt, "vote_2": v2,
            "reveal": reveal, "leaderboard": board, "judge": judge_go, "judge_table": judge_table}
