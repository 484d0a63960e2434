"""Static checks of the step images (no container engine runs here, so nothing is built in CI).

What each image must contain is derived from the code, not from a hand-kept list:

* Python dependencies: every ``import`` of the image's step modules and, transitively, of the ``steps.*``
  helpers they import (function-level imports included, ``if TYPE_CHECKING:`` blocks excluded), mapped to the
  distribution that provides it. The image installs what ``uv export --frozen --no-dev --extra ...`` of the
  extras named in its Dockerfile yields (the same command the Dockerfile runs), so that set must cover them.
* External binaries: program names that reach ``subprocess`` / ``shutil.which`` in those modules, found by a
  small data-flow pass: literal argv lists, module-level string constants, arguments of the module's own
  functions whose parameter reaches such a call (e.g. ``find_tool("pg_dump")``), and the ``default=`` of a
  click option whose parameter does (e.g. ``--redis-server``). Commands sent through a pod executor
  (``executor.exec(pod, [...])``) run inside the pods, not in the image, and are not counted.
* Step modules a module runs itself (``[sys.executable, "-m", "steps.<m>", "<action>"]``, also
  ``f"steps.{name}"`` over the module names it lists in its constants) belong to the image too: all their
  imports, and the binaries their ``<action>`` reaches.

One test per image also runs the Python side of the runtime stage for real: the Dockerfile's own ``uv export``
installed hash-checked into a fresh venv, then every module the image runs must start.

Each Dockerfile declares the modules and binaries it provides in ``ARG STEP_MODULES`` / ``ARG STEP_BINARIES``
and checks them at build time (``python -m steps.<m> --help``, ``command -v``); these tests tie those
declarations to ``images/images.yaml`` and to the code.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.markers import Marker
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from workflows.config import parse_config
from workflows.images import image_key, image_ref, load_images

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
SPEC: dict[str, Any] = yaml.safe_load((IMAGES / "images.yaml").read_text(encoding="utf-8"))
KEYS: list[str] = list(SPEC["images"])
MODULE_ROWS = [(key, module) for key in KEYS for module in SPEC["images"][key]["modules"]]
SECRET_NAME = re.compile(r"PASSW(OR)?D|PASSPHRASE|TOKEN|SECRET|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE|_KEY$", re.I)
SECRET_VALUE = re.compile(r"AKIA[0-9A-Z]{16}|-----BEGIN|ghp_[A-Za-z0-9]{20,}|xox[bp]-|eyJ[A-Za-z0-9_-]{10,}\.")
# Files that must never enter an image (and so must never be in the build context).
SECRET_FILES = [
    ".env",
    "steps/.env.local",
    "workflows/prod.env",
    "kubeconfig",
    "steps/kubeconfig.yaml",
    "tenant.kubeconfig",
    ".kube/config",
    "steps/.aws/credentials",
    ".docker/config.json",
    ".netrc",
    "tls.key",
    "steps/client.pem",
    "workflows/id_rsa",
    "id_ed25519.pub",
    "store.p12",
]
SHELL_TOOLS = {
    "curl",
    "wget",
    "git",
    "gnupg",
    "gpg",
    "openssh-client",
    "ssh",
    "vim",
    "vim-tiny",
    "nano",
    "less",
    "sudo",
    "netcat",
    "netcat-openbsd",
    "netcat-traditional",
    "telnet",
    "procps",
    "build-essential",
    "gcc",
    "make",
    "kubectl",
}


# ---- Dockerfile parsing -----------------------------------------------------------------------------


@dataclass
class Instruction:
    """One Dockerfile instruction (continuations joined, comments dropped)."""

    keyword: str
    args: str
    line: int

    def json_form(self) -> list[str] | None:
        """The exec (JSON array) form of ENTRYPOINT/CMD/RUN, or ``None`` for the shell form."""
        try:
            value = json.loads(self.args)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@dataclass
class Stage:
    """A build stage: its FROM line and the instructions after it."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """Instructions of one kind, in order."""
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    """A parsed Dockerfile: global ARGs (before the first FROM) and the stages."""

    path: Path
    global_args: dict[str, str | None]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        """The stage that becomes the image."""
        return self.stages[-1]

    def stage_args(self, stage: Stage) -> dict[str, str | None]:
        """``ARG NAME[=default]`` declared in a stage."""
        return dict(_arg(i.args) for i in stage.all("ARG"))


def _arg(text: str) -> tuple[str, str | None]:
    name, eq, default = text.partition("=")
    if not eq:
        return name.strip(), None
    words = shlex.split(default)
    return name.strip(), words[0] if words else ""


def parse_dockerfile(path: Path) -> Dockerfile:
    """Parse enough of the Dockerfile syntax for these checks (no heredocs)."""
    instructions: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue  # comments (also inside continuations) and blank lines
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        keyword, _, args = " ".join(b for b in buffer if b).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = []
    assert not buffer, f"{path}: ends inside a line continuation"
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            assert ins.keyword == "ARG", f"{path}:{ins.line}: only ARG may precede the first FROM"
            global_args.update([_arg(ins.args)])
        else:
            stages[-1].instructions.append(ins)
    assert stages, f"{path}: no FROM"
    return Dockerfile(path, global_args, stages)


@cache
def dockerfile(key: str) -> Dockerfile:
    """The parsed ``images/<key>/Dockerfile``."""
    path = IMAGES / key / "Dockerfile"
    assert path.is_file(), f"image {key!r} is listed in images/images.yaml but {path.relative_to(ROOT)} is missing"
    return parse_dockerfile(path)


def export_command(key: str) -> list[str]:
    """The ``uv export ...`` command of the image's build stage, as argv."""
    for stage in dockerfile(key).stages:
        for run in stage.all("RUN"):
            for part in re.split(r"&&|;", run.args):
                words = shlex.split(part)
                if words[:2] == ["uv", "export"]:
                    return words
    raise AssertionError(f"images/{key}/Dockerfile: no `uv export` (the requirements must come from uv.lock)")


