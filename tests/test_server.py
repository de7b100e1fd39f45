"""`loopdoctor server` driven over stdio by a real LSP client (pygls's), as an editor drives it.

One server process serves the whole module; each test opens its own documents.
"""

import asyncio
import json
import sys
import threading
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT

pytest.importorskip("pygls")
from lsprotocol import types  # noqa: E402
from pygls.lsp.client import LanguageClient  # noqa: E402

BUGGY = (FIXTURES / "ticket_trainer_no_eval.py").read_text()  # LD003 on line 32
AMP_CLIP = (FIXTURES / "ticket_trainer_amp_clip.py").read_text()  # LD005 with a safe fix
TIMEOUT = 30


class Session:
    """A client on its own event loop thread; tests call it synchronously."""

    def __init__(self, root: Path, command=(sys.executable, "-m", "loopdoctor", "server")):
        self.command = command
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.diagnostics: dict[str, list] = {}
        self.arrived = asyncio.Event()
        self.client = LanguageClient("loopdoctor-tests", "1")

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def on_diagnostics(params: types.PublishDiagnosticsParams):
            self.diagnostics[params.uri] = list(params.diagnostics)
            self.arrived.set()

        self.call(self._start())

    async def _start(self):
        await self.client.start_io(*self.command)
        await self.client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), root_uri=self.root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=self.root.as_uri(), name="w")]))
        self.client.initialized(types.InitializedParams())

    def call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(TIMEOUT)

    def notify(self, send, *uris):
        """Send a notification and wait until diagnostics for every uri in ``uris`` arrived."""
        async def go():
            for uri in uris:
                self.diagnostics.pop(uri, None)
            send()
            while not all(uri in self.diagnostics for uri in uris):
                self.arrived.clear()
                await asyncio.wait_for(self.arrived.wait(), TIMEOUT)
        self.call(go())
        return [self.diagnostics[uri] for uri in uris]

    def open(self, path: Path, text: str, language="python"):
        document = types.TextDocumentItem(uri=path.as_uri(), language_id=language, version=1, text=text)
        [diagnostics] = self.notify(lambda: self.client.text_document_did_open(types.DidOpenTextDocumentParams(document)), path.as_uri())
        return diagnostics

    def change(self, path: Path, text: str, version: int):
        params = types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=path.as_uri(), version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)])
        [diagnostics] = self.notify(lambda: self.client.text_document_did_change(params), path.as_uri())
        return diagnostics

    def code_actions(self, uri: str, diagnostic, only=None):
        params = types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), range=diagnostic.range,
            context=types.CodeActionContext(diagnostics=[diagnostic], only=only))
        return self.call(self.client.text_document_code_action_async(params))

    def close(self):
        async def stop():
            await self.client.shutdown_async(None)
            self.client.exit(None)
            process = self.client._server  # the server's asyncio subprocess, as pygls starts it
            code = await asyncio.wait_for(process.wait(), TIMEOUT)
            await self.client.stop()
            return code
        code = self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        return code


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("workspace")
    server = Session(root)
    yield server
    server.close()


def apply(text: str, edits: list) -> str:
    """Apply LSP text edits (UTF-16 positions, the client default) to ``text``."""
    lines = text.splitlines(keepends=True)

    def offset(position):
        before = sum(len(line) for line in lines[: position.line])
        line = lines[position.line] if position.line < len(lines) else ""
        units, chars = 0, 0
        while units < position.character and chars < len(line):
            units += 2 if ord(line[chars]) > 0xFFFF else 1
            chars += 1
        return before + chars

    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        text = text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end):]
    return text


def test_diagnostics_on_open_and_cleared_by_a_fixing_change(session):
    path = session.root / "train.py"
    diagnostics = session.open(path, BUGGY)
    assert [(d.code, d.range.start.line, d.range.start.character) for d in diagnostics] == [("LD003", 31, 27)]
    [diagnostic] = diagnostics
    assert diagnostic.source == "loopdoctor" and diagnostic.severity == types.DiagnosticSeverity.Warning
    assert diagnostic.code_description.href.endswith("/rules/LD003.md")
    fixed = BUGGY.replace("    with torch.no_grad():\n        val_loss", "    model.eval()\n    with torch.no_grad():\n        val_loss")
    assert session.change(path, fixed, 2) == []


