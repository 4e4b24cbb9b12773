"""Annotate tab: the preference annotation platform (pairwise choices and K-way rankings).

Items come from the loaded dataset (every student gets the same items in the same order, so agreement can be
measured) or from live base-model generations for a prompt the student types. Every submission goes through
``manager.submit_annotation`` (validated, stored in SQLite, exported to ``collected_annotations.json``).

Identity: under ``--auth`` the annotator is the login (``gr.Request.username``), shown and not editable; every
handler takes it from the request, never from the page, so nobody annotates or undoes as somebody else. Without
``--auth`` the typed name is used, kept in the browser for the next visit (``ui.common.remember_name``), and the page
says that names are not verified.

Keyboard: 1 = A better, 2 = B better, 3 = tie, 4 = both bad, 5 = skip, n = next item, u = undo (whenever the
focus is not in a text box or a dropdown; a clicked radio button does not block them). The page lists the keys.
"""

from __future__ import annotations

import gradio as gr

from alignment.annotations import StoreBusy, render_prompt

from .common import FREE, downloadable, error_text, identity, login, md_escape

MAX_K = 6
CHOICES = [("A is better", "A", "ann-a"), ("B is better", "B", "ann-b"), ("Tie", "tie", "ann-tie"),
           ("Both bad", "both_bad", "ann-bad"), ("Skip", "skip", "ann-skip")]

KEYBOARD_JS = """<script>
document.addEventListener('keydown', (e) => {
  const t = e.target;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const notText = ['radio', 'checkbox', 'button', 'submit', 'range', 'color', 'file'];
  const typing = t && (t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable ||
                       (t.tagName === 'INPUT' && !notText.includes((t.type || '').toLowerCase())));
  if (typing) return;  // a radio or checkbox that keeps the focus after a click does not swallow the keys
  const ids = {'1': 'ann-a', '2': 'ann-b', '3': 'ann-tie', '4': 'ann-bad', '5': 'ann-skip', 'n': 'ann-next', 'u': 'ann-undo'};
  const el = ids[e.key] && document.getElementById(ids[e.key]);
  if (el && el.offsetParent !== null) { e.preventDefault(); el.click(); }
});
</script>"""

KEYS_HELP = ("Keys (when you are not typing in a box): **1** A better · **2** B better · **3** tie · "
             "**4** both bad · **5** skip · **n** next item · **u** undo")

GUIDELINES = """**How to judge** (take the same stance every time; agreement between students is measured):
1. **Helpful**: does it answer what was asked, correctly and completely?
2. **Honest**: no invented facts; says "I don't know" rather than guessing.
3. **Harmless**: refuses clearly harmful requests, politely, ideally with a safe alternative.
4. **Follows constraints**: length, format, language asked for in the prompt.
5. Length is not quality: prefer the shorter answer when both are equally good.

Use **Tie** when both are equally good, **Both bad** when neither is acceptable, **Skip** if you cannot judge.
In ranking mode give every answer a different rank (1 = best)."""


def _stats(manager, annotator: str):
    s = manager.annotation_summary(annotator or None)
    mine = s["counts"].get(annotator, 0) if annotator else 0
    counts = [[a, n] for a, n in sorted(s["counts"].items(), key=lambda x: -x[1])]
    hist = [[r["timestamp"][11:19], r["mode"], r.get("choice") or " > ".join(str(i + 1) for i in r["ranking"]),
             render_prompt(r["prompt"])[:80], r.get("rationale", "")[:80]] for r in s["history"][:50]]
    ag = s["agreement"]
    lines = [f"**Agreement** on items seen by more than one annotator: pairwise {ag['pairwise']['shared_items']} "
             f"items, Krippendorff's alpha = {_f(ag['pairwise']['alpha'])}; rankings {ag['ranking']['shared_items']} "
             f"items, alpha (ordinal) = {_f(ag['ranking']['alpha'])}."]
    for k in ag["pairwise"]["kappa"]:
        a, b = (md_escape(n) for n in k["annotators"])
        lines.append(f"- Cohen's kappa {a} vs {b}: {_f(k['kappa'])} ({k['n_items']} items)")
    lines.append("\n*1 = perfect agreement, 0 = chance, below 0 = systematic disagreement; undefined (–) with too few "
                 "shared items or no variation.*")
    progress = (f"You: **{mine}** annotations · everyone: **{s['total']}** records from {len(s['counts'])} annotators "
                f"· **{s['pairs']}** training pairs derived")
    if s.get("skipped_on_import") or s.get("backups"):
        progress += (f"\n\n⚠️ {s.get('skipped_on_import', 0)} record(s) of the earlier annotations file did not pass "
                     "today's checks and are not counted; the file as it was is kept as "
                     + ", ".join(md_escape(b) for b in s.get("backups", [])) + " in the output folder.")
    return progress, hist, "\n".join(lines), counts