def declared_extras(key: str) -> list[str]:
    """The extras the image installs (``--extra X`` of its ``uv export``)."""
    words = export_command(key)
    return [words[i + 1] for i, w in enumerate(words) if w == "--extra"]


def declared_list(key: str, name: str) -> set[str]:
    """A whitespace-separated ``ARG NAME="..."`` of the final stage."""
    args = dockerfile(key).stage_args(dockerfile(key).final)
    assert name in args, f"images/{key}/Dockerfile: the final stage must declare ARG {name} (build-time self-check)"
    return set((args[name] or "").split())


# ---- what the code needs ------------------------------------------------------------------------------


def module_path(dotted: str) -> Path | None:
    """The file of a ``steps.*`` module or package, if it exists."""
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


@cache
def parse_module(dotted: str) -> ast.Module:
    """The AST of a ``steps.*`` module."""
    path = module_path(dotted)
    assert path is not None, f"{dotted} not found"
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _package_of(dotted: str) -> str:
    path = module_path(dotted)
    return dotted if path is not None and path.name == "__init__.py" else dotted.rpartition(".")[0]


def imports_of(dotted: str) -> tuple[set[str], set[str]]:
    """``(steps modules, other top-level names)`` imported by one module (running a module runs its packages)."""
    internal: set[str] = set()
    external: set[str] = set()

    def add(name: str) -> None:
        if name == "steps" or name.startswith("steps."):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                if module_path(".".join(parts[:i])) is not None:
                    internal.add(".".join(parts[:i]))
        else:
            external.add(name.split(".", maxsplit=1)[0])

    for node in runtime_nodes(parse_module(dotted)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(dotted).split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            add(source)
            if source == "steps" or source.startswith("steps."):
                for alias in node.names:  # `from steps.storage import stream` imports a module
                    if module_path(f"{source}.{alias.name}") is not None:
                        add(f"{source}.{alias.name}")
    internal.discard(dotted)
    return internal, external


def closure(modules: list[str]) -> list[str]:
    """The step modules of an image plus every ``steps.*`` module they import, transitively."""
    seen: list[str] = []
    todo = [f"steps.{m}" for m in modules if module_path(f"steps.{m}") is not None]
    todo += ["steps"]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        todo.extend(sorted(imports_of(current)[0] - set(seen)))
    return sorted(seen)


@cache
def distributions_of_import() -> dict[str, list[str]]:
    """Top-level import name → distributions providing it (from the dev environment, every extra installed)."""
    return {k: [str(canonicalize_name(d)) for d in v] for k, v in importlib.metadata.packages_distributions().items()}


def required_distributions(modules: list[str]) -> dict[str, set[str]]:
    """Distribution → the step modules that import it (one of the names, when several provide an import)."""
    needed: dict[str, set[str]] = {}
    unknown: list[str] = []
    for dotted in closure(modules):
        for name in imports_of(dotted)[1]:
            if name in sys.stdlib_module_names or name == "__future__":
                continue
            dists = distributions_of_import().get(name)
            if not dists:
                unknown.append(f"{dotted} imports {name}")
                continue
            needed.setdefault("|".join(sorted(set(dists))), set()).add(dotted)
    assert not unknown, f"imports no locked distribution provides: {'; '.join(sorted(unknown))}"
    return needed


@cache
def installed_distributions(extras: tuple[str, ...]) -> frozenset[str]:
    """What the image's ``pip install -r`` gets: ``uv export`` of the extras, markers evaluated for the image."""
    argv = [uv_binary(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "--no-hashes"]
    for extra in extras:
        argv += ["--extra", extra]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, f"uv export {' '.join(extras)} failed: {out.stderr.strip()}"
    minor = re.search(r"python:(\d+\.\d+)", SPEC["build"]["python_image"])
    assert minor, "build.python_image must name a Python minor version (python:3.X-...)"
    environment = {"python_version": minor.group(1), "sys_platform": "linux", "platform_system": "Linux"}
    names = set()
    for line in out.stdout.splitlines():
        if not line or line.startswith(("#", " ", "-")):
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(environment):
            continue
        names.add(str(canonicalize_name(re.split(r"[=<>~! \[]", requirement.strip())[0])))
    return frozenset(names)


# -- binaries and sub-invoked step modules: a small data-flow pass over the closure's modules

SUBPROCESS_ARGV = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}
SUBPROCESS_PROGRAM = {"create_subprocess_exec", "execv", "execvp", "execve", "execvpe", "spawnv", "spawnvp"}


@dataclass
class Function:
    """A function or method defined in a steps module."""

    module: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    is_method: bool

    @property
    def params(self) -> list[str]:
        args = self.node.args
        names = [a.arg for a in (*args.posonlyargs, *args.args)]
        return names[1:] if self.is_method and names and names[0] in ("self", "cls") else names

    @property
    def all_params(self) -> set[str]:
        args = self.node.args
        return {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}


@dataclass
class PythonRun:
    """``[sys.executable, "-m", "steps.<m>", "<action>", ...]``: step modules run in the same image."""

    module: str
    site: int | None
    candidates: list[str]
    action: str | None


@dataclass
class BinaryScan:
    """Program-name and argv sinks per function, the programs found and the step modules run, by call site."""

    functions: dict[tuple[str, str], list[Function]]
    imported: dict[str, dict[str, tuple[str, str]]]
    constants: dict[str, dict[str, ast.expr]]
    program_sinks: dict[int, set[str]] = field(default_factory=dict)
    argv_sinks: dict[int, set[str]] = field(default_factory=dict)
    found: dict[str, set[tuple[str, int | None]]] = field(default_factory=dict)
    python_runs: list[PythonRun] = field(default_factory=list)


def _scan_tables(modules: list[str]) -> BinaryScan:
    functions: dict[tuple[str, str], list[Function]] = {}
    imported: dict[str, dict[str, tuple[str, str]]] = {}
    constants: dict[str, dict[str, ast.expr]] = {}
    for dotted in modules:
        tree = parse_module(dotted)
        imported[dotted] = {}
        constants[dotted] = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.setdefault((dotted, node.name), []).append(Function(dotted, node, False))
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        name = node.name if item.name == "__init__" else f".{item.name}"
                        functions.setdefault((dotted, name), []).append(Function(dotted, item, True))
            elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        constants[dotted][target.id] = node.value
        for imp in runtime_nodes(tree):
            if not isinstance(imp, ast.ImportFrom) or not imp.module:
                continue
            if imp.module.startswith("steps") or imp.module in ("subprocess", "shutil", "os", "asyncio", "sys"):
                for alias in imp.names:
                    imported[dotted][alias.asname or alias.name] = (imp.module, alias.name)
    return BinaryScan(functions, imported, constants)


def _module_level(tree: ast.Module) -> Iterator[ast.AST]:
    """Nodes of a module outside its functions and classes (code that runs at import)."""
    stack: list[ast.AST] = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.ClassDef):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _call_kind(scan: BinaryScan, module: str, call: ast.Call) -> str | None:
    """``argv``/``program``/``which`` for subprocess-like calls and shutil.which, else ``None``."""
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        owner, name = func.value.id, func.attr
    elif isinstance(func, ast.Name) and func.id in scan.imported[module]:
        owner, name = scan.imported[module][func.id]
    else:
        return None
    if owner == "shutil" and name == "which":
        return "which"
    if owner == "subprocess" and name in SUBPROCESS_ARGV:
        return "argv"
    if owner in ("os", "asyncio") and name in SUBPROCESS_PROGRAM:
        return "program"
    return None