def test_quick_fix_and_fix_all_give_what_check_fix_writes(session, cli, tmp_path):
    on_disk = tmp_path / "train.py"
    on_disk.write_text(AMP_CLIP)
    cli("check", "--no-cache", "--fix", on_disk)
    path = session.root / "amp.py"
    [diagnostic] = [d for d in session.open(path, AMP_CLIP) if d.code == "LD005"]
    actions = session.code_actions(path.as_uri(), diagnostic)
    quick_fix = next(a for a in actions if a.title.startswith("LD005:"))
    assert quick_fix.is_preferred and quick_fix.kind == types.CodeActionKind.QuickFix
    assert apply(AMP_CLIP, quick_fix.edit.changes[path.as_uri()]) == on_disk.read_text()
    [fix_all] = session.code_actions(path.as_uri(), diagnostic, only=[types.CodeActionKind.SourceFixAll])
    assert apply(AMP_CLIP, fix_all.edit.changes[path.as_uri()]) == on_disk.read_text()


def test_unsafe_fixes_are_marked_and_noqa_is_offered(session):
    path = session.root / "noeval.py"
    [diagnostic] = session.open(path, BUGGY)
    actions = {a.title: a for a in session.code_actions(path.as_uri(), diagnostic)}
    unsafe = next(a for title, a in actions.items() if title.startswith("LD003:"))
    assert unsafe.title.endswith("(unsafe: review the change)") and not unsafe.is_preferred
    noqa = actions["Disable LD003 for this line"]
    suppressed = apply(BUGGY, noqa.edit.changes[path.as_uri()])
    assert "val_y).item()  # expect: LD003:28  # noqa: LD003\n" in suppressed
    assert session.change(path, suppressed, 2) == []


def test_a_broken_buffer_is_ld000_and_the_server_stays_up(session):
    path = session.root / "broken.py"
    [diagnostic] = session.open(path, "import torch\ndef f(:\n")
    assert diagnostic.code == "LD000" and diagnostic.severity == types.DiagnosticSeverity.Error
    assert diagnostic.range.start.line == 1
    assert [d.code for d in session.change(path, BUGGY, 2)] == ["LD003"]


def test_settings_apply_and_reload_when_pyproject_changes(session):
    folder = session.root / "configured"
    folder.mkdir()
    path = folder / "train.py"
    (folder / "pyproject.toml").write_text('[tool.loopdoctor]\nignore = ["LD003"]\n')
    assert session.open(path, BUGGY) == []
    (folder / "pyproject.toml").write_text('[tool.loopdoctor]\nignore = []\n')
    params = types.DidChangeWatchedFilesParams(changes=[types.FileEvent(uri=(folder / "pyproject.toml").as_uri(), type=types.FileChangeType.Changed)])
    [diagnostics] = session.notify(lambda: session.client.workspace_did_change_watched_files(params), path.as_uri())
    assert [d.code for d in diagnostics] == ["LD003"]


def test_cross_file_facts_follow_a_saved_module(session):
    folder = session.root / "crossfile"
    folder.mkdir()
    network = folder / "network.py"
    network.write_text("from torch import nn\n\nclass Net(nn.Module):\n    def forward(self, x):\n        return x\n")
    train = folder / "train.py"
    source = "import torch.nn.functional as F\nfrom network import Net\n\nmodel = Net()\n\ndef loss(x, y):\n    return F.cross_entropy(model(x), y)\n"
    assert session.open(train, source) == []
    network.write_text(network.read_text().replace("return x", "return x.softmax(-1)"))
    save = types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=network.as_uri()))
    [diagnostics] = session.notify(lambda: session.client.text_document_did_save(save), train.as_uri())
    assert [d.code for d in diagnostics] == ["LD001"]


