"""The watch survives odd models and every way out of a loop."""

import dataclasses
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import loopdoctor  # noqa: E402
from loopdoctor.runtime import GlobalWatch  # noqa: E402


def no_hooks_left(*modules):
    module_hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for root in modules for m in root.modules())
    globals_left = len(nn.modules.module._global_forward_hooks) + len(nn.modules.module._global_forward_pre_hooks)
    unpatched = torch.autograd.backward.__module__ == "torch.autograd" and nn.Module.__call__ is nn.Module._wrapped_call_impl
    return module_hooks == 0 and globals_left == 0 and unpatched


def step(model, optimizer, x):
    optimizer.zero_grad()
    out = model(x)
    loss = out.float().sum() if isinstance(out, torch.Tensor) else out["logits"].sum()
    loss.backward()
    optimizer.step()


def test_keyboard_interrupt_and_nested_watches_clean_up():
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(KeyboardInterrupt):
        with loopdoctor.watch(model, optimizer):
            with GlobalWatch():
                with loopdoctor.watch(model, optimizer, mode="warn"):
                    step(model, optimizer, torch.ones(3, 2))
                    raise KeyboardInterrupt
    assert no_hooks_left(model)


def test_nested_watches_both_see_the_fault():
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with loopdoctor.watch(model, optimizer, mode="warn") as outer, pytest.warns(RuntimeWarning):
        with loopdoctor.watch(model, optimizer, mode="warn") as inner:
            step(model, optimizer, torch.full((3, 2), float("nan")))
    assert outer.findings[0].stage == inner.findings[0].stage == "input"
    assert no_hooks_left(model)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.embed.weight  # tied
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.act = nn.ReLU()  # no parameters

    def forward(self, tokens):
        return self.out(self.act(self.frozen(self.embed(tokens))))


@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    aux: tuple
    nothing: None = None


class Packer(nn.Module):
    """A submodule whose output is a dataclass holding a tuple with a bool tensor and None."""

    def forward(self, a, b, mask):
        return Output(logits=a, aux=(b, mask, None))


class Nothing(nn.Module):
    def forward(self, x):
        return None