def _resolve(scan: BinaryScan, module: str, call: ast.Call) -> list[Function]:
    """The steps functions a call may reach: plain calls and constructors, not methods of other objects."""
    return _resolve_ref(scan, module, call.func)


def _resolve_ref(scan: BinaryScan, module: str, ref: ast.expr) -> list[Function]:
    if isinstance(ref, ast.Name):
        if (module, ref.id) in scan.functions:
            return scan.functions[(module, ref.id)]
        source = scan.imported[module].get(ref.id)
        if source is not None and source in scan.functions:
            return scan.functions[source]
    if isinstance(ref, ast.Attribute) and isinstance(ref.value, ast.Name) and ref.value.id in ("self", "cls"):
        return scan.functions.get((module, f".{ref.attr}"), [])
    return []


def _bound(target: Function, call: ast.Call) -> Iterator[tuple[str, ast.expr]]:
    params = target.params
    for i, arg in enumerate(call.args):
        if isinstance(arg, ast.Starred) or i >= len(params):
            break
        yield params[i], arg
    for kw in call.keywords:
        if kw.arg is not None:
            yield kw.arg, kw.value


def _programs(scan: BinaryScan, module: str, fn: Function | None, expr: ast.expr, kind: str, site: int | None) -> bool:
    """Record what ``expr`` contributes as a program (or argv) at ``site``; True if a sink set grew."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str) and expr.value.strip():
        program = expr.value.split()[0] if kind == "argv" else expr.value  # argv as a string: shell=True
        scan.found.setdefault(program, set()).add((module, site))
        return False
    if isinstance(expr, ast.List | ast.Tuple) and kind == "argv" and expr.elts:
        if _python_run(scan, module, expr.elts, site):
            return False
        return _programs(scan, module, fn, expr.elts[0], "program", site)
    if isinstance(expr, ast.Name):
        if fn is not None and expr.id in fn.all_params:
            sinks = scan.argv_sinks if kind == "argv" else scan.program_sinks
            before = len(sinks.setdefault(id(fn), set()))
            sinks[id(fn)].add(expr.id)
            return len(sinks[id(fn)]) > before
        if expr.id in scan.constants[module]:
            return _programs(scan, module, None, scan.constants[module][expr.id], kind, site)
    return False


def _python_run(scan: BinaryScan, module: str, argv: list[ast.expr], site: int | None) -> bool:
    """Record ``[python, "-m", "steps.<m>", action?]``; True if ``argv`` is a Python interpreter run."""
    first = argv[0]
    is_python = (isinstance(first, ast.Attribute) and first.attr == "executable") or (
        isinstance(first, ast.Constant) and first.value in ("python", "python3")
    )
    if not is_python:
        return False
    if len(argv) < 3 or not (isinstance(argv[1], ast.Constant) and argv[1].value == "-m"):
        return True  # python running a script or -c: nothing the image must add
    target = argv[2]
    if isinstance(target, ast.Constant) and isinstance(target.value, str):
        name = target.value
        candidates = [name.removeprefix("steps.")] if name.startswith("steps.") else []
        if not name.startswith("steps."):
            return True  # a third-party module: covered by the imports check
    elif isinstance(target, ast.JoinedStr) and ast.unparse(target).startswith(("f'steps.{", 'f"steps.{')):
        # f"steps.{name}": the step modules the module names in its constants (e.g. KNOWN_COMPONENTS).
        named = {
            elt.value
            for value in scan.constants[module].values()
            if isinstance(value, ast.Tuple | ast.List | ast.Set)
            for elt in value.elts
            if isinstance(elt, ast.Constant) and isinstance(elt.value, str)
        }
        candidates = sorted(n for n in named if n.isidentifier() and module_path(f"steps.{n}") is not None)
    else:
        candidates = []
    action = argv[3].value if len(argv) > 3 and isinstance(argv[3], ast.Constant) else None
    scan.python_runs.append(PythonRun(module, site, candidates, action if isinstance(action, str) else None))
    return True


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _click_dest(call: ast.Call) -> str | None:
    names = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    plain = [n for n in names if n.isidentifier()]
    if plain:
        return plain[0]
    longs = sorted((n for n in names if n.startswith("--")), key=len, reverse=True)
    return longs[0][2:].replace("-", "_") if longs else None


def _action_functions(scan: BinaryScan, module: str, action: str | None) -> list[Function]:
    """The functions registered as ``action`` (``@action(cli, "name")`` or by function name); all if None."""
    fns = [f for (m, _), fs in scan.functions.items() if m == module for f in fs]
    if action is None:
        return fns
    chosen = []
    for fn in fns:
        for deco in fn.node.decorator_list:
            if not isinstance(deco, ast.Call) or ast.unparse(deco.func).rpartition(".")[2] != "action":
                continue
            named = [a for a in deco.args[1:2] if isinstance(a, ast.Constant)]
            named += [k.value for k in deco.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)]
            name = named[0].value if named else fn.node.name.replace("_", "-")
            if name == action:
                chosen.append(fn)
    return chosen


def _reachable(scan: BinaryScan, entries: list[Function]) -> set[int]:
    """Functions reachable from ``entries``: calls, and functions passed as values (callbacks, threads)."""
    seen: set[int] = set()
    todo = list(entries)
    while todo:
        fn = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        for node in ast.walk(fn.node):
            if isinstance(node, ast.Name | ast.Attribute):
                todo.extend(f for f in _resolve_ref(scan, fn.module, node) if id(f) not in seen)
    return seen


@dataclass
class ImageNeeds:
    """What an image needs, derived from its modules' code."""

    modules: list[str]
    binaries: dict[str, set[str]]
    problems: list[str]
    run_by: dict[str, set[str]]