def _f(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def create_annotate_tab(manager) -> dict:
    gr.Markdown("## Annotate preferences\nYour choices become training data for the reward model and DPO "
                "(Data tab → *collected annotations*).")
    with gr.Row():
        annotator = gr.Textbox(label="Your name (annotator)", placeholder="e.g. ana", scale=2, max_length=64,
                               info="Not verified: anyone can type any name. Kept in this browser for your next visit. "
                                    "With a login the name is your login.")
        mode = gr.Radio(["pairwise", "ranking"], value="pairwise", label="Mode", scale=2)
        k = gr.Slider(3, MAX_K, value=4, step=1, label="Answers to rank (K)", visible=False, scale=1)
    with gr.Row():
        source = gr.Radio([("From the dataset", "dataset"), ("Generate for my prompt", "generated")], value="dataset",
                          label="Items", scale=2)
        own_prompt = gr.Textbox(label="Your prompt (live generation by the base model)", visible=False, scale=3)
    next_btn = gr.Button("Load next item (n)", variant="primary", elem_id="ann-next")
    progress = gr.Markdown()
    item = gr.State(None)
    prompt_md = gr.Markdown("*Enter your name and load an item.*")
    with gr.Group(visible=True) as pair_group:
        with gr.Row():
            resp_a = gr.Textbox(label="Response A", interactive=False, lines=6, elem_classes="answer")
            resp_b = gr.Textbox(label="Response B", interactive=False, lines=6, elem_classes="answer")
        with gr.Row():
            choice_btns = [gr.Button(f"{label} ({i + 1})", elem_id=eid, variant="primary" if v in ("A", "B") else "secondary")
                           for i, (label, v, eid) in enumerate(CHOICES)]
        gr.Markdown(KEYS_HELP, elem_id="ann-keys")
    with gr.Group(visible=False) as rank_group:
        rank_boxes, rank_sel, rank_rows = [], [], []
        for i in range(MAX_K):
            with gr.Row(visible=i < 4) as row:
                rank_boxes.append(gr.Textbox(label=f"Answer {i + 1}", interactive=False, lines=3, scale=5))
                rank_sel.append(gr.Dropdown([str(r) for r in range(1, 5)], label="Rank (1 = best)", scale=1,
                                            elem_id=f"ann-rank-{i + 1}"))
            rank_rows.append(row)
        submit_rank = gr.Button("Submit ranking", variant="primary", elem_id="ann-rank")
    rationale = gr.Textbox(label="Why? (optional rationale)", lines=2, elem_id="ann-rationale")
    with gr.Row():
        undo = gr.Button("Undo my last answer (u)", elem_id="ann-undo")
    status = gr.Markdown(elem_id="ann-status")
    with gr.Accordion("Guidelines", open=False):
        gr.Markdown(GUIDELINES)
    with gr.Accordion("My history, agreement, export", open=True):
        history = gr.Dataframe(headers=["time", "mode", "choice / ranking", "prompt", "rationale"], wrap=True,
                               label="My annotations (newest first)", column_widths=["13%", "14%", "17%", "34%", "22%"])
        agreement_md = gr.Markdown()
        counts = gr.Dataframe(headers=["annotator", "records"], label="Annotations per student")
        with gr.Row():
            export_btn = gr.Button("Export as TRL preference JSONL")
            use_btn = gr.Button("Train on these annotations (load as dataset)")
        export_file = gr.File(label="Exported pairs", interactive=False)

    # ------------------------------------------------------------------ handlers
    def show_item(it):
        """Values for prompt, A, B, 6 rank boxes, 6 selectors, 6 rows, 2 groups."""
        if not it or not it.get("responses"):
            done = "🎉 You have annotated every item of this dataset. Try *Generate for my prompt*." if it else ""
            return [done, "", ""] + [""] * MAX_K + [None] * MAX_K + [gr.update()] * MAX_K + [gr.update(), gr.update()]
        n = len(it["responses"])
        where = (f"item {it['index'] + 1} of {it['total']}" if it.get("index") is not None
                 else "answer it again after undo" if it.get("again") else "live generation")
        head = (f"**Prompt** ({md_escape(it['category'])}, {where}):\n\n> "
                + md_escape(render_prompt(it["prompt"])).replace("\n", "\n> "))
        ranking = n > 2 or it.get("mode") == "ranking"
        a, b = (it["responses"] + ["", ""])[:2]
        boxes = [it["responses"][i] if i < n else "" for i in range(MAX_K)]
        sels = [gr.update(value=None, choices=[str(r) for r in range(1, n + 1)]) for _ in range(MAX_K)]
        rows = [gr.update(visible=i < n) for i in range(MAX_K)]
        return ([head, a, b] + boxes + sels + rows + [gr.update(visible=not ranking), gr.update(visible=ranking)])

    no_item = [gr.update()] * (3 + 3 * MAX_K + 2)  # leave prompt, answers, selectors and groups as they are

    def load_next(name, m, kk, src, text, request: gr.Request):
        """``[item, status, *item values]``: the caller's next item; a problem only in the status line."""
        who = identity(request, name)
        if not who:
            return [gr.update(), error_text(ValueError("Enter your name first (top left), then load an item"))] + no_item
        try:
            it = manager.annotation_item(who, m, int(kk), src, text)
        except Exception as exc:
            return [gr.update(), error_text(exc)] + no_item
        it["mode"] = m
        return [it, ""] + show_item(it)

    def store_answer(name, it, choice, why, request, ranks=None) -> dict:
        """Store one answer. Raises ValueError (or StoreBusy) with the message for the status line."""
        if not it or not it.get("responses"):
            raise ValueError("Load an item first")
        rec = {"annotator": identity(request, name), "item_id": it["item_id"], "prompt": it["prompt"],
               "responses": it["responses"], "category": it["category"], "source": it["source"], "rationale": why}
        if ranks is not None:
            n = len(it["responses"])
            picked = ranks[:n]
            if any(r in (None, "") for r in picked):
                raise ValueError("Give every answer a rank before submitting")
            if len(set(picked)) != n:
                raise ValueError("Each rank may be used once: two answers have the same rank")
            rec["ranking"] = sorted(range(n), key=lambda i: int(picked[i]))
        else:
            rec["choice"] = choice
        return manager.submit_annotation(rec, user=login(request))

    def answer(request, name, it, why, m, kk, src, text, choice=None, ranks=None):
        """``[item, status, rationale, *item values]``: store the answer and show the next item. A refused answer
        changes only the status line (the item and the rationale stay, no other field shows an error), and the
        next action replaces the message."""
        try:
            stored = store_answer(name, it, choice, why, request, ranks)
        except (ValueError, StoreBusy) as exc:
            return [gr.update(), error_text(exc), gr.update()] + no_item
        nxt, note, *values = load_next(name, m, kk, src, text, request)
        saved = f"✅ Saved ({stored['mode']}: {stored.get('choice') or 'ranking'}) as record `{stored['id'][:8]}`."
        return [nxt, f"{saved} {note}".strip(), ""] + values

    def do_undo(name, request: gr.Request):
        """``[item, status, rationale, *item values]``: remove the caller's last answer and show that item again,
        with its rationale, for a new answer."""
        try:
            removed = manager.undo_annotation(identity(request, name))
        except (ValueError, StoreBusy) as exc:
            return [gr.update(), error_text(exc), gr.update()] + no_item
        if removed is None:
            return [gr.update(), "Nothing to undo: you have no saved answers.", gr.update()] + no_item
        it = {**{k: removed[k] for k in ("item_id", "prompt", "responses", "category", "source", "mode")},
              "index": None, "total": None, "again": True}
        return ([it, f"↩️ Removed your last answer (record `{removed['id'][:8]}`): here is that item again.",
                 removed.get("rationale", "")] + show_item(it))

    def refresh(name, request: gr.Request):
        return _stats(manager, identity(request, name))

    def do_export():
        path, n = manager.export_annotations()
        return downloadable([path])[0], f"Exported {n} chosen/rejected pairs to `{path}`."

    def use_as_dataset(request: gr.Request):
        try:
            ds = manager.use_annotations_as_dataset(user=login(request))
            return f"✅ Training data is now the collected annotations: {ds['load_report']['kept']} pairs."
        except Exception as exc:
            return error_text(exc) + " (the previous dataset stays in use)"

    def choice_handler(value):
        def handler(request: gr.Request, name, it, why, m, kk, src, text):
            return answer(request, name, it, why, m, kk, src, text, choice=value)
        return handler

    def submit_ranking(request: gr.Request, name, it, why, m, kk, src, text, *ranks):
        return answer(request, name, it, why, m, kk, src, text, ranks=list(ranks))

    # ------------------------------------------------------------------ wiring
    item_outputs = [prompt_md, resp_a, resp_b, *rank_boxes, *rank_sel, *rank_rows, pair_group, rank_group]
    stats_outputs = [progress, history, agreement_md, counts]
    where = [annotator, mode, k, source, own_prompt]
    answered = [item, status, rationale, *item_outputs]
    private = dict(api_visibility="private", **FREE)
    mode.change(lambda m: gr.update(visible=m == "ranking"), mode, k, **private)
    source.change(lambda s: gr.update(visible=s == "generated"), source, own_prompt, **private)
    next_btn.click(load_next, where, [item, status, *item_outputs], **private).then(refresh, annotator, stats_outputs,
                                                                                   **private)
    for (_, value, _), btn in zip(CHOICES, choice_btns):
        btn.click(choice_handler(value), [annotator, item, rationale, *where[1:]], answered, **private).then(
            refresh, annotator, stats_outputs, **private)
    submit_rank.click(submit_ranking, [annotator, item, rationale, *where[1:], *rank_sel], answered, **private).then(
        refresh, annotator, stats_outputs, **private)
    undo.click(do_undo, annotator, answered, **private).then(refresh, annotator, stats_outputs, **private)
    annotator.submit(refresh, annotator, stats_outputs, **private)
    export_btn.click(do_export, None, [export_file, status], api_name="export_annotations", **FREE)
    use_btn.click(use_as_dataset, None, status, api_visibility="private")

    # API for scripts and gradio_client: the same manager calls as the buttons, with the same identity rules
    def annotation_item(annotator: str, mode: str = "pairwise", k: int = 4, request: gr.Request = None) -> dict:
        """The next dataset item for ``annotator`` (the login under --auth): ``{"item_id", "prompt", "responses", ...}``."""
        try:
            return manager.annotation_item(identity(request, annotator), mode, k)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    def submit_annotation(record: dict, request: gr.Request = None) -> dict:
        """Store one annotation record (annotator, prompt, responses, choice or ranking, rationale). Under --auth the
        annotator is the login. A bad record is refused with a message naming the field."""
        try:
            return manager.submit_annotation(record, user=login(request))
        except (ValueError, StoreBusy) as exc:
            raise gr.Error(str(exc)) from exc

    def undo_annotation(annotator: str = "", request: gr.Request = None) -> dict:
        """Remove the caller's own last annotation (the login under --auth); ``{"removed": record or None}``."""
        try:
            return {"removed": manager.undo_annotation(identity(request, annotator))}
        except (ValueError, StoreBusy) as exc:
            raise gr.Error(str(exc)) from exc

    def annotation_stats(annotator: str = "", request: gr.Request = None) -> dict:
        s = manager.annotation_summary(identity(request, annotator) or None)
        return {"total": s["total"], "counts": s["counts"], "agreement": s["agreement"], "pairs": s["pairs"]}

    gr.api(annotation_item, api_name="annotation_item", **FREE)
    gr.api(submit_annotation, api_name="submit_annotation", queue=False, **FREE)
    gr.api(undo_annotation, api_name="undo_annotation", **FREE)
    gr.api(annotation_stats, api_name="annotation_stats", **FREE)
    return {"annotator": annotator, "mode": mode, "k": k, "source": source, "own_prompt": own_prompt,
            "next": next_btn, "prompt": prompt_md, "resp_a": resp_a, "resp_b": resp_b, "status": status,
            "undo": undo, "history": history, "agreement": agreement_md, "counts": counts, "export": export_btn,
            "export_file": export_file, **{f"choice_{v}": b for (_, v, _), b in zip(CHOICES, choice_btns)}}
