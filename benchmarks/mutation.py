"""Plant one loop mistake at a time into real training code and count how many are found.

    python benchmarks/mutation.py [--show missed|found|all] [--json OUT] [--jobs N] DIR [DIR ...]

Each DIR is a project (a training repository, an unpacked PyPI package). In every Python file
under it, each site where one of the five mistakes can be planted gets its own mutant: the file
with that one change, parsed again by libcst, then checked with `lint_bytes` as if it were the
file on disk (so the project's local imports count). A mutant is *found* when it has more
findings of the mistake's code than the original file has. The five mistakes:

- softmax-into-ce (LD001): the logits of a cross-entropy call wrapped in `torch.softmax`;
- zero-grad-hoisted (LD002): a `zero_grad()` in a loop that backpropagates moved to just before
  that loop;
- eval-deleted (LD003): a `.eval()` statement deleted;
- deepcopy-removed (LD004): `copy.deepcopy(x.state_dict())` replaced by `x.state_dict()`;
- unscale-deleted (LD005): a `scaler.unscale_(...)` statement deleted.

Not every planted change is a bug, so each mutant is labelled: a *real* bug is the mistake in a
setting where it changes what training does: nothing else in the loop clears the gradients that
the hoisted `zero_grad()` cleared; a clip follows the deleted `unscale_`; the snapshot
without its copy is kept in a name while training goes on; the model whose `eval()` is deleted
is run later in the same function, and its code base (the file's outermost package, else its
folder) has dropout or batch-norm layers, whose behaviour `eval()` changes. Detection rates are given per mistake over the real
ones, and over all; `--show missed` lists the real ones not found, for reading by hand.

That labelling is a rule of thumb, so every real mutant left undetected was read by hand; those
where the change turns out to alter nothing (the model handed in is already in eval mode, a
snapshot that is never read again) are listed in `NOT_A_BUG` with the reason, matched by file,
line and the line's text (so that a changed upstream file counts them as real again), and
reported on their own line rather than as real bugs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Callable, Iterator, Optional

import libcst as cst
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from loopdoctor.static import CheckOptions, lint_bytes  # noqa: E402
from loopdoctor.static.model import dotted  # noqa: E402

MISTAKES = {
    "softmax-into-ce": "LD001", "zero-grad-hoisted": "LD002", "eval-deleted": "LD003",
    "deepcopy-removed": "LD004", "unscale-deleted": "LD005",
}
MODE_DEPENDENT_LAYERS = re.compile(r"Dropout|BatchNorm|dropout|drop_rate|drop_path|SyncBatchNorm")
CLIP_CALL = re.compile(r"clip_grad|clip_gradient|clip_grad_norm")
OPTIONS = CheckOptions(select=["ALL"], cache_dir=None, respect_noqa=False)


# Labelled real by the rule above, read by hand, and no bug where they are:
# (mistake, path ending, line, the line's text, why). For the snapshots fetched on 2026-12-01.
YOLOV5_EVAL = "the model handed in is `ema.ema` (made with `.eval()`, never trained) or comes from `attempt_load`, which calls `.eval()`"
LIGHTNING_LOOP_STATE = ("a Lightning loop's `state_dict()` is a new dict of progress counters (`asdict` of each), no tensors "
                        "and nothing that later steps change")
NOT_A_BUG = (
    ("eval-deleted", "yolov5/val.py", 212, "model.eval()", YOLOV5_EVAL),
    ("eval-deleted", "yolov5/classify/val.py", 104, "model.eval()", YOLOV5_EVAL),
    ("eval-deleted", "yolov5/segment/val.py", 178, "model.eval()", YOLOV5_EVAL),
    ("eval-deleted", "yolov5/export.py", 1406, "model.eval()", "the model comes from `attempt_load`, which calls `.eval()`"),
    ("eval-deleted", "cleanrl/qdagger_dqn_atari_impalacnn.py", 247, "teacher_model.eval()",
     "the teacher's layers (defined in the file) hold no Dropout or BatchNorm"),
    ("eval-deleted", "d2l/torch.py", 2606, "self.model.eval()",
     "`validation_error` runs after `fit`, whose last epoch ends with `self.model.eval()` before its validation"),
    ("eval-deleted", "tests/test_layers_pool.py", 465, "pool.eval()",
     "the pooling layers built there have dropout 0 and LayerNorm only: both modes compute the same"),
    ("eval-deleted", "tests/test_layers_pool.py", 484, "pool.eval()",
     "the pooling layers built there have dropout 0 and LayerNorm only: both modes compute the same"),
    ("eval-deleted", "distributed/rpc/parameter_server/rpc_parameter_server.py", 200, "model.eval()",
     "`TrainerNet` holds no layers: its forward runs the parameter server's model over RPC, which its `eval()` never reaches"),
    ("eval-deleted", "skorch/tests/test_net.py", 3908, "self.module_.eval()",
     "the module the net is built with (`MyModule`, defined just above) is one Linear layer: both modes compute the same"),
    ("deepcopy-removed", "tests/test_optim.py", 88, "state_dict = deepcopy(optimizer.state_dict())",
     "`state_dict` is bound again (line 118) before it is ever read"),
    ("deepcopy-removed", "tests/test_optim.py", 118, "state_dict = deepcopy(optimizer.state_dict())",
     "compared with its twin right away, before the optimizer steps again; never read after"),
    ("deepcopy-removed", "tests/test_optim.py", 119, "state_dict_c = deepcopy(optimizer.state_dict())",
     "loaded into an optimizer on another device: `load_state_dict` copies each tensor there"),
    ("deepcopy-removed", "skorch/tests/callbacks/test_training.py", 603, "es_weights = deepcopy(net1.module_.state_dict())",
     "`net1` is not trained again after the snapshot (a second net is)"),
    ("deepcopy-removed", "pytorch/tuner/batch_size_scaling.py", 131, 'dumped_params["loop_state_dict"] = deepcopy(loop.state_dict())',
     LIGHTNING_LOOP_STATE),
    ("deepcopy-removed", "pytorch/tuner/lr_finder.py", 319, '"loop_state_dict": deepcopy(trainer.fit_loop.state_dict()),',
     LIGHTNING_LOOP_STATE),
)


@dataclass
class Mutant:
    mistake: str
    path: str
    line: int
    real: bool
    found: bool = False
    not_a_bug: str = ""  # why reading it showed that the labelled-real change alters nothing


# ---- finding the sites ---------------------------------------------------------------------
def _name(node: cst.CSTNode) -> str:
    return dotted(node) or ""


def _single_call_statement(node: cst.CSTNode, method: str) -> Optional[cst.Call]:
    """``x.method(...)`` alone on its line."""
    if isinstance(node, cst.SimpleStatementLine) and len(node.body) == 1 and isinstance(node.body[0], cst.Expr):
        call = node.body[0].value
        if isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute) and call.func.attr.value == method:
            return call
    return None


class Sites(cst.CSTVisitor):
    """Every node where a mistake can be planted, with its line and whether it would be a bug."""

    METADATA_DEPENDENCIES = (PositionProvider, ParentNodeProvider)

    def __init__(self, text: str, mode_layers: bool):
        self.text = text
        self.mode_layers = mode_layers  # does the file's code base have Dropout or BatchNorm?
        self.sites: list[tuple[str, cst.CSTNode, int, bool]] = []
        self.loops: dict[int, cst.CSTNode] = {}  # id(zero_grad statement) -> the loop it is hoisted out of
        self.imports_torch = bool(re.search(r"^\s*import torch\b", text, re.M))

    def _line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def _function_text(self, node: cst.CSTNode, after: bool) -> str:
        """The source of the function around ``node`` (the module, outside any) after ``node``,
        or before it."""
        function = node
        while function is not None and not isinstance(function, cst.FunctionDef):
            function = self.get_metadata(ParentNodeProvider, function, None)
        lines = self.text.splitlines()
        span = (1, len(lines)) if function is None else (
            self.get_metadata(PositionProvider, function).start.line, self.get_metadata(PositionProvider, function).end.line)
        line = self._line(node)
        return "\n".join(lines[line:span[1]] if after else lines[span[0] - 1:line - 1])

    def _is_cross_entropy(self, node: cst.Call) -> bool:
        """``F.cross_entropy(...)``, or a name whose last binding before the call in its function
        is ``nn.CrossEntropyLoss(...)`` (Hugging Face heads bind ``loss_fct`` to MSE, cross-entropy
        or BCE by problem type), or bound to one at module level, or a ``self.`` attribute bound
        to one anywhere."""
        name = _name(node.func)
        if name == "cross_entropy" or name.endswith(".cross_entropy"):
            return True
        if not name:
            return False
        binding = re.compile(rf"^[ \t]*{re.escape(name)}\s*=\s*(?:[\w.]+\.)?CrossEntropyLoss\(", re.M)
        if name.startswith("self."):
            return bool(binding.search(self.text))
        module_level = re.compile(rf"^{re.escape(name)}\s*=\s*(?:[\w.]+\.)?CrossEntropyLoss\(", re.M)
        bindings = re.findall(rf"^[ \t]*{re.escape(name)}[ \t]*=(?!=)[ \t]*(.*)$", self._function_text(node, after=False), re.M)
        if bindings:
            return re.match(r"(?:[\w.]+\.)?CrossEntropyLoss\(", bindings[-1]) is not None
        return bool(module_level.search(self.text))

    def _runs_after(self, node: cst.CSTNode, receiver: str) -> bool:
        """Is ``receiver`` run later in the function: called, asked to generate or predict, or
        handed to an evaluation helper?"""
        r = re.escape(receiver)
        run = re.compile(rf"\b{r}\s*\(|\b{r}\.(?:forward|generate|sample|predict|infer|encode|decode)\w*\(|"
                         rf"\b\w*(?:eval|valid|test|infer|predict|generate|sample)\w*\([^()\n]*\b{r}\b")
        return bool(run.search(self._function_text(node, after=True)))

    def visit_Call(self, node: cst.Call) -> None:
        name = _name(node.func)
        if self._is_cross_entropy(node) and node.args and node.args[0].keyword is None and not node.args[0].star and self.imports_torch:
            self.sites.append(("softmax-into-ce", node, self._line(node), True))
        if name.endswith("deepcopy") and len(node.args) == 1 and isinstance(node.args[0].value, cst.Call):
            inner = node.args[0].value
            if isinstance(inner.func, cst.Attribute) and inner.func.attr.value == "state_dict":
                parent = self.get_metadata(ParentNodeProvider, node)
                kept = isinstance(parent, (cst.Assign, cst.AnnAssign, cst.DictElement, cst.Element)) or (
                    isinstance(parent, cst.Arg) and not _name(self.get_metadata(ParentNodeProvider, parent).func).endswith("save"))
                self.sites.append(("deepcopy-removed", node, self._line(node), kept))

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        evaluation = _single_call_statement(node, "eval")
        if evaluation is not None and not evaluation.args:
            receiver = _name(evaluation.func.value)
            real = self.mode_layers and bool(receiver) and self._runs_after(node, receiver)
            self.sites.append(("eval-deleted", node, self._line(node), real))
        if _single_call_statement(node, "unscale_") is not None:
            after = self._function_text(node, after=True)
            self.sites.append(("unscale-deleted", node, self._line(node), bool(CLIP_CALL.search(after))))
        if _single_call_statement(node, "zero_grad") is not None:
            loop = self._innermost_loop(node)
            body = cst.Module([]).code_for_node(loop) if loop is not None else ""
            if ".backward(" in body:
                self.loops[id(node)] = loop
                # A bug only if nothing else in the loop clears the gradients (yolov5 clears both
                # before its batch loop and inside it).
                alone = body.count("zero_grad(") == 1 and ".grad = None" not in body
                self.sites.append(("zero-grad-hoisted", node, self._line(node), alone))

    def _innermost_loop(self, node: cst.CSTNode) -> Optional[cst.CSTNode]:
        current = self.get_metadata(ParentNodeProvider, node, None)
        while current is not None and not isinstance(current, (cst.FunctionDef, cst.ClassDef)):
            if isinstance(current, (cst.For, cst.While)):
                return current
            current = self.get_metadata(ParentNodeProvider, current, None)
        return None


# ---- planting one -------------------------------------------------------------------------
class Plant(cst.CSTTransformer):
    """Plant ``mistake`` at ``target`` (a node of the original tree) and nowhere else."""

    def __init__(self, mistake: str, target: cst.CSTNode, loop: Optional[cst.CSTNode] = None):
        super().__init__()
        self.mistake, self.target, self.loop = mistake, target, loop

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if original is not self.target:
            return updated
        if self.mistake == "softmax-into-ce":
            first = updated.args[0]
            wrapped = cst.parse_expression(f"torch.softmax({cst.Module([]).code_for_node(first.value)}, dim=1)")
            return updated.with_changes(args=[first.with_changes(value=wrapped), *updated.args[1:]])
        return updated.args[0].value  # deepcopy-removed

    def leave_SimpleStatementLine(self, original, updated):
        if original is self.target:
            return cst.RemoveFromParent()
        return updated

    def leave_IndentedBlock(self, original, updated):
        return updated if updated.body else updated.with_changes(body=[cst.SimpleStatementLine([cst.Pass()])])

    def _hoist(self, original, updated):
        if original is self.loop:
            return cst.FlattenSentinel([self.target.with_changes(leading_lines=()), updated])
        return updated

    leave_For = _hoist
    leave_While = _hoist


def plant(wrapper: MetadataWrapper, sites: Sites, mistake: str, target: cst.CSTNode) -> Optional[str]:
    try:
        code = wrapper.module.visit(Plant(mistake, target, sites.loops.get(id(target)))).code
        cst.parse_module(code)
    except Exception:  # a planted change that does not make valid code is not planted
        return None
    return code


# ---- running -------------------------------------------------------------------------------
def python_files(root: str) -> Iterator[str]:
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in sorted(files):
            if file.endswith(".py"):
                yield os.path.join(directory, file)


def count(data: bytes, path: str, code: str) -> int:
    return sum(finding.code == code for finding in lint_bytes(data, path, OPTIONS).findings)


def mutants_of(task: tuple[str, bool]) -> list[Mutant]:
    return list(_mutants_of(*task))


def _mutants_of(path: str, mode_layers: bool) -> Iterator[Mutant]:
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        text = handle.read()
    if "torch" not in text:
        return
    try:
        wrapper = MetadataWrapper(cst.parse_module(text))
    except Exception:
        return
    sites = Sites(wrapper.module.code, mode_layers)
    wrapper.visit(sites)
    baseline: dict[str, int] = {}
    for mistake, node, line, real in sites.sites:
        code = plant(wrapper, sites, mistake, node)
        if code is None:
            continue
        rule = MISTAKES[mistake]
        if rule not in baseline:
            baseline[rule] = count(text.encode("utf-8", "surrogateescape"), path, rule)
        found = count(code.encode("utf-8", "surrogateescape"), path, rule) > baseline[rule]
        why = _not_a_bug(mistake, path, line, text) if real else ""
        yield Mutant(mistake, path, line, real and not why, found, why)


def _not_a_bug(mistake: str, path: str, line: int, text: str) -> str:
    lines = text.splitlines()
    source = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    for entry_mistake, ending, entry_line, entry_source, why in NOT_A_BUG:
        if (entry_mistake, entry_line, entry_source) == (mistake, line, source) and path.replace(os.sep, "/").endswith(ending):
            return why
    return ""


def code_base_of(path: str) -> str:
    """The folder whose code a file's models come from: its outermost package, else its folder
    (pytorch/examples holds one project per folder)."""
    directory = os.path.dirname(os.path.abspath(path))
    while os.path.exists(os.path.join(os.path.dirname(directory), "__init__.py")):
        directory = os.path.dirname(directory)
    return directory


@lru_cache(maxsize=None)
def has_mode_layers(code_base: str) -> bool:
    for path in python_files(code_base):
        with open(path, encoding="utf-8", errors="ignore") as handle:
            if MODE_DEPENDENT_LAYERS.search(handle.read()):
                return True
    return False


def rate(mutants: list[Mutant], keep: Callable[[Mutant], bool]) -> str:
    chosen = [m for m in mutants if keep(m)]
    if not chosen:
        return "-"
    found = sum(m.found for m in chosen)
    return f"{found}/{len(chosen)} = {found / len(chosen):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--show", choices=("missed", "found", "all"), help="list the real mutants of that kind")
    parser.add_argument("--json", help="write every mutant to this file")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="worker processes")
    args = parser.parse_args()
    mutants: list[Mutant] = []
    by_project: dict[str, list[Mutant]] = defaultdict(list)
    with multiprocessing.Pool(args.jobs) as pool:
        for root in args.dirs:
            tasks = [(path, has_mode_layers(code_base_of(path))) for path in python_files(root)]
            for planted in pool.imap(mutants_of, tasks):
                mutants.extend(planted)
                by_project[root].extend(planted)
            print(f"{root}: {len(by_project[root])} mutants", file=sys.stderr)
    print(f"{'mistake':20s} {'real bugs found':>22s} {'all planted found':>22s}")
    for mistake in MISTAKES:
        print(f"{mistake:20s} {rate(mutants, lambda m: m.mistake == mistake and m.real):>22s} "
              f"{rate(mutants, lambda m: m.mistake == mistake):>22s}")
    print(f"{'overall':20s} {rate(mutants, lambda m: m.real):>22s} {rate(mutants, lambda m: True):>22s}")
    print("\nper project (real bugs found):")
    for root, planted in by_project.items():
        counts = Counter((m.mistake, m.found) for m in planted if m.real)
        cells = ", ".join(f"{mistake} {counts[(mistake, True)]}/{counts[(mistake, True)] + counts[(mistake, False)]}"
                          for mistake in MISTAKES if counts[(mistake, True)] + counts[(mistake, False)])
        print(f"  {root}: {cells or 'no real bug planted'}")
    reviewed = [m for m in mutants if m.not_a_bug]
    if reviewed:
        print(f"\nlabelled real but no bug where planted, read by hand ({len(reviewed)}, not counted as real):")
        for mutant in reviewed:
            print(f"  {mutant.mistake:18s} {mutant.path}:{mutant.line} {'found' if mutant.found else 'missed'}: {mutant.not_a_bug}")
    if args.show:
        wanted = {"missed": lambda m: not m.found, "found": lambda m: m.found, "all": lambda m: True}[args.show]
        print(f"\nreal mutants, {args.show}:")
        for mutant in mutants:
            if mutant.real and wanted(mutant):
                print(f"  {mutant.mistake:18s} {mutant.path}:{mutant.line} {'found' if mutant.found else 'missed'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([asdict(m) for m in mutants], handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
