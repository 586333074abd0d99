"""Run one guide scenario against the twin through the product's real CLI, and render what it printed as the
scenario's page under docs/scenarios/.

The commands run in this process (`shared.cli.main`, the same entry point as `python -m shared`) with stdout
captured, so a page is exactly what a user sees. Pages carry real output; `normalise` masks what changes from
run to run (timings, timestamps, random ids, new secrets' hints) so the drift test compares behaviour, not noise.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.scenarios.library import GuideScenario
from tests.twin import Twin
from tests.world import TARGET, World

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs" / "scenarios"


@dataclass(frozen=True)
class Step:
    title: str
    command: tuple[str, ...]
    exit_code: int
    output: str
    # what CycleCloud's own Validate says about its account right after the step (None: it passes); not on the
    # page, it is the ground truth the tests hold "healthy" to
    cyclecloud_says: str | None = None


def cyclecloud_validation(twin: Twin) -> str | None:
    """CycleCloud's own answer to Configure > Cloud Provider Accounts > Credentials > Validate, from the twin."""
    from tests.twin.services.cyclecloud import validation_error
    from tests.world import CC_HOST

    with twin.state.lock:
        server = twin.state.cyclecloud_servers.get(CC_HOST)
        account = dict(server.accounts.get("azure") or {}) if server is not None else {}
    return validation_error(twin.state, account) if account else "no account"


@dataclass(frozen=True)
class ScenarioRun:
    scenario: GuideScenario
    steps: tuple[Step, ...]

    def step(self, *command: str) -> Step:
        return next(s for s in self.steps if s.command == command)


