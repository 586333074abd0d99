"""The summary a run prints (and the Markdown block docs/reliability.md quotes)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sim import Simulation, Violation


def summary_lines(sim: Simulation) -> list[str]:
    s, o = sim.stats, sim.opt
    per_rotation = f"{s.rotation_requests / s.rotations:.0f}" if s.rotations else "n/a"
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(s.interference.items())) or "none"
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(s.interference_kinds.items())) or "none"
    still_open = Counter(i.kind for i in sim.open)
    pending = "a crash is still pending at the end" if sim.dirty else "every crash was followed by a completed run"
    modes = Counter(f"{t.mode}/{t.transport}" for t in sim.estate.targets)
    return [
        f"seed {o.seed}, {o.days} simulated days, {o.targets} targets "
        f"({', '.join(f'{n} {m}' for m, n in sorted(modes.items()))}); health every {o.health_hours} h, "
        f"rotation daily at 03:00",
        f"wall time {s.wall_seconds:.0f} s (rotation runs {s.run_seconds['rotation']:.0f} s, health runs "
        f"{s.run_seconds['health']:.0f} s); {s.requests} requests to the twin",
        f"rotations completed: {s.rotations} (rotation runs {s.rotation_runs}, health runs {s.health_runs}); "
        f"twin requests of rotation runs per rotation: {per_rotation}; unconfirmed pushes {s.unconfirmed_pushes}",
        f"transient faults hit: {sum(s.faults_hit.values())} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(s.faults_hit.items())) or 'none'}), answered by the "
        "product's bounded retries",
        f"crashes: {s.crashes}; runs of the restarted host that completed: {s.crashes_recovered} (a crash can hit "
        f"one); {pending}",
        f"interference: {sum(s.interference_kinds.values())} ({kinds})",
        f"interference outcomes: {outcomes}"
        + (f"; still open at the end: {dict(still_open)}" if still_open else ""),
        f"outage minutes (hourly samples): caused by the product {s.outage_minutes_product}, "
        f"during interference or an unrecovered crash {s.outage_minutes_interference}"
        + (f" ({', '.join(f'{k} {v}' for k, v in s.outage_by_cause.most_common())})" if s.outage_by_cause else ""),
        f"invariant violations: {len(sim.violations)}"
        + (f" ({', '.join(f'{k}: {v}' for k, v in Counter(v.invariant for v in sim.violations).items())})"
           if sim.violations else ""),
    ]


def render(sim: Simulation, command: str) -> str:
    lines = [f"$ {command}", *summary_lines(sim)]
    first: dict[tuple[str, str], Violation] = {}
    for violation in sim.violations:  # the first break of each invariant on each target
        first.setdefault((violation.invariant, violation.target), violation)
    for violation in list(first.values())[:6]:
        lines.append("")
        lines.append(f"BROKEN at {violation.at:%Y-%m-%d %H:%M}: {violation.invariant} ({violation.target}): "
                     f"{violation.detail}")
        lines.append("events that led to it:")
        lines.extend("  " + line for line in sim.failure_story(violation))
    return "\n".join(lines)


def render_markdown(sim: Simulation, command: str) -> str:
    return "```\n" + render(sim, command) + "\n```\n"
