"""mape_viz Gradio app: see which heads matter for a sample, and unlearn it interactively.

    python app.py                      # embedded toy-sentiment task, http://127.0.0.1:7860
    python app.py --model DIR --data DIR --forget label-flip:16   # your classifier and data
    python app.py --task glue/sst2 --model DIR --data SST-2/      # a named task on local files
    python app.py --host 0.0.0.0 --port 7861 --share

The task flags are the CLI's (``mape-viz unlearn --help`` lists them: columns, forget specs,
fine-tuning, ``--retrained``).

Layout only (docs/design.md §9): every handler composes calls from ``mape_viz.ui.app_logic``
(tested directly); every choice list comes from ``mape_viz.choices`` and the initial
hyperparameters from the app's presets (``mape_viz.presets``).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
from typing import Any, Callable

import gradio as gr

from mape_viz.choices import (describe, list_granularities, list_methods, list_objectives,
                              list_refine_modes, list_selectors)
from mape_viz.cli._flags import UsageError
from mape_viz.cli._task_args import add_task_arguments, task_from_arguments
from mape_viz.ui import app_logic as L

log = logging.getLogger("mape_viz.app")

METRIC_HEADERS = ["model", "forget acc", "retain acc", "test acc", "MIA: forget as member",
                  "MIA AUC"]
#: Sparsities the sweep tab offers (and the two it starts with).
SWEEP_SPARSITIES = ["0.5", "0.8", "0.9", "0.95"]
#: Narrowest explore plot (px): two share a row only when both get this much (a 1400 px
#: window), else each takes a row (a ~1000 px window, where Gradio's page is ~700 px wide).
PLOT_MIN_WIDTH = 460
INTRO = """# mape_viz — module-aware unlearning
Pick training samples to forget (the **canaries** are memorised samples whose label contradicts
the rule), see which attention heads and FFN filters matter for them (MAPE scores: the mask
gradient plus half the diagonal Fisher, refined by a greedy swap), then unlearn them by updating
only those modules.
The base model is never modified: each run works on its own copy."""


def _message(fn: Callable, e: Exception) -> str:
    """The one line a visitor sees. Ordinary user errors are one line in the server log,
    never a traceback; anything else is logged with its traceback."""
    if isinstance(e, gr.Error):
        return str(e.message)
    if isinstance(e, (ValueError, TypeError, RuntimeError, KeyError, FileExistsError)):
        log.warning("%s: %s", fn.__name__, e)
        return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    log.exception("handler %s failed", fn.__name__)  # details stay in the server log
    return f"unexpected error ({type(e).__name__}); see the server log"


def inline(n_outputs: int) -> Callable[[Callable], Callable]:
    """A handler whose last output is its tab's status line (``L.error_html``).

    The handler returns (or yields) its ``n_outputs`` values; the status line is appended:
    cleared ('') on success, the one-line error on failure — shown under the control that
    caused it and kept until the next successful action — with the other outputs left as
    they were (``gr.skip()``). No stack trace reaches the page; API clients get the same
    status value as the last output."""
    def wrap(fn: Callable) -> Callable:
        def failed(e: Exception) -> tuple:
            return (*[gr.skip()] * n_outputs, L.error_html(_message(fn, e)))

        def ok(out: Any) -> tuple:
            return (*(out if n_outputs > 1 else (out,)), "")

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen(*args: Any, **kwargs: Any):
                try:
                    for out in fn(*args, **kwargs):
                        yield ok(out)
                except Exception as e:  # noqa: BLE001
                    yield failed(e)
            return gen

        @functools.wraps(fn)
        def plain(*args: Any, **kwargs: Any):
            try:
                return ok(fn(*args, **kwargs))
            except Exception as e:  # noqa: BLE001
                return failed(e)
        return plain
    return wrap


def checked_by_us(*sliders: gr.Slider) -> None:
    """Leave these sliders' range check to ``L.check_inputs``: Gradio's own check runs before
    the handler and only raises a toast, while ours puts the one-line error (what was typed,
    what is accepted) in the tab's status line like every other input."""
    for s in sliders:
        s.preprocess = lambda payload: payload