@cache
def image_needs(modules: tuple[str, ...]) -> ImageNeeds:
    """Modules an image runs (its own, plus those they run with ``python -m``) and the programs they run."""
    full = sorted(m for m in modules if module_path(f"steps.{m}") is not None)
    runs: dict[str, set[str | None]] = {}
    while True:
        scan = _scan_tables(closure(sorted({*full, *runs})))
        everything = [f for fs in scan.functions.values() for f in fs]
        changed = True
        while changed:
            changed = False
            scopes: list[tuple[str, Function | None, Iterator[ast.AST]]] = [
                (f.module, f, ast.walk(f.node)) for f in everything
            ]
            scopes += [(m, None, _module_level(parse_module(m))) for m in scan.imported]
            for module, fn, nodes in scopes:
                site = id(fn) if fn is not None else None
                for node in nodes:
                    if not isinstance(node, ast.Call):
                        continue
                    kind = _call_kind(scan, module, node)
                    first = (
                        node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "args"), None)
                    )
                    if kind is not None and first is not None:
                        changed |= _programs(scan, module, fn, first, "program" if kind == "which" else kind, site)
                    for target in _resolve(scan, module, node):
                        for param, arg in _bound(target, node):
                            if param in scan.program_sinks.get(id(target), set()):
                                changed |= _programs(scan, module, fn, arg, "program", site)
                            if param in scan.argv_sinks.get(id(target), set()):
                                changed |= _programs(scan, module, fn, arg, "argv", site)
        own = set(closure(full))
        entries = [f for f in everything if f.module in own]
        for sub, actions in runs.items():
            for action in actions:
                entries += _action_functions(scan, f"steps.{sub}", action)
        live = _reachable(scan, entries)
        problems = []
        run_by: dict[str, set[str]] = {}
        grown = False
        for run in scan.python_runs:
            if run.site is not None and run.site not in live:
                continue
            if not run.candidates:
                problems.append(f"{run.module} runs `python -m` with a step module this check cannot name")
            for candidate in run.candidates:
                run_by.setdefault(f"steps.{candidate}", set()).add(run.module)
                if candidate not in full and run.action not in runs.setdefault(candidate, set()):
                    runs[candidate].add(run.action)
                    grown = True
        if not grown:
            break
    for fn in everything:  # click options whose value is a program name
        if id(fn) not in live:
            continue
        for deco in fn.node.decorator_list:
            if isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "option":
                dest = _click_dest(deco)
                default = _keyword(deco, "default")
                if dest in scan.program_sinks.get(id(fn), set()) and default is not None:
                    _programs(scan, fn.module, None, default, "program", id(fn))
    binaries = {
        program: {module for module, site in sites if site is None or site in live}
        for program, sites in scan.found.items()
        if program != "python"
    }
    live_binaries = {p: users for p, users in binaries.items() if users}
    return ImageNeeds(sorted({*full, *runs}), live_binaries, problems, run_by)