class Structured(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.heads = nn.ModuleDict({"a": nn.Linear(3, 2), "b": nn.Linear(3, 2)})
        self.pack = Packer()
        self.nothing = Nothing()

    def forward(self, batch):
        h = self.fc(batch["x"])
        self.nothing(h)
        parts = {name: head(h) for name, head in self.heads.items()}
        out = self.pack(parts["a"], parts["b"], batch["mask"])
        return {"logits": out.logits + out.aux[0].sum(), "mask": batch["mask"], "ids": batch["ids"]}


def test_tied_frozen_and_parameterless_modules():
    torch.manual_seed(0)
    model = Tied()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    with loopdoctor.watch(model, optimizer) as watch:
        for _ in range(3):
            step(model, optimizer, torch.randint(0, 10, (5, 3)))
    assert watch.findings == [] and no_hooks_left(model)


def test_structured_inputs_and_outputs_integer_and_bool_tensors():
    torch.manual_seed(0)
    model = Structured()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = {"x": torch.randn(4, 3), "mask": torch.ones(4, dtype=torch.bool), "ids": torch.arange(4)}
    with loopdoctor.watch(model, optimizer) as watch:
        step(model, optimizer, batch)
        bad = dict(batch, x=batch["x"].clone())
        bad["x"][1, 1] = float("inf")
        with pytest.raises(loopdoctor.NonFiniteError) as caught:
            step(model, optimizer, bad)
    assert caught.value.diagnosis.stage == "input" and caught.value.diagnosis.step == 1
    assert watch.findings[0].stats.posinf == 1


@pytest.mark.filterwarnings("ignore:Complex modules are a new feature")
def test_complex_tensors():
    model = nn.Linear(4, 4).to(torch.complex64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(2, 4, dtype=torch.complex64)
    with loopdoctor.watch(model, optimizer) as watch:
        optimizer.zero_grad()
        model(x).abs().sum().backward()
        optimizer.step()
        x[0, 0] = complex(float("nan"), 0)
        with pytest.raises(loopdoctor.NonFiniteError):
            optimizer.zero_grad()
            model(x).abs().sum().backward()
            optimizer.step()
    assert watch.findings[0].stage == "input"


def test_sparse_gradients_and_parameters_without_gradients():
    embedding = nn.Embedding(20, 4, sparse=True)
    unused = nn.Linear(4, 4)  # never used: its parameters never get a gradient
    model = nn.ModuleDict({"embedding": embedding, "unused": unused})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with loopdoctor.watch(model, optimizer) as watch:
        for _ in range(2):
            optimizer.zero_grad()
            model["embedding"](torch.tensor([1, 2, 3])).sum().backward()
            optimizer.step()
    assert watch.findings == []


def test_modules_added_after_the_watch_started_global_mode():
    torch.manual_seed(0)
    with GlobalWatch(loop_warnings=False) as watch:
        model = nn.Sequential(nn.Linear(2, 4))
        optimizer, optimizer_line = torch.optim.SGD(model.parameters(), lr=0.1), sys._getframe().f_lineno
        step(model, optimizer, torch.ones(3, 2))
        model.append(nn.Linear(4, 2))
        with torch.no_grad():
            model[1].weight.fill_(float("nan"))
        with pytest.raises(loopdoctor.NonFiniteError):
            step(model, optimizer, torch.ones(3, 2))
    assert (watch.diagnosis.stage, watch.diagnosis.where) == ("activation", "1")
    # (and the appended layer is in no optimizer: LD201 says so, at the optimizer's line)
    assert [(f.code, f.line) for f in watch.findings if f.code != "LD200"] == [("LD201", optimizer_line)]


def test_torch_compile_is_watched_or_says_what_it_cannot_see():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    compiled = torch.compile(model, backend="eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with loopdoctor.watch(compiled, optimizer) as watch:
        step(compiled, optimizer, torch.ones(3, 2))
        with pytest.raises(loopdoctor.NonFiniteError) as caught:
            step(compiled, optimizer, torch.full((3, 2), float("nan")))
    assert caught.value.diagnosis.stage == "input" and watch.step == 1
    assert no_hooks_left(model)


class FailsOnce(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner, self.failed = nn.Linear(2, 2), False

    def forward(self, x):
        if not self.failed:
            self.failed = True
            raise RuntimeError("a forward that fails")
        return self.inner(x)


def test_a_forward_that_raises_leaves_the_module_stack_as_it_was():
    from loopdoctor.runtime import sources

    model = nn.Sequential(nn.Linear(2, 2), FailsOnce())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with GlobalWatch(mode="record") as watch:
        with pytest.raises(RuntimeError, match="a forward that fails"):
            model(torch.ones(3, 2))
        assert sources.RUNNING == []
        step(model, optimizer, torch.ones(3, 2))
        step(model, optimizer, torch.full((3, 2), float("nan")))
    assert [(f.stage, f.where, f.step) for f in watch.findings] == [("input", "input", 1)]
    assert no_hooks_left(model)


def test_a_reused_run_directory_ignores_an_earlier_runs_findings(tmp_path, monkeypatch):
    import json
    import os

    from loopdoctor.runtime import distributed
    from loopdoctor.runtime.diagnosis import Diagnosis

    def finding(stage, rank):
        return Diagnosis(stage=stage, where=stage, step=3, batch=3, stats=None, cause="", rank=rank)

    stale = tmp_path / "diagnosis-rank1.json"  # an input NaN on rank 1, from yesterday's run
    stale.write_text(json.dumps(finding("input", 1).to_dict()))
    os.utime(stale, (distributed.STARTED - 86400, distributed.STARTED - 86400))
    monkeypatch.setenv("LOOPDOCTOR_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "WAIT_SECONDS", 0.2)
    mine = finding("loss", 0)
    assert distributed.origin_diagnosis(mine) is mine
    fresh = finding("input", 1)
    stale.write_text(json.dumps(fresh.to_dict()))  # written during this run: it counts
    assert distributed.origin_diagnosis(mine).stage == "input"
