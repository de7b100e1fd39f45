"""``loopdoctor server``: the static checks in the editor, as a Language Server over stdio (pygls).

The server is one more front end of the linter (static/linter.py): it lints the editor's buffer
as the file it will be saved as, with the settings and per-file-ignores of that path and the
local modules it imports, exactly as ``loopdoctor check`` would; it never imports torch and never
runs the code. Diagnostics come on open and save, and on change after a short debounce; quick
fixes, "fix all" and "disable for this line" are code actions. Notebooks arrive through the
LSP's notebook document sync: their code cells are linted together, as ``check`` lints an
``.ipynb``, and each cell gets its own diagnostics. The settings are read again on every lint, so
an edited pyproject.toml applies at once; a saved file or a changed pyproject.toml re-lints every
open document (their cross-file facts may rest on it).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from loopdoctor import __version__
from loopdoctor.static import linter, suppression
from loopdoctor.static.findings import Applicability, Edit, FileResult, Finding, Fix, Position
from loopdoctor.static.fixing import applicable
from loopdoctor.static.notebook import read_notebook
from loopdoctor.static.rules import PARSE_ERROR_CODE, page_url

# Changes that arrive within this time are linted once; longer would only add to the wait (a lint
# of 1,000 lines takes about 0.2 s, and changes that arrive meanwhile are coalesced anyway).
DEBOUNCE_SECONDS = 0.02
# Python's cyclic garbage collector, left to its thresholds, walks each fresh libcst tree (~90,000
# nodes for 1,000 lines) while the next one is built: a lint took 1.4x as long. The server
# keeps it off and collects when idle, or after this many lints in a row without a pause.
IDLE_SECONDS = 0.5
COLLECT_EVERY = 20
SOURCE = "loopdoctor"
FIX_ALL_KIND = f"{types.CodeActionKind.SourceFixAll.value}.loopdoctor"


@dataclass
class Snapshot:
    """What one lint saw: the bytes given to the linter, and for each code cell (or the one
    plain document, under None) its URI and text, whose lines the findings' rows count."""

    path: str
    data: bytes
    uris: dict[Optional[int], str]
    texts: dict[Optional[int], str]
    result: FileResult

    @cached_property
    def lines(self) -> dict[Optional[int], list[str]]:
        return {cell: text.splitlines() for cell, text in self.texts.items()}


class LoopdoctorServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "loopdoctor", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            notebook_document_sync=types.NotebookDocumentSyncOptions(
                notebook_selector=[types.NotebookDocumentFilterWithCells(
                    cells=[types.NotebookCellLanguage(language="python")], notebook="jupyter-notebook")],
            ),
        )
        self.options = linter.CheckOptions(cache_dir=None)
        self._timers: dict[str, asyncio.TimerHandle] = {}

    # ---- linting ---------------------------------------------------------------------------
    def snapshot(self, uri: str) -> Optional[Snapshot]:
        """Lint the notebook or plain document ``uri`` (a cell's URI means its notebook)."""
        notebook = self.workspace.get_notebook_document(notebook_uri=uri) or self.workspace.get_notebook_document(cell_uri=uri)
        if notebook is not None:
            return self._notebook_snapshot(notebook)
        if uri not in self.workspace.text_documents:
            return None
        document = self.workspace.get_text_document(uri)
        if not _is_python(document.uri, document.language_id):
            return None
        data = document.source.encode("utf-8")
        path = self.path_of(uri, ".py")
        result = linter.lint_bytes(data, path, self.options)
        return Snapshot(path, data, {None: uri}, {None: document.source}, result)

    def _notebook_snapshot(self, notebook: types.NotebookDocument) -> Snapshot:
        cells = [cell for cell in notebook.cells if cell.kind == types.NotebookCellKind.Code]
        texts = [self.workspace.get_text_document(cell.document).source for cell in cells]
        data = json.dumps({
            "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source": text} for text in texts],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
        }).encode("utf-8")
        path = self.path_of(notebook.uri, ".ipynb")
        result = linter.lint_bytes(data, path, self.options)
        uris = {number: cell.document for number, cell in enumerate(cells, start=1)}
        return Snapshot(path, data, uris, dict(enumerate(texts, start=1)), result)

    def path_of(self, uri: str, suffix: str) -> str:
        """The file a document will be saved as; an untitled one is named under the workspace."""
        path = to_fs_path(uri) if uri.startswith("file:") else None
        if path is None:
            root = self.workspace.root_path or os.getcwd()
            path = os.path.join(root, "untitled" + suffix)
        return path if path.endswith((".py", ".pyi", ".ipynb")) else path + suffix

    def publish(self, uri: str) -> None:
        self._timers.pop(uri, None)
        try:
            snapshot = self.snapshot(uri)
        except Exception as error:  # a bug in loopdoctor must not take the editor's server down
            self.window_log_message(types.LogMessageParams(types.MessageType.Error, f"loopdoctor: {uri}: {error!r}"))
            return
        if snapshot is None:
            return
        problem = snapshot.result.error or snapshot.result.notice  # no finding, but worth saying
        if problem:
            self.window_log_message(types.LogMessageParams(types.MessageType.Warning, f"loopdoctor: {snapshot.path}: {problem}"))
        by_uri: dict[str, list[types.Diagnostic]] = {cell_uri: [] for cell_uri in snapshot.uris.values()}
        for finding in snapshot.result.findings:
            if finding.cell in snapshot.uris:
                by_uri[snapshot.uris[finding.cell]].append(self.diagnostic(finding, snapshot))
        for cell_uri, diagnostics in by_uri.items():
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=cell_uri, diagnostics=diagnostics))
        gc.collect()  # the lint's cycles, once the diagnostics are out: see serve()

    def diagnostic(self, finding: Finding, snapshot: Snapshot) -> types.Diagnostic:
        lines = snapshot.lines.get(finding.cell, [])
        return types.Diagnostic(
            range=self.client_range(lines, finding.location.row, finding.location.column, finding.end_location.row, finding.end_location.column),
            message=finding.message,
            severity=types.DiagnosticSeverity.Error if finding.code == PARSE_ERROR_CODE else types.DiagnosticSeverity.Warning,
            code=finding.code,
            code_description=types.CodeDescription(href=page_url(finding.code)),
            source=SOURCE,
        )

    def client_range(self, lines: list[str], row: int, column: int, end_row: int, end_column: int) -> types.Range:
        """1-based rows and code-point columns as the client counts them (UTF-16 by default)."""
        codec = self.workspace.position_codec
        start = codec.position_to_client_units(lines, types.Position(row - 1, column - 1))
        end = codec.position_to_client_units(lines, types.Position(end_row - 1, end_column - 1))
        return types.Range(start, end)

    def schedule(self, uri: str, delay: float) -> None:
        timer = self._timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        self._timers[uri] = asyncio.get_running_loop().call_later(delay, self.publish, uri)

    def relint_open_documents(self) -> None:
        notebooks = list(self.workspace.notebook_documents)
        cells = {cell.document for uri in notebooks for cell in self.workspace.get_notebook_document(notebook_uri=uri).cells}
        for uri in notebooks + [uri for uri in self.workspace.text_documents if uri not in cells]:
            self.publish(uri)

    # ---- code actions ----------------------------------------------------------------------
    def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        snapshot = self.snapshot(params.text_document.uri)
        if snapshot is None:
            return []
        only = params.context.only
        wanted = lambda kind: only is None or any(kind.startswith(str(getattr(k, "value", k))) for k in only)
        actions = []
        if wanted(types.CodeActionKind.QuickFix.value):
            for finding in snapshot.result.findings:
                if snapshot.uris.get(finding.cell) == params.text_document.uri and self._overlaps(finding, params.range, snapshot):
                    actions += self._finding_actions(finding, snapshot)
        if wanted(FIX_ALL_KIND):
            fix_all = self._fix_all(snapshot)
            if fix_all is not None:
                actions.append(fix_all)
        return actions

    def _overlaps(self, finding: Finding, wanted: types.Range, snapshot: Snapshot) -> bool:
        span = self.diagnostic(finding, snapshot).range
        return (span.start.line, span.start.character) <= (wanted.end.line, wanted.end.character) and \
            (wanted.start.line, wanted.start.character) <= (span.end.line, span.end.character)

    def _finding_actions(self, finding: Finding, snapshot: Snapshot) -> list[types.CodeAction]:
        diagnostic = self.diagnostic(finding, snapshot)
        actions = []
        if finding.fix is not None and finding.fix.applicability != Applicability.DISPLAY_ONLY:
            actions.append(types.CodeAction(
                title=_fix_title(finding.code, finding.fix), kind=types.CodeActionKind.QuickFix,
                diagnostics=[diagnostic], is_preferred=applicable(finding, unsafe=False),
                edit=self._workspace_edit(finding.fix.edits, snapshot),
            ))
        if finding.code != PARSE_ERROR_CODE:
            noqa = suppression.noqa_edits([finding], snapshot.lines)
            if noqa:
                actions.append(types.CodeAction(
                    title=f"Disable {finding.code} for this line", kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic], edit=self._workspace_edit(noqa, snapshot),
                ))
        return actions

    def _fix_all(self, snapshot: Snapshot) -> Optional[types.CodeAction]:
        """Every safe fix, applied as ``check --fix`` would: each changed document replaced."""
        outcome = linter.fix_bytes(snapshot.data, snapshot.path, self.options, unsafe=False)
        if outcome.fixed is None:
            return None
        fixed = {None: outcome.fixed.decode("utf-8")} if None in snapshot.uris else read_notebook(outcome.fixed).cell_texts
        edits = [Edit(Position(1, 1), _end_of(snapshot.texts[cell]), text, cell)
                 for cell, text in fixed.items() if text != snapshot.texts[cell]]
        return types.CodeAction(title="loopdoctor: fix all (safe fixes)", kind=FIX_ALL_KIND,
                                edit=self._workspace_edit(edits, snapshot))

    def _workspace_edit(self, edits, snapshot: Snapshot) -> types.WorkspaceEdit:
        changes: dict[str, list[types.TextEdit]] = {}
        for edit in edits:
            lines = snapshot.lines.get(edit.cell, [])
            span = self.client_range(lines, edit.start.row, edit.start.column, edit.end.row, edit.end.column)
            changes.setdefault(snapshot.uris[edit.cell], []).append(types.TextEdit(range=span, new_text=edit.content))
        return types.WorkspaceEdit(changes=changes)


