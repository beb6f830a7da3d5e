"""`linewatch dispatch [run]` (the dispatcher service) and `linewatch dispatch plan` (offline)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.dispatcher.model import InstanceError, Plan, instance_from_json
from services.dispatcher.placement import solve


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="linewatch dispatch", description="Place camera streams on edge workers."
    )
    sub = ap.add_subparsers(dest="cmd")
    run = sub.add_parser("run", help="run the dispatcher service (default)")
    run.add_argument("--id", dest="dispatcher_id", help="dispatcher id (default: from settings)")
    plan = sub.add_parser("plan", help="solve one instance offline (what-if planning)")
    plan.add_argument(
        "--input",
        required=True,
        type=Path,
        help="JSON file: {workers, streams, current?, target_utilisation?}; '-' reads stdin",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    plan.add_argument(
        "--budget-ms",
        type=float,
        default=None,
        help="decision time budget in ms (default: none, solve to optimum)",
    )
    plan.add_argument(
        "--migration-penalty",
        type=float,
        default=None,
        help="cost per moved stream (default: input's, else 0.05)",
    )
    return ap


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "plan":
        return _plan(args)
    from services.dispatcher.runner import run_forever

    return run_forever(getattr(args, "dispatcher_id", None))


def _plan(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if str(args.input) == "-" else args.input.read_text("utf-8")
    except OSError as exc:
        print(f"linewatch dispatch plan: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        doc = json.loads(text, parse_constant=_no_constant)
        inst = instance_from_json(doc, args.migration_penalty)
    except (ValueError, InstanceError) as exc:
        print(f"linewatch dispatch plan: bad input {args.input}: {exc}", file=sys.stderr)
        return 2
    if args.budget_ms is not None and args.budget_ms <= 0:
        print("linewatch dispatch plan: --budget-ms must be > 0", file=sys.stderr)
        return 2
    plan = solve(inst, args.budget_ms)
    if args.json:
        print(json.dumps(plan.to_json(), sort_keys=True))
    else:
        print(_text(plan))
    return 0


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in the input")


def _text(plan: Plan) -> str:
    by_worker: dict[str, list[str]] = {}
    for s, w in sorted(plan.assignment.items()):
        by_worker.setdefault(w, []).append(s)
    lines = [
        f"cost {plan.cost:.4f}  ({'optimal' if plan.optimal else 'not proven optimal'}, "
        f"{plan.method}, {plan.solve_ms:.1f} ms)"
    ]
    lines += [f"  {w}: {', '.join(ss)}" for w, ss in sorted(by_worker.items())]
    if plan.unplaced:
        lines.append(f"  unplaced: {', '.join(sorted(plan.unplaced))}")
    return "\n".join(lines)
