"""How quickly does `loopdoctor server` answer an edit, and does its memory stay flat?

A real LSP client (pygls's) starts the server over stdio, opens a 1,000-line training file, then
sends --edits incremental changes one at a time, as an editor does (each deletes or restores the
`model.eval()` line of one function, so the diagnostics really change), and times each from the
didChange notification to the publishDiagnostics that answers it, debounce included. The server's resident memory is read from /proc after every 100 edits.

    python benchmarks/server_latency.py [--edits 1000]

Targets: the median and the 95th percentile within 0.3 s warm; memory flat.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

TARGET_SECONDS = 0.3

FUNCTION = '''
def train_{i}(model, loader, loss_fn, optimizer, val_loader):
    for epoch in range(3):
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            total = 0.0
            for xb, yb in val_loader:
                total += loss_fn(model(xb), yb).item()
    return total
'''


def training_file(lines: int = 1000) -> str:
    text, index = "import torch\nfrom torch import nn\n", 0
    while text.count("\n") < lines:
        text += FUNCTION.format(i=index)
        index += 1
    return text


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(edits: int) -> dict:
    client = LanguageClient("loopdoctor-benchmark", "1")
    arrived: asyncio.Queue = asyncio.Queue()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: types.PublishDiagnosticsParams):
        arrived.put_nowait((time.perf_counter(), len(params.diagnostics)))

    workspace = Path(tempfile.mkdtemp())
    await client.start_io(sys.executable, "-m", "loopdoctor", "server")
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities(), root_uri=workspace.as_uri()))
    client.initialized(types.InitializedParams())
    uri = (workspace / "train.py").as_uri()
    clean = training_file()
    eval_line = clean.splitlines().index("        model.eval()")  # deleting it makes one LD003
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, clean)))
    await arrived.get()
    latencies, memory = [], []
    pid = client._server.pid
    for version in range(2, edits + 2):
        delete = version % 2 == 0
        start = types.Position(eval_line, 0)
        change = types.TextDocumentContentChangePartial(
            range=types.Range(start, types.Position(eval_line + 1, 0) if delete else start),
            text="" if delete else "        model.eval()\n")
        sent = time.perf_counter()
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(version=version, uri=uri), [change]))
        answered, count = await asyncio.wait_for(arrived.get(), 30)
        assert (count > 0) == delete, "the diagnostics must follow the edit"
        latencies.append(answered - sent)
        if (version - 1) % 100 == 0:
            memory.append((version - 1, resident_mib(pid)))
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    warm = sorted(latencies[5:])
    return {
        "lines": clean.count("\n"), "edits": edits, "median": statistics.median(warm),
        "p95": warm[int(len(warm) * 0.95) - 1], "max": warm[-1], "memory": memory,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=1000)
    args = parser.parse_args()
    report = asyncio.run(measure(args.edits))
    print(f"{report['lines']}-line file, {report['edits']} edits, diagnostics after each change (debounce included):")
    print(f"  median {report['median']:.3f} s, 95th percentile {report['p95']:.3f} s, max {report['max']:.3f} s "
          f"(target: <= {TARGET_SECONDS} s)")
    print("  server RSS after N edits: " + ", ".join(f"{n}: {mib:.1f} MiB" for n, mib in report["memory"]))
    first, last = report["memory"][0][1], report["memory"][-1][1]
    print(f"  growth from the first to the last reading: {last - first:+.1f} MiB")
    return 0 if report["p95"] <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
