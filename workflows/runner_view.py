"""What ``tenant-dr run`` shows while it runs and when it ends.

A live tree of nodes on a terminal, one line per node change otherwise (pipes, CI), then a summary table.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from workflows.runner import DONE, ERROR, FAILED, RUNNING, SKIPPED, SUCCEEDED, Listener, Node, Runner, RunResult

STYLE = {SUCCEEDED: "green", FAILED: "red", ERROR: "red bold", RUNNING: "cyan", SKIPPED: "dim", "Omitted": "dim"}
ICON = {SUCCEEDED: "✔", FAILED: "✖", ERROR: "‼", RUNNING: "▶", SKIPPED: "○", "Omitted": "○", "Pending": "…"}


def _path(node: Node, workflow: str) -> str:
    return node.name.removeprefix(workflow + ".") if node.name != workflow else workflow


def _dur(node: Node) -> str:
    return f"{node.duration:.1f}s" if node.started is not None else ""


class PlainView(Listener):
    """One line per node state change: good for logs and CI."""

    def __init__(self, out: TextIO, workflow: str) -> None:
        self.out = out
        self.workflow = workflow
        self.seen: dict[str, tuple[str, str]] = {}
        self.lock = threading.Lock()

    def changed(self, node: Node) -> None:
        """Print the node when its phase (or pending message) changed."""
        state = (node.phase, node.message if node.phase == "Pending" else "")
        with self.lock:
            if not node.id or self.seen.get(node.id) == state or (node.phase == "Pending" and not node.message):
                return
            self.seen[node.id] = state
            stamp = time.strftime("%H:%M:%S")
            extra = f" ({_dur(node)})" if node.phase in DONE else ""
            msg = f": {node.message}" if node.message and node.phase != SUCCEEDED else ""
            line = f"{stamp} {node.phase:<9} {_path(node, self.workflow)} [{node.template}]{extra}{msg}"
            self.out.write(line + "\n")
            self.out.flush()

    def waiting(self, message: str) -> None:
        """Print what the run waits for."""
        with self.lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} Pending   {message}\n")
            self.out.flush()


class LiveView(Listener):
    """A rich live tree, refreshed a few times a second."""

    def __init__(self, console: Console, runner: Runner) -> None:
        self.console = console
        self.runner = runner
        self.note = ""
        self.live = Live(console=console, refresh_per_second=4, transient=False, get_renderable=self._render)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.refresh()
        self.live.__exit__(*exc)

    def waiting(self, message: str) -> None:
        """Show what the run waits for."""
        self.note = message

    def _label(self, node: Node) -> Text:
        style = STYLE.get(node.phase, "yellow")
        text = Text(f"{ICON.get(node.phase, '?')} ", style=style)
        text.append(node.display, style="bold" if node.parent is None else "")
        text.append(f"  {node.phase}", style=style)
        if node.started is not None:
            text.append(f"  {_dur(node)}", style="dim")
        if node.message and node.phase != SUCCEEDED:
            text.append(f"  {node.message[:160]}", style="dim" if node.phase not in (FAILED, ERROR) else "red")
        return text

    def _render(self) -> Any:
        with self.runner.lock:
            roots = [n for n in self.runner.nodes if n.parent is None]
            trees = []
            for root in roots:
                tree = Tree(self._label(root))
                self._add(tree, root)
                trees.append(tree)
        if not trees and self.note:
            return Text(self.note, style="yellow")
        return Group(*trees)

    def _add(self, tree: Tree, node: Node) -> None:
        for child in node.children:
            self._add(tree.add(self._label(child)), child)


def _rows(node: Node) -> list[tuple[Node, int]]:
    """Summary rows: one per leaf call (a retry node counts its attempts)."""
    if node.type == "Retry":
        return [(node, len(node.children))]
    if node.type in ("Pod", "Suspend", "Skipped"):
        return [(node, 1 if node.type == "Pod" and node.started else 0)]
    rows: list[tuple[Node, int]] = []
    for child in node.children:
        rows += _rows(child)
    return rows


def summary(console: Console, runner: Runner, result: RunResult) -> None:
    """Print the summary table, metrics and where the logs are."""
    table = Table(title=f"tenant-dr run: {result.name} ({runner.target.name})", title_justify="left")
    for column in ("step", "template", "phase", "duration", "attempts", "message / last error"):
        table.add_column(column, overflow="fold")
    roots = [result.root] + ([result.exit_node] if result.exit_node else [])
    for root in roots:
        for node, attempts in _rows(root):
            detail = node.error_line or node.message if node.phase in (FAILED, ERROR) else node.message
            table.add_row(
                _path(node, result.name),
                node.template,
                Text(node.phase, style=STYLE.get(node.phase, "")),
                _dur(node),
                str(attempts) if attempts else "",
                detail,
            )
    console.print(table)
    for metric in result.metrics:
        if "error" in metric:
            console.print(f"metric {metric['name']}: cannot compute: {metric['error']}")
            continue
        labels = ",".join(f'{k}="{v}"' for k, v in metric["labels"].items())
        console.print(f"metric (not exported) {metric['name']}{{{labels}}} {metric['value']}")
    style = STYLE.get(result.phase, "")
    line = Text(f"workflow {result.name} ", style="bold")
    line.append(result.phase, style=style)
    if result.message and result.phase != SUCCEEDED:
        line.append(f": {result.message}")
    line.append(f"  (exit {result.exit_code}; logs {result.run_dir / 'logs'}; report {result.run_dir / 'run.json'})")
    console.print(line)
