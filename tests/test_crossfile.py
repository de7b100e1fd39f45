"""A model defined in one file and trained in another, and an evaluation function called from
another file: resolution by the file system, facts in the cache key, and nothing breaks when a
neighbour is odd."""

import pytest

from loopdoctor.static.crossfile import dependencies, facts

SOFTMAX_MODEL = """from torch import nn


class Net(nn.Module):
    def forward(self, x):
        return self.fc(x).softmax(dim=1)
"""
LOGIT_MODEL = SOFTMAX_MODEL.replace(".softmax(dim=1)", "")
TRAIN = """import torch.nn.functional as F
{import_line}


def train(loader, optimizer):
    model = {constructor}()
    for xb, yb in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
"""


def project(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize("layout, import_line, constructor, expected_key", [
    ({"network.py": SOFTMAX_MODEL}, "from network import Net", "Net", "network.Net"),
    ({"network.py": SOFTMAX_MODEL}, "from network import Net as Model", "Model", "network.Net"),
    ({"network.py": SOFTMAX_MODEL}, "import network as nw", "nw.Net", "network.Net"),
    ({"models/network.py": SOFTMAX_MODEL}, "from models.network import Net", "Net", "models.network.Net"),
    ({"models/__init__.py": "", "models/network.py": SOFTMAX_MODEL}, "from models import network", "network.Net", "models.network.Net"),
], ids=["sibling", "alias", "module-alias", "subdirectory", "package-module"])
def test_imported_softmax_model_is_found(cli, tmp_path, layout, import_line, constructor, expected_key):
    root = project(tmp_path, {**layout, "train.py": TRAIN.format(import_line=import_line, constructor=constructor)})
    train = root / "train.py"
    squashes = facts(dependencies(str(train), train.read_bytes())).squashes
    assert list(squashes) == [expected_key] and {"module", "softmax"} <= squashes[expected_key]
    result = cli("check", "--output-format", "json", root / "train.py")  # one file, as pre-commit passes it
    assert [f["code"] for f in result.json()] == ["LD001"]


def test_relative_import_inside_a_package(cli, tmp_path):
    root = project(tmp_path, {
        "app/__init__.py": "",
        "app/nets/__init__.py": "",
        "app/nets/network.py": SOFTMAX_MODEL,
        "app/training/__init__.py": "",
        "app/training/loop.py": TRAIN.format(import_line="from ..nets.network import Net", constructor="Net"),
    })
    result = cli("check", "--output-format", "json", root / "app")
    assert [(f["filename"].rsplit("/", 1)[-1], f["code"]) for f in result.json()] == [("loop.py", "LD001")]


def test_editing_the_model_file_rechecks_the_training_file(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPDOCTOR_CACHE_DIR", str(tmp_path / "cache"))
    root = project(tmp_path / "src", {"network.py": SOFTMAX_MODEL, "train.py": TRAIN.format(import_line="from network import Net", constructor="Net")})
    assert cli("check", root / "train.py").code == 1
    (root / "network.py").write_text(LOGIT_MODEL)
    assert cli("check", root / "train.py").code == 0  # the cached finding is not reused
    (root / "network.py").write_text(SOFTMAX_MODEL)
    assert cli("check", root / "train.py").code == 1


def test_a_model_that_returns_logits_is_fine(cli, tmp_path):
    root = project(tmp_path, {"network.py": LOGIT_MODEL, "train.py": TRAIN.format(import_line="from network import Net", constructor="Net")})
    assert cli("check", root).code == 0


@pytest.mark.parametrize("neighbour", [
    "class Net(nn.Module:\n    def forward(self, x): return x.softmax(1)\n",  # syntax error
    b"\xff\xfe not utf-8 softmax def forward",
], ids=["syntax-error", "undecodable"])
def test_an_odd_neighbour_is_reported_on_its_own_and_breaks_nothing(cli, tmp_path, neighbour):
    (tmp_path / "network.py").write_bytes(neighbour if isinstance(neighbour, bytes) else neighbour.encode())
    (tmp_path / "train.py").write_text(TRAIN.format(import_line="from network import Net", constructor="Net"))
    result = cli("check", "--output-format", "json", tmp_path)
    assert "Traceback" not in result.err
    assert {(f["filename"].rsplit("/", 1)[-1], f["code"]) for f in result.json()} == {("network.py", "LD000")}


def test_parallel_workers_see_the_same_facts(cli, tmp_path):
    files = {"network.py": SOFTMAX_MODEL}
    files.update({f"train_{i}.py": TRAIN.format(import_line="from network import Net", constructor="Net") for i in range(4)})
    root = project(tmp_path, files)
    one = cli("check", "--jobs", "1", "--no-cache", "--output-format", "json", root).json()
    two = cli("check", "--jobs", "2", "--no-cache", "--output-format", "json", root).json()
    assert one == two and [f["code"] for f in one] == ["LD001"] * 4


EVALUATE = """import torch


def test_epoch(model, loader, log=print):
    with torch.no_grad():
        for x, y in loader:
            log(model(x).sum())
"""
CALLER = """import torch
from torch import nn
{import_line}


def main(loader):
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    {before}{call}
"""


def caller(import_line="from train import test_epoch", call="test_epoch(model, loader)", before=""):
    return CALLER.format(import_line=import_line, call=call, before=before)


def ld003(cli, path):
    return [(f["filename"].rsplit("/", 1)[-1], f["location"]["row"], f["message"])
            for f in cli("check", "--no-cache", "--output-format", "json", path).json() if f["code"] == "LD003"]


@pytest.mark.parametrize("layout, import_line, call", [
    ({"train.py": EVALUATE}, "from train import test_epoch", "test_epoch(model, loader)"),
    ({"train.py": EVALUATE}, "from train import test_epoch as evaluate", "evaluate(model, loader)"),
    ({"train.py": EVALUATE}, "import train", "train.test_epoch(model, loader)"),
    ({"train.py": EVALUATE}, "import train as t", "t.test_epoch(loader=loader, model=model)"),
    ({"utils/__init__.py": "", "utils/train.py": EVALUATE}, "from utils import train", "train.test_epoch(model, loader)"),
    ({"utils/__init__.py": "", "utils/train.py": EVALUATE}, "from utils.train import test_epoch", "test_epoch(model, loader)"),
], ids=["from-import", "alias", "module", "module-alias-keywords", "package-module", "package-function"])
def test_an_evaluation_called_from_another_file_with_a_training_model(cli, tmp_path, layout, import_line, call):
    root = project(tmp_path, {**layout, "main.py": caller(import_line, call)})
    callee = next(name for name in layout if name.endswith("train.py"))
    findings = ld003(cli, root / callee)  # the callee alone, as pre-commit passes it: its callers are found on disk
    assert [(name, row) for name, row, _ in findings] == [("train.py", 7)]
    where = "../main.py:13" if "/" in callee else "main.py:13"
    assert f"`test_epoch()` is called with it in training mode from {where})" in findings[0][2]


@pytest.mark.parametrize("main", [
    caller(before="model.eval()\n    "),  # the caller evaluates in eval mode
    caller(call="test_epoch(model.eval(), loader)"),
    caller(import_line="from train import test_epoch as unused", call="print(model)"),  # imported, not called
    "import train\n",  # no call at all
], ids=["eval-first", "eval-inline", "not-called", "imported-only"])
def test_an_evaluation_whose_callers_elsewhere_hand_in_eval_mode_is_fine(cli, tmp_path, main):
    root = project(tmp_path, {"train.py": EVALUATE, "main.py": main})
    assert ld003(cli, root) == []


def test_one_training_caller_among_several_is_enough_and_each_is_counted(cli, tmp_path):
    root = project(tmp_path, {"train.py": EVALUATE, "main.py": caller(), "finetune.py": caller(), "report.py": caller(before="model.eval()\n    ")})
    [(_, _, message)] = ld003(cli, root / "train.py")
    assert "from finetune.py:13 and 1 more" in message


def test_editing_a_caller_rechecks_the_evaluation_function(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPDOCTOR_CACHE_DIR", str(tmp_path / "cache"))
    root = project(tmp_path / "src", {"train.py": EVALUATE, "main.py": caller()})
    assert cli("check", root / "train.py").code == 1
    (root / "main.py").write_text(caller(before="model.eval()\n    "))
    assert cli("check", root / "train.py").code == 0  # the cached finding is not reused
    (root / "main.py").write_text(caller())
    assert cli("check", root / "train.py").code == 1


def test_a_broken_caller_breaks_nothing(cli, tmp_path):
    root = project(tmp_path, {"train.py": EVALUATE, "main.py": caller() + "\ndef broken(:\n"})
    result = cli("check", "--no-cache", "--output-format", "json", root)
    assert "Traceback" not in result.err
    assert {(f["filename"].rsplit("/", 1)[-1], f["code"]) for f in result.json()} == {("main.py", "LD000")}


NETWORK = """from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 2), {layer})

    def forward(self, x):
        return self.body(x)
"""
WRAPPER = """from torch import nn

from loading import load_weights


class Backend(nn.Module):
    def __init__(self, path):
        super().__init__()
        model = load_weights(path)  # returns a module in eval mode
        self.model = model

    def forward(self, x):
        return self.model(x)
"""
SAMPLE = """import torch
from network import {cls}


model = {cls}({args})
{prepare}with torch.no_grad():
    print(model(torch.ones(1, 2)))
"""


@pytest.mark.parametrize("network, cls, args, prepare, expected", [
    (NETWORK.format(layer="nn.Dropout(0.1)"), "Net", "", "", ["LD003"]),
    (NETWORK.format(layer="nn.Dropout(0.1)"), "Net", "", "model.eval()\n", []),
    (NETWORK.format(layer="nn.ReLU()"), "Net", "", "", []),  # nothing differs between the modes
    (NETWORK.format(layer="nn.Dropout(0.1)").replace("        self.body =", "        self.eval()\n        self.body ="), "Net", "", "", []),
    (WRAPPER, "Backend", "'weights.pt'", "", []),  # the wrapped module's mode is its loader's business
], ids=["dropout-flagged", "eval-called", "no-mode-dependent-layer", "constructor-evals", "wrapper"])
def test_a_model_built_from_a_class_of_another_file(cli, tmp_path, network, cls, args, prepare, expected):
    root = project(tmp_path, {"network.py": network, "sample.py": SAMPLE.format(cls=cls, args=args, prepare=prepare)})
    result = cli("check", "--no-cache", "--output-format", "json", root / "sample.py")
    assert [f["code"] for f in result.json()] == expected


TRAIN_AND_EVALUATE = """import torch


def train_one_epoch(model, loader, optimizer):
    model.train()
    for x, y in loader:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def evaluate(model, loader):
    {prepare}with torch.no_grad():
        return sum(model(x).sum() for x, _ in loader)
"""
EPOCHS = """import torch
from factory import build

from train import evaluate, train_one_epoch


def main(loader):
    model = build()  # a factory of another library: its mode is not known here
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(3):
        train_one_epoch(model, loader, optimizer)
        {evaluation}
"""


@pytest.mark.parametrize("prepare, evaluation, expected", [
    ("", "evaluate(model, loader)", [("train.py", "LD003")]),  # train_one_epoch left it training
    ("model.eval()\n    ", "evaluate(model, loader)", []),
    ("", "model.eval()\n        evaluate(model, loader)", []),
    ("", "with torch.no_grad():\n            model(torch.ones(1, 2))", [("main.py", "LD003")]),  # in the caller itself
], ids=["evaluate-after-training", "evaluate-evals", "caller-evals", "caller-evaluates"])
def test_a_function_of_another_file_that_sets_the_mode(cli, tmp_path, prepare, evaluation, expected):
    root = project(tmp_path, {"factory.py": "def build():\n    pass\n", "train.py": TRAIN_AND_EVALUATE.format(prepare=prepare),
                              "main.py": EPOCHS.format(evaluation=evaluation)})
    result = cli("check", "--no-cache", "--output-format", "json", root)
    assert [(f["filename"].rsplit("/", 1)[-1], f["code"]) for f in result.json()] == expected


def test_an_evaluation_reached_through_a_function_of_its_own_file(cli, tmp_path):
    """mnist_hogwild: `main.py` calls `test(model)`, which calls `test_epoch(model)` beside it."""
    wrapper = EVALUATE + "\n\ndef test(model, loader):\n    test_epoch(model, loader)\n"
    root = project(tmp_path, {"train.py": wrapper, "main.py": caller(import_line="from train import test", call="test(model, loader)")})
    assert [(name, row) for name, row, _ in ld003(cli, root / "train.py")] == [("train.py", 7)]


def test_an_evaluation_loop_without_no_grad_asks_for_its_callers_too(cli, tmp_path):
    loop_only = "def test_epoch(model, val_loader):\n    for x, y in val_loader:\n        print(model(x).sum())\n"
    root = project(tmp_path, {"train.py": loop_only, "main.py": caller(call="test_epoch(model, loader)")})
    assert [(name, row) for name, row, _ in ld003(cli, root / "train.py")] == [("train.py", 3)]


PREDICT = "def predict_labels(net, x):\n    return net(x).argmax(dim=1)\n"


@pytest.mark.parametrize("main, expected", [
    (None, "no code in this project calls `predict_labels()`"),  # d2l's `predict_snli` without its `net.eval()`
    (caller(import_line="from helpers import predict_labels", call="predict_labels(model, x)"), "called with it in training mode from main.py:13"),
    (caller(import_line="from helpers import predict_labels", call="predict_labels(model, x)", before="model.eval()\n    "), None),
], ids=["no-caller", "training-caller", "eval-caller"])
def test_a_prediction_function_takes_the_mode_its_callers_hand_in(cli, tmp_path, main, expected):
    root = project(tmp_path, {"helpers.py": PREDICT, **({"main.py": main} if main else {})})
    findings = ld003(cli, root / "helpers.py")
    assert [(name, row) for name, row, _ in findings] == ([("helpers.py", 2)] if expected else [])
    assert expected is None or expected in findings[0][2]
