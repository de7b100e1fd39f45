"""A model defined in one file and trained in another: resolution by the file system, facts in
the cache key, and nothing breaks when a neighbour is odd."""

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
    assert facts(dependencies(str(train), train.read_bytes())) == {expected_key: frozenset({"softmax"})}
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