def build_app(ctx: L.AppContext | None = None, task: str = "toy-sentiment",
              model_dir: str | None = None) -> gr.Blocks:
    """Build the app around one loaded task (``ctx``), loading it when not given."""
    ctx = ctx or L.AppContext.load(task, model_dir=model_dir)
    methods = list_methods(ctx.task.kind)
    first_method = "ga" if "ga" in methods else methods[0]
    preset = L.app_config(ctx.task, first_method, "mape")  # what the controls start from
    first_canary = ctx.canary_ids()[:1]
    # the landing page already shows which heads matter for the first canary
    landing = L.compute_scores(ctx, None, first_canary, "mlf", "mape")
    L.select(landing, 0.9, preset.granularity, preset.refine or "none")
    landing_figs = L.explore_figures(landing)
    landing_md = L.mask_summary(landing) + "\n\n" + L.prediction_summary(ctx, first_canary)

    # ---- handlers: compose app_logic calls --------------------------------------------------
    @inline(1)
    def on_search(query: str):
        return L.sample_table(ctx, query)

    def on_pick(ids_text: str, evt: gr.SelectData):
        row = evt.row_value if getattr(evt, "row_value", None) else None
        if not row:
            return ids_text
        current = [p for p in (ids_text or "").replace(",", " ").split() if p.lower() != "canaries"]
        if str(row[0]) not in current:
            current.append(str(row[0]))
        return ", ".join(current)

    @inline(6)
    def on_score(ids_text, objective, selector, granularity, sparsity, refine, state,
                 progress=gr.Progress(track_tqdm=True)):
        got = L.check_inputs(ctx, ids_text, sparsity=sparsity)
        ids = got["ids"]
        progress(0, desc="scoring modules")
        state = L.compute_scores(ctx, state, ids, objective, selector)
        L.select(state, got["sparsity"], granularity, refine)
        figs = L.explore_figures(state)
        return (state, L.mask_summary(state) + "\n\n" + L.prediction_summary(ctx, ids),
                figs["heads"], figs["filters"], figs["per_layer"], figs["swaps"])

    @inline(6)
    def on_redraw(granularity, sparsity, refine, state):
        if state is None or state.key is None:
            raise ValueError("compute scores first (press 'Compute scores')")
        sparsity = L.check_inputs(ctx, sparsity=sparsity)["sparsity"]
        L.select(state, sparsity, granularity, refine)
        figs = L.explore_figures(state)
        return state, L.mask_summary(state), figs["heads"], figs["filters"], figs["per_layer"], figs["swaps"]

    @inline(6)
    def on_unlearn(ids_text, method, modules, objective, selector, granularity, sparsity, refine,
                   lr, epochs, with_full, state, request: gr.Request,
                   progress=gr.Progress(track_tqdm=True)):
        got = L.check_inputs(ctx, ids_text, sparsity=sparsity, lr=lr, epochs=epochs)
        ids, sparsity, epochs = got["ids"], got["sparsity"], got["epochs"]
        cancel = ctx.cancel_event(getattr(request, "session_hash", None))
        cancel.clear()
        mask, note = None, ""
        if modules == "explore":
            progress(0, desc="mask from Explore")
            state, mask, rescored = L.unlearn_mask(ctx, state, ids, objective, selector,
                                                   granularity, sparsity, refine)
            note = L.mask_line(mask, rescored)
        progress(0, desc=f"unlearning {len(ids)} sample(s)")
        try:
            run = L.run_unlearn(ctx, ids, method, selector if modules == "explore" else "full",
                                sparsity, got["lr"], epochs, mask=mask, mask_note=note,
                                with_full=bool(with_full), cancel=cancel)
        except L.Cancelled as e:
            log.info("run cancelled (%s)", e)
            return state, None, f"cancelled ({e})", None, None, None
        return (state, run, L.run_summary(run), L.before_after_table(ctx, run),
                L.metrics_table(run), L.compare_table(run))

    def on_cancel(request: gr.Request):
        ctx.cancel_event(getattr(request, "session_hash", None)).set()
        return "cancelled"

    def on_close(request: gr.Request):
        ctx.cancel_event(getattr(request, "session_hash", None)).set()

    def on_budget(ids_text, method, epochs):
        try:
            got = L.check_inputs(ctx, ids_text, epochs=epochs)
        except ValueError as e:
            return str(e)
        return L.expected_steps(ctx, got["ids"], method, got["epochs"])

    @inline(2)
    def on_sweep(ids_text, method, selectors, sparsities, epochs, lr):
        got = L.check_inputs(ctx, ids_text, sparsities=sparsities, epochs=epochs, lr=lr)
        if not selectors:
            raise ValueError("choose at least one selector")
        original = L.original_metrics(ctx, got["ids"])
        for records in L.sweep(ctx, got["ids"], method, selectors, got["sparsities"],
                               got["epochs"], got["lr"]):
            yield L.sweep_frontier(records, original), records

    @inline(1)
    def on_export(run, state):
        mask = state.mask if state is not None else None
        return L.export_run(run, mask)

    # ---- layout ---------------------------------------------------------------------------
    with gr.Blocks(title="mape_viz — module-aware unlearning") as demo:
        gr.Markdown(INTRO)
        explore_state = gr.State(landing)
        run_state = gr.State(None)
        ids_box = gr.Textbox(label="Forget set: training sample ids (comma-separated, or 'canaries')",
                             value=", ".join(map(str, first_canary)), elem_id="forget-ids")
        with gr.Tab("Explore", id="explore"):
            with gr.Row():
                search = gr.Textbox(label="Search the training set (a word, or 'canaries')",
                                    value="canaries", scale=3)
                canaries_btn = gr.Button("Forget all canaries", scale=1)
            table = gr.Dataframe(value=L.sample_table(ctx, "canaries"), headers=L.sample_headers(ctx),
                                 interactive=False, max_height=260, wrap=True,
                                 column_widths=L.sample_column_widths(ctx), elem_id="samples",
                                 label="Click a row to add it to the forget set")
            with gr.Row():
                objective = gr.Radio([(describe("objective", o), o) for o in list_objectives()],
                                     value="mlf", label="Objective")
                selector = gr.Dropdown(list_selectors(include_full=False), value="mape",
                                       label="Selector")
                granularity = gr.Radio(list_granularities(), value=preset.granularity,
                                       label="Granularity")
            with gr.Row():
                sparsity = gr.Slider(0.0, 0.99, value=0.9, step=0.01, label="Sparsity (fraction frozen)")
                refine = gr.Radio(list_refine_modes(), value=preset.refine, label="Refinement",
                                  info="; ".join(f"{m}: {describe('refine', m)}"
                                                 for m in list_refine_modes()))
                score_btn = gr.Button("Compute scores", variant="primary", elem_id="score-btn")
            explore_status = gr.HTML("", elem_id="explore-status")
            summary = gr.Markdown(landing_md, elem_id="explore-summary")
            with gr.Row():
                heads_plot = gr.Plot(landing_figs["heads"], label="Heads", min_width=PLOT_MIN_WIDTH)
                filters_plot = gr.Plot(landing_figs["filters"], label="Filters",
                                       min_width=PLOT_MIN_WIDTH)
            with gr.Row():
                bars_plot = gr.Plot(landing_figs["per_layer"], label="Selected per layer",
                                    min_width=PLOT_MIN_WIDTH)
                swaps_plot = gr.Plot(landing_figs["swaps"], label="Greedy-swap changes",
                                     min_width=PLOT_MIN_WIDTH, elem_id="swaps-plot")
        with gr.Tab("Unlearn", id="unlearn"):
            with gr.Row():
                method = gr.Dropdown(methods, value=first_method, label="Method")
                modules = gr.Radio([("mask from Explore (its selector, objective, sparsity, "
                                     "granularity, refinement)", "explore"),
                                    ("full model", "full")], value="explore", label="Modules")
                with_full = gr.Checkbox(True, label="also run the full model (side by side)")
            with gr.Row():
                full_preset = L.app_config(ctx.task, first_method, "full")
                lr = gr.Number(value=None, label=(
                    f"Learning rate (empty or 0 = each run's preset; {first_method.upper()}: "
                    f"{preset.lr_for(True):g} with a mask, {full_preset.lr_for(False):g} for the full "
                    "model)"))
                epochs = gr.Slider(1, L.MAX_EPOCHS, value=preset.epochs, step=1,
                                   label="Epochs (over the forget set; SA/RT: over the retain "
                                         "set, capped)")
                run_btn = gr.Button("Unlearn", variant="primary", elem_id="unlearn-btn")
                cancel_btn = gr.Button("Cancel", elem_id="cancel-btn")
            unlearn_status = gr.HTML("", elem_id="unlearn-status")
            budget = gr.Markdown(L.expected_steps(ctx, first_canary, first_method, preset.epochs),
                                 elem_id="run-budget")
            run_summary = gr.Markdown(elem_id="run-summary")
            compare = gr.Dataframe(headers=list(L.COMPARE_COLUMNS), elem_id="compare",
                                   label="Module-aware vs full model, same request",
                                   interactive=False)
            before_after = gr.Dataframe(headers=L.before_after_headers(ctx),
                                        label="Forget samples: before / after",
                                        interactive=False, wrap=True)
            metrics = gr.Dataframe(headers=METRIC_HEADERS, label="Metrics", interactive=False)
        with gr.Tab("Sweep", id="sweep"):
            with gr.Row():
                s_method = gr.Dropdown(methods, value=first_method, label="Method")
                s_selectors = gr.CheckboxGroup(list_selectors(), value=["mape"], label="Selectors")
                s_sparsities = gr.CheckboxGroup(SWEEP_SPARSITIES, value=["0.8", "0.95"],
                                                label="Sparsities")
                s_epochs = gr.Slider(1, L.MAX_EPOCHS, value=preset.epochs, step=1, label="Epochs")
                s_lr = gr.Number(value=preset.lr, label="Learning rate (empty = default)")
            sweep_btn = gr.Button("Run sweep", variant="primary", elem_id="sweep-btn")
            sweep_status = gr.HTML("", elem_id="sweep-status")
            sweep_plot = gr.Plot(label="Efficacy-fidelity frontier over sparsity (drawn as runs finish)", elem_id="sweep-plot")
            sweep_table = gr.JSON(label="Records", elem_id="sweep-records")
        with gr.Tab("Export", id="export"):
            gr.Markdown("Download the last run: its mask (safetensors + JSON), the changed weights "
                        "(only the changed slices) and a JSON report.")
            export_btn = gr.Button("Prepare files", elem_id="export-btn")
            export_status = gr.HTML("", elem_id="export-status")
            files = gr.File(label="Files", file_count="multiple")

        checked_by_us(sparsity, epochs, s_epochs)
        search.submit(on_search, search, [table, explore_status])
        table.select(on_pick, ids_box, ids_box)
        canaries_btn.click(lambda: "canaries", None, ids_box)
        explore_out = [explore_state, summary, heads_plot, filters_plot, bars_plot, swaps_plot,
                       explore_status]
        score_btn.click(on_score, [ids_box, objective, selector, granularity, sparsity, refine,
                                   explore_state], explore_out, api_name="explore")
        for ctl in (sparsity, refine, granularity):
            ctl.change(on_redraw, [granularity, sparsity, refine, explore_state], explore_out,
                       api_name=False, show_progress="hidden")
        run_event = run_btn.click(
            on_unlearn, [ids_box, method, modules, objective, selector, granularity, sparsity,
                         refine, lr, epochs, with_full, explore_state],
            [explore_state, run_state, run_summary, before_after, metrics, compare,
             unlearn_status],
            api_name="unlearn", concurrency_id="work")
        cancel_btn.click(on_cancel, None, run_summary, cancels=[run_event], api_name="cancel",
                         queue=False)
        for ctl in (ids_box, method, epochs):
            ctl.change(on_budget, [ids_box, method, epochs], budget, api_name=False,
                       show_progress="hidden")
        demo.unload(on_close)
        sweep_btn.click(on_sweep, [ids_box, s_method, s_selectors, s_sparsities, s_epochs, s_lr],
                        [sweep_plot, sweep_table, sweep_status], api_name="sweep")
        export_btn.click(on_export, [run_state, explore_state], [files, export_status],
                         api_name="export")
    demo.queue(default_concurrency_limit=2, max_size=16)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="mape_viz Gradio app (offline; the embedded "
                                             "toy-sentiment task unless --task or --model/--data)")
    add_task_arguments(ap)
    ap.add_argument("--model-dir", default=None, help="same as --model (kept for old commands)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--share", action="store_true", help="create a public gradio.live link")
    args = ap.parse_args(argv)
    if args.model_dir:
        if args.model and args.model != args.model_dir:
            ap.error("give --model or --model-dir, not both")
        args.model = args.model_dir
    if args.task is None and not args.data:
        args.task = "toy-sentiment"  # --model alone swaps the classifier of the embedded task
    return args


def context_from_args(args: argparse.Namespace) -> L.AppContext:
    """Load what the flags name (the app's task options for a named task given without any)."""
    try:
        task, _ = task_from_arguments(args, front_end="app")
        return L.AppContext.from_task(task)
    except (UsageError, ValueError, FileNotFoundError, RuntimeError) as e:
        # bad flags, data or model: one line saying what to change, not a traceback
        raise SystemExit(f"app.py: error: {e}") from None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    demo = build_app(context_from_args(args))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