def _end_of(text: str) -> Position:
    """The position just after the last character of ``text``."""
    lines = text.splitlines()
    if not lines or text.endswith(("\n", "\r")):
        return Position(len(lines) + 1, 1)
    return Position(len(lines), len(lines[-1]) + 1)


def _fix_title(code: str, fix: Fix) -> str:
    title = f"{code}: {fix.message[:1].upper()}{fix.message[1:]}"
    return title if fix.applicability == Applicability.SAFE else f"{title} (unsafe: review the change)"


def _is_python(uri: str, language_id: Optional[str]) -> bool:
    return language_id == "python" or uri.endswith((".py", ".pyi"))


server = LoopdoctorServer()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: LoopdoctorServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.publish(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
async def did_change(ls: LoopdoctorServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, DEBOUNCE_SECONDS)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: LoopdoctorServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.relint_open_documents()  # the saved file may be a local module that others import


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: LoopdoctorServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


@server.feature(types.NOTEBOOK_DOCUMENT_DID_OPEN)
def notebook_did_open(ls: LoopdoctorServer, params: types.DidOpenNotebookDocumentParams) -> None:
    ls.publish(params.notebook_document.uri)


@server.feature(types.NOTEBOOK_DOCUMENT_DID_CHANGE)
async def notebook_did_change(ls: LoopdoctorServer, params: types.DidChangeNotebookDocumentParams) -> None:
    ls.schedule(params.notebook_document.uri, DEBOUNCE_SECONDS)


@server.feature(types.NOTEBOOK_DOCUMENT_DID_CLOSE)
def notebook_did_close(ls: LoopdoctorServer, params: types.DidCloseNotebookDocumentParams) -> None:
    for cell in params.cell_text_documents:
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=cell.uri, diagnostics=[]))


@server.feature(types.NOTEBOOK_DOCUMENT_DID_SAVE)
def notebook_did_save(ls: LoopdoctorServer, params: types.DidSaveNotebookDocumentParams) -> None:
    ls.relint_open_documents()


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def watched_files_changed(ls: LoopdoctorServer, params: types.DidChangeWatchedFilesParams) -> None:
    ls.relint_open_documents()  # pyproject.toml or an imported module changed on disk


@server.feature(types.INITIALIZED)
def initialized(ls: LoopdoctorServer, params: types.InitializedParams) -> None:
    """Ask the client to say when settings or Python files change on disk, if it can."""
    watch = ls.client_capabilities.workspace and ls.client_capabilities.workspace.did_change_watched_files
    if watch and watch.dynamic_registration:
        options = types.DidChangeWatchedFilesRegistrationOptions(
            watchers=[types.FileSystemWatcher(glob_pattern="**/pyproject.toml"), types.FileSystemWatcher(glob_pattern="**/*.py")])
        ls.client_register_capability(types.RegistrationParams(registrations=[
            types.Registration(id="loopdoctor-watched-files", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=options)]))


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, FIX_ALL_KIND]))
def code_action(ls: LoopdoctorServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    return ls.code_actions(params)


def serve() -> None:
    # Python's cyclic garbage collector, left to its thresholds, walks the libcst tree (~90,000
    # nodes for 1,000 lines) again and again while it is built: a lint took 1.4x as long,
    # measured interleaved. The server turns the thresholds off and collects once after each
    # lint (5 ms: only that lint's garbage), and freezes what the imports made, which lives as
    # long as the server.
    gc.disable()
    gc.freeze()
    server.start_io()
