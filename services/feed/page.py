"""The operator web page: server-rendered HTML (first paint), updated live by static/app.js."""

from __future__ import annotations

from html import escape
from pathlib import Path
from string import Template
from typing import Any

from sqlalchemy import Engine

from services.store import queries

HERE = Path(__file__).resolve().parent
TEMPLATE = Template((HERE / "templates" / "index.html").read_text(encoding="utf-8"))


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _when(value: Any) -> str:
    return _e(value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else value)


def alert_row(a: dict[str, Any]) -> str:
    """One alert row; static/app.js builds the same markup for live updates."""
    img = (
        f'<img class="thumb" loading="lazy" alt="evidence" src="/api/alerts/{a["id"]}/image">'
        if a.get("evidence_key")
        else ""
    )
    who = a.get("acknowledged_by") or ""
    ack_dis = "" if a["status"] == "active" else " disabled"
    res_dis = " disabled" if a["status"] == "resolved" else ""
    return (
        f'<tr class="alert sev-{_e(a["severity"])} st-{_e(a["status"])}" '
        f'data-alert-id="{a["id"]}">'
        f'<td>{img}</td><td class="sev">{_e(a["severity"])}</td>'
        f'<td class="status">{_e(a["status"])}</td><td>{_e(a["kind"])}</td>'
        f"<td>{_e(a['line'])}/{_e(a['station'])}</td><td>{_e(a.get('family') or '')}</td>"
        f'<td class="count">{_e(a["count"])}</td><td class="msg">{_e(a["message"])}</td>'
        f'<td class="seen">{_when(a["last_seen"])}</td><td class="ackby">{_e(who)}</td>'
        f'<td class="actions"><button class="ack"{ack_dis}>Acknowledge</button>'
        f'<button class="resolve"{res_dis}>Resolve</button>'
        f'<input class="comment-text" placeholder="comment" maxlength="2000">'
        f'<button class="comment">Comment</button></td></tr>'
    )


def line_tile(x: dict[str, Any]) -> str:
    rate = float(x.get("defect_rate") or 0.0)
    level = "bad" if rate >= 0.1 else "warn" if rate >= 0.02 else "good"
    return (
        f'<div class="card tile {level}"><h3>{_e(x["line"])} / {_e(x["station"])}</h3>'
        f'<p class="rate">{rate * 100:.1f}% defects</p>'
        f"<p>{float(x.get('frames_per_min') or 0):.1f} frames/min · last "
        f"{_e(x.get('last_verdict'))}</p></div>"
    )


def worker_row(w: dict[str, Any]) -> str:
    a = w.get("assignment") or {}
    streams = ", ".join(a.get("streams") or w.get("streams") or [])  # dispatcher, else static
    return (
        f'<tr class="worker st-{_e(w["state"])}"><td>{_e(w["worker"])}</td>'
        f"<td>{_e(w['role'])}</td><td>{_e(w['state'])}</td>"
        f"<td>{float(w.get('load') or 0):.2f}</td><td>{_e(w.get('queue_depth'))}</td>"
        f"<td>{float(w.get('p95_ms') or 0):.1f}</td><td>{_e(a.get('epoch', ''))}</td>"
        f"<td>{_e(streams)}</td><td>{_when(w.get('last_seen'))}</td></tr>"
    )


def render(engine: Engine, *, with_data: bool, lines_window_s: float) -> str:
    """The whole page; ``with_data`` False (reads need a token) renders an empty shell that
    app.js fills once the operator has given a token."""
    alerts: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    workers: list[dict[str, Any]] = []
    with engine.connect() as conn:
        last = queries.last_event_id(conn)
        if with_data:
            alerts, _ = queries.list_alerts(conn, queries.AlertFilter(limit=100))
            lines = queries.line_stats(conn, lines_window_s)
            workers = queries.list_workers(conn)
    return TEMPLATE.substitute(
        last_event_id=last,
        loaded="1" if with_data else "0",
        alert_rows="".join(alert_row(a) for a in alerts),
        lines="".join(line_tile(x) for x in lines),
        workers="".join(worker_row(w) for w in workers),
    )