def environment(twin: Twin, scenario: GuideScenario, cc_ca: str, storage: str) -> dict[str, str]:
    """Load the scenario into the twin; the product's settings for it."""
    world: World = scenario.world
    loaded = world.scenario()
    if scenario.edit is not None:
        scenario.edit(loaded)
    twin.reset()
    twin.load(loaded)
    target = world.target(ca_bundle=cc_ca)
    target["rotation"] = {"test_successes": 1, "test_timeout_seconds": 20, "grace_hours": 0}
    if scenario.target_edit is not None:
        scenario.target_edit(target)
    env = world.env(ca_bundle=cc_ca, storage=storage)
    env["TARGETS"] = json.dumps([target])
    env["STATE_CONTAINER"] = f"scn-{uuid.uuid4().hex[:20]}"
    return env


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    os.environ.pop("TARGETS_FILE", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def cli(*args: str) -> tuple[int, str]:
    """`python -m shared <args>` in this process: (exit code, what it printed on stdout)."""
    from shared.adapters.cyclecloud import login_guard
    from shared.cli import main

    login_guard.reset()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(list(args))
    return code, out.getvalue()


def run_scenario(twin: Twin, scenario: GuideScenario, cc_ca: str, storage: str) -> ScenarioRun:
    env = environment(twin, scenario, cc_ca, storage)
    steps: list[Step] = []
    with _environ(env):
        plan: tuple[tuple[str, tuple[str, ...]], ...] = (
            ("What validate says", ("validate", TARGET)),
            ("What remediate would do (dry run: nothing changes)", ("remediate", TARGET, "--dry-run")),
            ("What remediate does", ("remediate", TARGET)))
        for title, command in plan:
            code, output = cli(*command)
            steps.append(Step(title, command, code, output, cyclecloud_validation(twin)))
        if scenario.follow_up is not None:
            scenario.follow_up.act(twin)
            follow = (*scenario.follow_up.command, TARGET)
            code, output = cli(*follow)
            steps.append(Step(f"{scenario.follow_up.description}: {' '.join(follow)}", follow, code, output,
                              cyclecloud_validation(twin)))
    return ScenarioRun(scenario, tuple(steps))


# -- the page -----------------------------------------------------------------------------------------------------


def page(run: ScenarioRun) -> str:
    s = run.scenario
    lines = [f"# {s.title}", "", f"Scenario `{s.name}` of the [scenario library](README.md).", "",
             f"**The guide:** {s.guide}", "",
             "**Expected diagnosis:** " + (", ".join(f"`{c}`" for c in s.expect) or "healthy, no finding"), ""]
    for step in run.steps:
        lines += [f"## {step.title}", "", "```", f"$ python -m shared {' '.join(step.command)}",
                  step.output.rstrip("\n"), "$ echo $?", str(step.exit_code), "```", ""]
    return "\n".join(lines)


def index(scenarios: tuple[GuideScenario, ...]) -> str:
    lines = [
        "# Scenario library", "",
        "Every failure the CycleCloud guide describes, reproduced in the Azure twin, with what `validate` says and "
        "what `remediate` does. Each page is the real output of the product's CLI, generated by "
        "`python -m tests.scenarios --write`; `tests/test_scenarios.py` fails when a page no longer matches what "
        "the CLI prints (timings, timestamps and random ids aside).", "",
        "| scenario | the guide's failure | diagnosis |", "|---|---|---|"]
    for s in scenarios:
        codes = ", ".join(f"`{c}`" for c in s.expect) or "healthy"
        lines.append(f"| [{s.name}]({s.name}.md) | {s.title} | {codes} |")
    return "\n".join(lines) + "\n"


# -- drift ----------------------------------------------------------------------------------------------------------

_STABLE_IDS: set[str] = set()


def _stable_ids() -> set[str]:
    if not _STABLE_IDS:
        import tests.scenarios.library as library
        import tests.world as world

        for module in (world, library):
            for value in vars(module).values():
                if isinstance(value, str):
                    _STABLE_IDS.update(m.lower() for m in _GUID.findall(value))
    return _STABLE_IDS


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|\+00:00)?( UTC)?"), "<time>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<version>"),
    (re.compile(r"\d+ ms\b"), "<n> ms"),
    (re.compile(r"\b\d+ s\b"), "<n> s"),
    (re.compile(r"\d+ (day|hour|minute)\(s\)"), r"<n> \1(s)"),
    (re.compile(r"starts '[^']{3}'"), "starts '<hint>'"),
    (re.compile(r"hint '[^']{3}'"), "hint '<hint>'"),
    (re.compile(r"hint=[^;\s]{1,3}"), "hint=<hint>"),
    (re.compile(r"ccremediator [0-9a-z-]+"), "ccremediator <operation>"),
    (re.compile(r" +$", re.MULTILINE), ""),
)


def normalise(text: str) -> str:
    stable = _stable_ids()
    text = _GUID.sub(lambda m: m.group(0) if m.group(0).lower() in stable else "<id>", text)
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    # column widths follow the longest value, which may be a masked one
    return re.sub(r"[ \t]{2,}", "  ", text)


def page_path(name: str) -> Path:
    return DOCS / f"{name}.md"


def write(runs: list[ScenarioRun], scenarios: tuple[GuideScenario, ...]) -> list[Path]:
    DOCS.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        path = page_path(run.scenario.name)
        path.write_text(page(run), encoding="utf-8")
        written.append(path)
    readme = DOCS / "README.md"
    readme.write_text(index(scenarios), encoding="utf-8")
    return [*written, readme]


def drift(run: ScenarioRun) -> str | None:
    """None when the committed page says what the CLI prints now; else a short description of the difference."""
    path = page_path(run.scenario.name)
    if not path.exists():
        return f"{path.relative_to(ROOT)} is missing; run `python -m tests.scenarios --write`"
    committed, current = normalise(path.read_text(encoding="utf-8")), normalise(page(run))
    if committed == current:
        return None
    import difflib

    diff = difflib.unified_diff(committed.splitlines(), current.splitlines(), "committed", "now", lineterm="", n=1)
    return "\n".join(list(diff)[:60])