# ---- images.yaml and the templates ------------------------------------------------------------------


def test_images_yaml_is_what_the_generator_reads() -> None:
    catalog = load_images(IMAGES)
    assert sorted(catalog.module_to_key) == sorted(m for _, m in MODULE_ROWS)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]*", key) for key in KEYS), "image keys are image-name safe"
    build = SPEC["build"]
    assert build["python_digest"] is None or re.fullmatch(r"sha256:[0-9a-f]{64}", build["python_digest"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(build["uv_version"]))


@pytest.mark.parametrize("key", KEYS)
def test_every_image_has_a_dockerfile(key: str) -> None:
    assert dockerfile(key).stages


@dataclass
class Container:
    """A container of a compiled template: its image, command, and the uid it runs as (if set)."""

    source: str
    image: str
    command: list[str]
    run_as_user: int | None


@cache
def golden_containers() -> list[Container]:
    """Every container (or script) of the compiled golden YAML under tests/golden."""
    found: list[Container] = []

    def walk(node: Any, source: str, uid: int | None) -> None:
        if isinstance(node, dict):
            context = node.get("securityContext")
            if isinstance(context, dict) and isinstance(context.get("runAsUser"), int):
                uid = context["runAsUser"]
            image = node.get("image")
            if isinstance(image, str):
                command = node.get("command")
                found.append(Container(source, image, command if isinstance(command, list) else [], uid))
            for value in node.values():
                walk(value, source, uid)
        elif isinstance(node, list):
            for value in node:
                walk(value, source, uid)

    for path in sorted((ROOT / "tests" / "golden").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            walk(doc, str(path.relative_to(ROOT)), None)
    return found


def template_image_refs() -> tuple[str, list[str]]:
    """Image references the compiled templates name: the golden YAML if there is any, else via workflows.images."""
    refs = [c.image for c in golden_containers()]
    if refs:
        return "golden YAML under tests/golden", refs
    # No compiled templates are checked in: the templates name images only through workflows.images,
    # so check every module's image as the generator computes it.
    config = parse_config({})
    catalog = load_images(IMAGES)
    return "workflows.images (no golden YAML)", [image_ref(config, catalog.key_for(m)) for _, m in MODULE_ROWS]


def test_every_image_a_template_names_has_a_dockerfile() -> None:
    source, refs = template_image_refs()
    ours = {ref: image_key(ref) for ref in refs}
    assert any(ours.values()), f"{source}: no tenant-dr-<key> image found among {sorted(set(refs))}"
    for ref, key in ours.items():
        if key is None:
            continue  # e.g. a third-party image in an onboarding template
        assert key in KEYS, f"{source}: {ref} is not an image key of images/images.yaml"
        assert (IMAGES / key / "Dockerfile").is_file(), f"{source}: {ref} has no images/{key}/Dockerfile"


def test_templates_run_each_module_in_the_image_that_has_it() -> None:
    containers = [c for c in golden_containers() if image_key(c.image) is not None]
    if not containers:
        pytest.skip("no golden YAML under tests/golden (the generator's mapping is checked above)")
    for c in containers:
        key = image_key(c.image)
        if c.command[:2] == ["python", "-m"] and c.command[2].startswith("steps."):
            module = c.command[2].removeprefix("steps.")
            assert module in SPEC["images"][str(key)]["modules"], f"{c.source}: {c.image} does not run steps.{module}"
        if c.run_as_user is not None:
            uid = dockerfile(str(key)).final.all("USER")[-1].args.partition(":")[0]
            assert c.run_as_user == int(uid), f"{c.source}: runAsUser {c.run_as_user} but {c.image} has USER {uid}"


@pytest.mark.parametrize(("key", "module"), MODULE_ROWS, ids=[f"{k}-{m}" for k, m in MODULE_ROWS])
def test_listed_module_exists(key: str, module: str) -> None:
    if module_path(f"steps.{module}") is None:
        # The step modules are being written in parallel; this is the one case allowed to be pending.
        pytest.xfail(f"module listed in images.yaml but steps/{module}.py is missing")
    tree = parse_module(f"steps.{module}")
    mains = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    assert mains, f"steps/{module}.py has no `if __name__ == '__main__':` entry point (python -m steps.{module})"


# ---- what each image installs ------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_image_installs_the_extras_its_modules_import(key: str) -> None:
    modules = SPEC["images"][key]["modules"]
    extras = declared_extras(key)
    optional = tomllib_load()["project"]["optional-dependencies"]
    assert all(e in optional for e in extras), f"images/{key}/Dockerfile: unknown extra in {extras}"
    installed = installed_distributions(tuple(extras))
    needs = image_needs(tuple(modules))
    missing = []
    for dists, importers in sorted(required_distributions(needs.modules).items()):
        if not set(dists.split("|")) & installed:
            users = {
                f"{u} (run by {', '.join(sorted(needs.run_by[u]))})" if u in needs.run_by else u for u in importers
            }
            providers = sorted(e for e, reqs in optional.items() if any(_req_name(r) in dists.split("|") for r in reqs))
            missing.append(f"{dists} (imported by {', '.join(sorted(users))}; extra: {', '.join(providers) or '?'})")
    assert not missing, f"images/{key}/Dockerfile (extras {extras}) does not install: " + "; ".join(missing)


@cache
def tomllib_load() -> dict[str, Any]:
    """pyproject.toml."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _req_name(requirement: str) -> str:
    return str(canonicalize_name(re.split(r"[=<>~!;\[ ]", requirement, maxsplit=1)[0]))


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("key", KEYS)
def test_every_dependency_has_a_wheel_for_the_image(key: str, arch: str) -> None:
    # The image installs with --only-binary=:all: (no compiler in it), on amd64 and arm64 alike.
    minor = re.search(r"python:3\.(\d+)", SPEC["build"]["python_image"])
    assert minor
    version = (3, int(minor.group(1)))
    platforms = [f"manylinux_2_{n}_{arch}" for n in range(36, 4, -1)]  # bookworm: glibc 2.36
    platforms += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}", "linux_" + arch]
    supported = {*cpython_tags(version, platforms=platforms), *compatible_tags(version, platforms=platforms)}
    wheels: dict[str, list[str]] = {}
    for package in tomllib_load_lock()["package"]:
        urls = [w.get("url") or w.get("path", "") for w in package.get("wheels", [])]
        wheels.setdefault(str(canonicalize_name(package["name"])), []).extend(urls)
    lacking = []
    for name in sorted(installed_distributions(tuple(declared_extras(key)))):
        tags = [parse_wheel_filename(u.rsplit("/", 1)[-1])[3] for u in wheels.get(name, [])]
        if not any(t & supported for t in tags):
            lacking.append(name)
    assert not lacking, f"images/{key}: no {arch} wheel for Python 3.{version[1]} in uv.lock: {lacking}"


@cache
def tomllib_load_lock() -> dict[str, Any]:
    """uv.lock."""
    import tomllib

    return tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))


@pytest.mark.parametrize("key", KEYS)
def test_image_provides_the_binaries_its_modules_run(key: str) -> None:
    needs = image_needs(tuple(SPEC["images"][key]["modules"]))
    assert not needs.problems, f"images/{key}: {'; '.join(needs.problems)}"
    provided = declared_list(key, "STEP_BINARIES")
    missing = {b: sorted(users) for b, users in needs.binaries.items() if b not in provided}
    assert not missing, f"images/{key}/Dockerfile: STEP_BINARIES lacks programs the code runs: {missing}"


@pytest.mark.parametrize("key", KEYS)
def test_image_self_check_covers_its_modules(key: str) -> None:
    listed = set(SPEC["images"][key]["modules"])
    required = listed | set(image_needs(tuple(listed)).modules)  # also the modules they run with `python -m`
    declared = declared_list(key, "STEP_MODULES")
    assert required <= declared, f"images/{key}/Dockerfile: STEP_MODULES lacks {sorted(required - declared)}"
    unknown = {m for m in declared - listed if module_path(f"steps.{m}") is None}
    assert not unknown, f"images/{key}/Dockerfile: STEP_MODULES names no step module {sorted(unknown)}"
    runs = " ".join(r.args for r in dockerfile(key).final.all("RUN"))
    assert 'python -m "steps.$m" --help' in runs and 'command -v "$b"' in runs, "the build-time self-check is gone"


@pytest.mark.parametrize("key", KEYS)
def test_entrypoint_runs_the_step_module(key: str) -> None:
    modules = SPEC["images"][key]["modules"]
    final = dockerfile(key).final
    entrypoint = final.all("ENTRYPOINT")[-1].json_form()
    cmd = final.all("CMD")[-1].json_form() if final.all("CMD") else []
    if len(modules) == 1:
        assert entrypoint == ["python", "-m", f"steps.{modules[0]}"]
    else:  # several modules share the image: the module is the first argument
        assert entrypoint == ["python", "-m"]
        assert cmd and cmd[0] in {f"steps.{m}" for m in modules}


@pytest.mark.parametrize("key", KEYS)
def test_dependencies_are_hash_pinned_from_the_lock(key: str) -> None:
    words = export_command(key)
    assert "--frozen" in words and "--no-dev" in words and "--no-emit-project" in words
    final_runs = [r.args for r in dockerfile(key).final.all("RUN") if "pip install" in r.args]
    assert final_runs, f"images/{key}/Dockerfile: the runtime stage installs nothing"
    installs = [c for r in final_runs for c in r.split("&&") if "pip install" in c]
    for command in installs:
        assert "--require-hashes" in command or "--no-deps" in command, f"unpinned install: {command.strip()}"
    assert any("--require-hashes" in c and "--only-binary=:all:" in c for c in installs)


@pytest.mark.parametrize("key", KEYS)
def test_base_images_are_pinned(key: str) -> None:
    df = dockerfile(key)
    build = SPEC["build"]
    assert df.global_args.get("PYTHON_IMAGE") == build["python_image"], "ARG PYTHON_IMAGE default != images.yaml"
    assert df.final.base == "${PYTHON_IMAGE}", "the runtime stage is the shared Python base"
    stage_names = {s.name for s in df.stages if s.name}
    for stage in df.stages:
        if stage.base in stage_names:
            continue
        pinned = stage.base
        if pinned.startswith("${"):
            pinned = df.global_args.get(pinned.strip("${}")) or ""
        assert pinned, f"images/{key}/Dockerfile: FROM {stage.base} has no default"
        tag = pinned.rsplit("/", 1)[-1].partition(":")[2]
        assert "@sha256:" in pinned or (tag and tag != "latest"), f"images/{key}/Dockerfile: unpinned base {pinned}"
        if "UV_VERSION" in df.stage_args(stage):
            assert df.stage_args(stage)["UV_VERSION"] == str(build["uv_version"]), "ARG UV_VERSION != images.yaml"


# ---- hardening -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_image_runs_as_non_root(key: str) -> None:
    final = dockerfile(key).final
    users = final.all("USER")
    assert users, f"images/{key}/Dockerfile: the final stage has no USER"
    last_user = users[-1]
    uid, _, gid = last_user.args.partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot can verify it)"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    after = [i for i in final.instructions if i.line > last_user.line]
    assert all(i.keyword in {"ARG", "RUN", "ENTRYPOINT", "CMD", "LABEL", "ENV", "WORKDIR"} for i in after)
    creates = " ".join(r.args for r in final.all("RUN"))
    assert f"--uid {uid}" in creates, f"the image creates no user {uid} (libpq and others look up the uid)"


@pytest.mark.parametrize("key", KEYS)
def test_no_secret_is_baked_in(key: str) -> None:
    df = dockerfile(key)
    declared: list[tuple[str, str | None]] = list(df.global_args.items())
    for stage in df.stages:
        declared += list(df.stage_args(stage).items())
        for env in stage.all("ENV"):
            for word in shlex.split(env.args):
                env_name, _, env_value = word.partition("=")
                declared.append((env_name, env_value))
    for name, value in declared:
        assert not SECRET_NAME.search(name), f"images/{key}/Dockerfile: ARG/ENV {name} looks like a secret"
        assert not SECRET_VALUE.search(value or ""), f"images/{key}/Dockerfile: {name} holds a credential"
    sent = {"pyproject.toml", "uv.lock", "README.md", "steps", "workflows"}
    for stage in df.stages:
        for copy in [*stage.all("COPY"), *stage.all("ADD")]:
            words = copy.args.split()
            if any(w.startswith("--from=") for w in words):
                continue
            assert copy.keyword == "COPY", "ADD fetches unverified content; COPY from the context instead"
            sources = [w for w in words if not w.startswith("--")][:-1]
            assert set(sources) <= sent, f"images/{key}/Dockerfile:{copy.line}: copies {sources}"


@pytest.mark.parametrize("key", KEYS)
def test_no_shell_tools_in_the_runtime_stage(key: str) -> None:
    for run in dockerfile(key).final.all("RUN"):
        for command in run.args.split("&&"):
            words = shlex.split(command.replace(";", " "))
            if "apt-get" in words and "install" in words[words.index("apt-get") :]:
                packages = {w for w in words[words.index("install") + 1 :] if not w.startswith("-")}
                assert not packages & SHELL_TOOLS, f"images/{key}/Dockerfile installs {packages & SHELL_TOOLS}"


def postgres_client_major() -> int:
    """The PostgreSQL client major of the postgres image."""
    value = dockerfile("postgres").global_args.get("PG_MAJOR")
    assert value and value.isdigit()
    return int(value)


def test_postgres_client_dumps_every_supported_server() -> None:
    # pg_dump refuses servers newer than itself; 17 is the newest PostgreSQL major the steps support.
    assert postgres_client_major() >= 17
    final = dockerfile("postgres").final
    env = " ".join(e.args for e in final.all("ENV"))
    assert "/usr/lib/postgresql/${PG_MAJOR}/bin" in env, "PATH must put the pinned client first"


# ---- build context and build script ------------------------------------------------------------------


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw.lstrip("!").strip()).lstrip("/")
        regex = re.compile(_glob_to_regex(pattern))
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def _glob_to_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def dockerignore_patterns() -> list[str]:
    """The patterns of .dockerignore, in order."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def context_files() -> list[str] | None:
    """Files of the working tree the build context would hold, or ``None`` outside a git checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True
    )
    if listed.returncode != 0:
        return None
    patterns = dockerignore_patterns()
    return [p for p in listed.stdout.splitlines() if (ROOT / p).is_file() and not dockerignore_excludes(p, patterns)]


def test_dockerignore_keeps_secrets_out_of_the_context() -> None:
    patterns = dockerignore_patterns()
    for path in SECRET_FILES:
        assert dockerignore_excludes(path, patterns), f".dockerignore lets {path} into the build context"
    needed = ["pyproject.toml", "uv.lock", "README.md", "steps/__init__.py", "steps/runtime/cli.py"]
    needed += ["workflows/__init__.py", "workflows/config.py"]
    for path in needed:
        assert not dockerignore_excludes(path, patterns), f".dockerignore drops {path}, which the images need"
    sent = context_files()
    if sent is not None:  # not a git checkout (e.g. an sdist): the sample paths above still apply
        assert sent, "the build context would be empty"
        assert all(p.split("/")[0] in {"pyproject.toml", "uv.lock", "README.md", "steps", "workflows"} for p in sent)


@pytest.fixture(scope="module")
def build_stage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The build context as .dockerignore leaves it, and the wheel its build stage builds: ``(context, wheel)``."""
    context = tmp_path_factory.mktemp("context")
    files = context_files()
    if files is None:
        files = ["pyproject.toml", "uv.lock", "README.md"]
        files += [str(p.relative_to(ROOT)) for d in ("steps", "workflows") for p in (ROOT / d).rglob("*.py")]
    for name in files:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, context / name)
    out = context / "out"
    built = subprocess.run(
        [uv_binary(), "build", "--wheel", "--out-dir", str(out)], cwd=context, capture_output=True, text=True
    )
    assert built.returncode == 0, f"uv build --wheel in the build context failed: {built.stderr.strip()[-2000:]}"
    return context, next(out.glob("*.whl"))


def uv_binary() -> str:
    """The uv executable (the images export their requirements with it)."""
    uv = shutil.which("uv")
    assert uv is not None, "uv is not on PATH (the image requirements are exported from uv.lock with uv)"
    return uv


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_image_python_environment_starts_its_modules(key: str, build_stage: tuple[Path, Path], tmp_path: Path) -> None:
    """The runtime stage's Python side, without an engine: a fresh venv gets exactly what the Dockerfile installs
    (its own `uv export` command, hash-checked, wheels only, then the wheel with --no-deps), and every module of
    the image must start (`python -m steps.<m> --help`, the Dockerfile's self-check)."""
    context, wheel = build_stage
    export = export_command(key)
    requirements = tmp_path / "requirements.txt"
    export[export.index("--output-file") + 1] = str(requirements)
    uv = uv_binary()
    python = str(tmp_path / "venv" / "bin" / "python")
    install = [uv, "pip", "install", "--quiet", "--python", python]
    steps = [
        [uv, *export[1:]],
        [uv, "venv", "--quiet", "--python", sys.executable, str(tmp_path / "venv")],
        [*install, "--require-hashes", "--only-binary", ":all:", "-r", str(requirements)],
        [*install, "--no-deps", str(wheel)],
    ]
    for argv in steps:
        done = subprocess.run(argv, cwd=context, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(argv[:3])}: {done.stderr.strip()[-2000:]}"
    env = {"PATH": f"{tmp_path / 'venv' / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    # The image's modules (a missing one is the xfail above) and those they run with `python -m`.
    modules = image_needs(tuple(SPEC["images"][key]["modules"])).modules
    # The first run writes the bytecode (pip compiles at install time in the image); the rest then run together.
    for batch in (modules[:1], modules[1:]):
        running = {
            m: subprocess.Popen(
                ["python", "-m", f"steps.{m}", "--help"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for m in batch
        }
        for module, proc in running.items():
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, f"images/{key}: python -m steps.{module} --help: {err.decode()[-2000:]}"


def test_build_script_tags_images_as_the_templates_name_them(tmp_path: Path) -> None:
    config_file = tmp_path / "tenant.yaml"
    config_file.write_text("images:\n  registry: registry.corp.example:5000/dr\n  tag: '2026.11.1'\n")
    config = parse_config(yaml.safe_load(config_file.read_text()))
    env = {**os.environ, "TENANT_DR_PYTHON": sys.executable}
    out = subprocess.run(
        ["bash", str(IMAGES / "build.sh"), "--dry-run", "--config", str(config_file), "--platform", "linux/amd64"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    commands = [shlex.split(line) for line in out.stdout.splitlines()]
    assert [c[:3] for c in commands] == [["docker", "buildx", "build"]] * len(KEYS)
    for key, argv in zip(KEYS, commands, strict=True):
        assert argv[argv.index("--tag") + 1] == image_ref(config, key)
        assert argv[argv.index("--file") + 1] == f"images/{key}/Dockerfile"
        assert "--push" in argv and argv[-1] == "."
        build_args = {argv[i + 1] for i, w in enumerate(argv) if w == "--build-arg"}
        assert f"PYTHON_IMAGE={SPEC['build']['python_image']}" in build_args


def test_build_script_flags_override_the_config(tmp_path: Path) -> None:
    env = {**os.environ, "TENANT_DR_PYTHON": sys.executable}
    script = str(IMAGES / "build.sh")
    ok = subprocess.run(
        ["bash", script, "--dry-run", "--registry", "r.example/x", "--tag", "t1", "--load", "redis"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    argv = shlex.split(ok.stdout)
    assert argv[argv.index("--tag") + 1] == "r.example/x/tenant-dr-redis:t1" and "--load" in argv
    bad = subprocess.run(
        ["bash", script, "--dry-run", "--registry", "r.example/x", "--tag", "t1", "nosuch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "unknown image nosuch" in bad.stderr and not bad.stdout
