"""The admin page's usage section: requests, tokens in and out, mean time to first token and
an estimated cost per user and per model over the last day or week, and the CSV of it.

Names (users' e-mails and names, model names) are untrusted text: they are shown only in
tables, which draw text as text, never in markdown; the CSV guards against formulas."""

from __future__ import annotations

import streamlit as st

from webapp.admin.status import pool_gpus
from webapp.admin.ui.console import Console, conversation_store, still_admin
from webapp.admin.usage import (
    PERIODS,
    Pricing,
    UsageReport,
    default_gpu_hours,
    model_table,
    period_bounds,
    summarize,
    usage_csv,
    user_table,
)
from webapp.settings import Settings
from webapp.store import ConversationStore, StoreUnavailable
from webapp.store.usage import answers_between

#: the usage query's entries, kept while another tab is open (``webapp.ui.entries``)
ENTRIES = ("usage_period", "usage_gpu_hours_")
UNAVAILABLE = (
    "Usage cannot be shown right now: the database cannot be read. "
    "Try again in a moment; if it persists, check the database (DATABASE_URL)."
)
NO_PRICE = "Set GPU_HOURLY_PRICE_USD (the price of one GPU-hour) to see an estimated cost."
MAX_GPU_HOURS = 1_000_000.0

_COLUMNS = {
    "user": st.column_config.TextColumn("user", width="medium"),
    "model": st.column_config.TextColumn("model", width="medium"),
    "requests": st.column_config.NumberColumn("requests", format="%d"),
    "tokens in": st.column_config.NumberColumn("tokens in", format="%d"),
    "tokens out": st.column_config.NumberColumn("tokens out", format="%d"),
    "mean TTFT (s)": st.column_config.NumberColumn("mean TTFT (s)", format="%.2f"),
    "est. cost (USD)": st.column_config.NumberColumn("est. cost (USD)", format="$%.2f"),
}


def show(console: Console) -> None:
    """The usage tab: a query over the period's saved answers, made only while the tab is
    open (not worth making every admin page open wait for it)."""
    if not still_admin(console):
        return
    gpus = pool_gpus(console.cluster)
    usage_section(conversation_store(console.settings), console.settings, gpus=gpus)


def usage_section(store: ConversationStore, settings: Settings, *, gpus: int | None = None) -> None:
    """Draw the section. ``gpus``: GPUs in the pool now (the default GPU-hours assume they
    ran through the whole period; the admin corrects it from the billing report)."""
    st.subheader("Usage")
    period = st.radio("Period", list(PERIODS), horizontal=True, key="usage_period")
    since, until = period_bounds(store.now(), period)
    pricing = _pricing(settings, gpus, period)
    try:
        answers = answers_between(store, since, until)
    except StoreUnavailable:
        st.warning(UNAVAILABLE)
        return
    report = summarize(answers, since, until, pricing)
    if not report.pairs:
        st.info(f"No answers were saved in the {period.lower()}.")
        return
    _tables(report)
    st.download_button(
        "Download CSV (per user and model)",
        usage_csv(report),
        file_name=f"usage-{since:%Y%m%d-%H%M}-{until:%Y%m%d-%H%M}.csv",
        mime="text/csv",
        key="usage_csv",
        on_click="ignore",
        icon=":material/download:",
    )


def _pricing(settings: Settings, gpus: int | None, period: str) -> Pricing | None:
    price = settings.gpu_hourly_price_usd
    if price is None:
        st.caption(NO_PRICE)
        return None
    hours = st.number_input(
        "GPU-hours in the period",
        min_value=0.0,
        max_value=MAX_GPU_HOURS,
        value=min(default_gpu_hours(gpus, period), MAX_GPU_HOURS),
        step=1.0,
        key=f"usage_gpu_hours_{period}",
        help="Default: the GPUs of the pool now, running through the whole period. "
        "Correct it from your billing report: the pool may have scaled down.",
    )
    return Pricing(gpu_hourly_usd=price, gpu_hours=hours)


def _tables(report: UsageReport) -> None:
    total = report.total
    line = (
        f"{total.requests:,} answers · {total.tokens_in:,} tokens in · "
        f"{total.tokens_out:,} tokens out"
    )
    if report.pricing is not None:
        p = report.pricing
        line += (
            f" · estimated cost ${p.total_usd:,.2f} ({p.gpu_hours:,.1f} GPU-hours × "
            f"${p.gpu_hourly_usd:,.2f}), shared by tokens in and out: an estimate, not a bill"
        )
    st.caption(line)
    st.markdown("**Per user**")
    st.dataframe(user_table(report), key="usage_users", hide_index=True, column_config=_COLUMNS)
    st.markdown("**Per model**")
    st.dataframe(model_table(report), key="usage_models", hide_index=True, column_config=_COLUMNS)
    if report.unreadable:
        st.caption(
            f"{report.unreadable:,} answer(s) had token counts or times that are not usable "
            "numbers: they count as requests, those values are left out."
        )
    st.caption(
        "From the saved answers: deleted conversations and answers replaced by "
        "Regenerate are not counted. Guests are grouped by their (hashed) network address."
    )