def test_a_notebook_cell_gets_its_diagnostic(session):
    notebook_uri = (session.root / "explore.ipynb").as_uri()
    cells = ["import torch\nfrom torch import nn\nmodel = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))",
             "%matplotlib inline\nmodel.train()\nwith torch.no_grad():\n    out = model(torch.ones(1, 2))"]
    cell_uris = [f"{notebook_uri}#cell{index}" for index in range(len(cells))]
    params = types.DidOpenNotebookDocumentParams(
        notebook_document=types.NotebookDocument(
            uri=notebook_uri, notebook_type="jupyter-notebook", version=1,
            cells=[types.NotebookCell(kind=types.NotebookCellKind.Code, document=uri) for uri in cell_uris]),
        cell_text_documents=[types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
                             for uri, text in zip(cell_uris, cells)])
    first, second = session.notify(lambda: session.client.notebook_document_did_open(params), *cell_uris)
    assert first == []
    assert [(d.code, d.range.start.line, d.range.start.character) for d in second] == [("LD003", 3, 10)]
    # The user types model.eval() on the cell's second line: the notebook's change clears it.
    edit = types.TextDocumentContentChangePartial(range=types.Range(types.Position(2, 0), types.Position(2, 0)), text="model.eval()\n")
    change = types.DidChangeNotebookDocumentParams(
        notebook_document=types.VersionedNotebookDocumentIdentifier(version=2, uri=notebook_uri),
        change=types.NotebookDocumentChangeEvent(cells=types.NotebookDocumentCellChanges(text_content=[
            types.NotebookDocumentCellContentChanges(
                document=types.VersionedTextDocumentIdentifier(version=2, uri=cell_uris[1]), changes=[edit])])))
    assert session.notify(lambda: session.client.notebook_document_did_change(change), *cell_uris) == [[], []]
    close = types.DidCloseNotebookDocumentParams(
        notebook_document=types.NotebookDocumentIdentifier(uri=notebook_uri),
        cell_text_documents=[types.TextDocumentIdentifier(uri=uri) for uri in cell_uris])
    assert session.notify(lambda: session.client.notebook_document_did_close(close), *cell_uris) == [[], []]


def spots(findings):
    return [(f["code"], f["location"]["row"], f["location"]["column"]) for f in findings]


def served(session, path, text):
    diagnostics = session.open(path, text)
    return sorted(((d.code, d.range.start.line + 1, d.range.start.character + 1) for d in diagnostics), key=lambda f: (f[1], f[2], f[0]))


@pytest.mark.parametrize("fixture", sorted(FIXTURES.rglob("*.py")), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_check_fix_stdin_and_server_agree_on_every_fixture(session, cli, monkeypatch, fixture):
    import io

    folder = session.root / "agree"  # every rule on, for all four alike
    folder.mkdir(exist_ok=True)
    (folder / "pyproject.toml").write_text('[tool.loopdoctor]\nselect = ["ALL"]\n')
    name = str(fixture.relative_to(FIXTURES)).replace("/", "__")
    source = fixture.read_text()
    copy = folder / name
    copy.write_text(source)
    checked = spots(cli("check", "--no-cache", "--output-format", "json", copy).json())
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(source.encode())))
    piped = spots(cli("check", "--output-format", "json", "-", "--stdin-filename", copy).json())
    assert checked == piped == served(session, folder / ("open_" + name), source)
    # --fix reports what remains: the findings of the fixed bytes, whoever is asked.
    remaining = spots(cli("check", "--no-cache", "--fix", "--unsafe-fixes", "--output-format", "json", copy).json())
    assert remaining == spots(cli("check", "--no-cache", "--output-format", "json", copy).json())
    assert remaining == served(session, folder / ("fixed_" + name), copy.read_text())


def test_shutdown_and_exit_are_clean(tmp_path):
    assert Session(tmp_path).close() == 0


def readme_snippet(name):
    text = (ROOT / "README.md").read_text()
    return text.split(f"<!-- editor-{name} -->\n```", 1)[1].split("\n", 1)[1].split("```", 1)[0]


def test_the_readme_editor_snippets_start_this_server(tmp_path):
    import re
    import shutil
    import tomllib

    vscode = json.loads(readme_snippet("vscode"))
    helix = tomllib.loads(readme_snippet("helix"))
    neovim = re.search(r"cmd = \{ (.*?) \}", readme_snippet("neovim")).group(1)
    command = [vscode["glspc.server.command"], *vscode["glspc.server.commandArguments"]]
    assert vscode["glspc.server.languageId"] == ["python"]
    assert command == [helix["language-server"]["loopdoctor"]["command"], *helix["language-server"]["loopdoctor"]["args"]]
    assert "loopdoctor" in helix["language"][0]["language-servers"]
    assert [part.strip('" ') for part in neovim.split(",")] == command
    executable = shutil.which(command[0], path=str(Path(sys.executable).parent)) or shutil.which(command[0])
    assert executable, "the console script is installed beside this Python"
    session = Session(tmp_path, (executable, *command[1:]))  # the snippets' command, as an editor runs it
    assert [d.code for d in session.open(tmp_path / "train.py", BUGGY)] == ["LD003"]
    assert session.close() == 0


def test_the_server_never_imports_torch():
    import subprocess

    probe = "import sys, loopdoctor.server\nprint('TORCH-LOADED' if 'torch' in sys.modules else 'TORCH-ABSENT')\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "TORCH-ABSENT", done.stdout + done.stderr
