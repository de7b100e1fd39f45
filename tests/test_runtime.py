"""The watch through its public API: faults found at the right stage, step and place; clean runs
silent; AMP skips ignored; hooks removed; numerics untouched."""

import math
import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import loopdoctor  # noqa: E402
from loopdoctor.runtime import GlobalWatch  # noqa: E402
from loopdoctor.demo.reference import TicketTrainer  # noqa: E402
from loopdoctor.demo.faults import FAULTS, make_fault  # noqa: E402
from runtime_models import SmallCNN, TransformerClassifier, cnn_batch, sequence_batch  # noqa: E402


def diagnose(trainer):
    with pytest.raises(loopdoctor.NonFiniteError) as caught:
        with loopdoctor.watch(trainer.model, trainer.optimizer):
            trainer.fit()
    return caught.value.diagnosis


EXPECTED_AT_STEP_20 = {
    "input": ("input", "input"),
    "activation": ("activation", "0"),
    "loss": ("loss", "loss"),
    "gradient": ("gradient", "loss"),
    "parameter": ("parameter", "0.weight"),
}


@pytest.mark.parametrize("stage", sorted(FAULTS))
def test_reference_fault_found_at_stage_step_and_place(stage):
    diagnosis = diagnose(TicketTrainer(fault=make_fault(stage, 20)))
    assert (diagnosis.stage, diagnosis.where) == EXPECTED_AT_STEP_20[stage]
    assert (diagnosis.step, diagnosis.batch) == (20, 20)
    if stage == "gradient":  # the activation gradient is not kept: the nearest .grad is counted
        assert diagnosis.stats_of == "2.weight.grad" and diagnosis.stats.shape == [2, 8]
    assert diagnosis.stats.nan + diagnosis.stats.posinf + diagnosis.stats.neginf > 0
    # The history runs up to and including the step that blew up (its loss may be the bad value).
    assert len(diagnosis.loss_history) == 21 and all(v == v for v in diagnosis.loss_history[:20])


def first_nonfinite_by_hand(fault_stage, step):
    """An exhaustive, unwatched replay: check every value of every step, in stage order."""
    trainer = TicketTrainer(fault=make_fault(fault_stage, step))
    model, fault = trainer.model, trainer.fault
    bad = lambda t: not bool(torch.isfinite(t).all())  # noqa: E731
    for epoch in range(trainer.config.epochs):
        model.train()
        for xb, yb in trainer.loader:
            xb = fault.batch(trainer.step, xb)
            if bad(xb):
                return "input", "input", trainer.step
            outputs = []  # each layer's output, in order, from the fault's own forward
            handles = [layer.register_forward_hook(lambda m, a, out, n=name: outputs.append((n, out)))
                       for name, layer in model.named_children()]
            h = fault.forward(trainer.step, model, xb)
            for handle in handles:
                handle.remove()
            for name, out in outputs:
                if bad(out):
                    return "activation", name, trainer.step
            trainer.optimizer.zero_grad()
            loss = fault.loss(trainer.step, h, yb, trainer.loss_fn)
            if bad(loss):
                return "loss", "loss", trainer.step
            loss.backward()
            if any(bad(p.grad) for p in model.parameters()):
                return "gradient", None, trainer.step
            fault.before_step(trainer.step, trainer.optimizer)
            trainer.optimizer.step()
            for name, p in model.named_parameters():
                if bad(p):
                    return "parameter", name, trainer.step
            trainer.step += 1
        model.eval()
        with torch.no_grad():
            h = trainer.val_x
            for name, layer in model.named_children():
                h = layer(h)
                if bad(h):
                    return "activation", name, trainer.step
    return None


@pytest.mark.parametrize("stage", sorted(FAULTS))
@pytest.mark.parametrize("step", [0, 3, 17, 41])
def test_watch_agrees_with_an_exhaustive_replay(stage, step):
    expected_stage, expected_where, expected_step = first_nonfinite_by_hand(stage, step)
    diagnosis = diagnose(TicketTrainer(fault=make_fault(stage, step)))
    assert (diagnosis.stage, diagnosis.step) == (expected_stage, expected_step)
    if expected_where is not None:
        assert diagnosis.where == expected_where


def test_clean_reference_run_reports_nothing_and_reproduces_the_article():
    trainer = TicketTrainer()
    with loopdoctor.watch(trainer.model, trainer.optimizer) as watch:
        receipt = trainer.fit()
    assert watch.findings == []
    assert round(receipt.val_loss[0], 6) == 0.535825
    assert round(receipt.val_loss[-1], 6) == 0.011815


def test_watched_and_unwatched_runs_are_bitwise_equal():
    plain = TicketTrainer()
    plain.fit()
    watched = TicketTrainer()
    with loopdoctor.watch(watched.model, watched.optimizer):
        watched.fit()
    for a, b in zip(plain.model.state_dict().values(), watched.model.state_dict().values()):
        assert torch.equal(a, b)


def hook_counts(model, optimizer):
    modules = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    return modules + len(optimizer._optimizer_step_pre_hooks) + len(optimizer._optimizer_step_post_hooks)


def test_hooks_and_patches_are_removed_on_every_exit():
    original_backward, original_call = torch.autograd.backward, nn.Module.__call__
    trainer = TicketTrainer(fault=make_fault("input", 1))
    with pytest.raises(loopdoctor.NonFiniteError):
        with loopdoctor.watch(trainer.model, trainer.optimizer):
            trainer.fit()
    assert hook_counts(trainer.model, trainer.optimizer) == 0
    assert torch.autograd.backward is original_backward and nn.Module.__call__ is original_call
    with pytest.raises(KeyError):
        with loopdoctor.watch(trainer.model, trainer.optimizer):
            raise KeyError("user code failed")
    assert hook_counts(trainer.model, trainer.optimizer) == 0
    assert torch.autograd.backward is original_backward and nn.Module.__call__ is original_call


def test_attach_detach_form_and_warn_mode():
    trainer = TicketTrainer(fault=make_fault("loss", 2))
    watch = loopdoctor.Watch(trainer.model, trainer.optimizer, mode="warn").attach()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit()
    watch.detach()
    assert watch.findings[0].stage == "loss" and watch.findings[0].step == 2
    assert sum("first non-finite value" in str(w.message) for w in caught) == 1
    assert hook_counts(trainer.model, trainer.optimizer) == 0


def test_diagnosis_to_dict_is_json_ready_and_renders():
    import json

    from rich.console import Console

    diagnosis = diagnose(TicketTrainer(fault=make_fault("parameter", 5)))
    data = json.loads(json.dumps(diagnosis.to_dict()))
    assert data["stage"] == "parameter" and data["where"] == "0.weight" and data["step"] == 5
    assert set(data["stats"]) == {"shape", "dtype", "nan", "posinf", "neginf", "finite_min", "finite_max", "first_bad_index"}
    console = Console(record=True, width=100)
    console.print(diagnosis)
    text = console.export_text()
    assert "parameter at 0.weight, step 5" in text and "likely cause" in text


# ---- other architectures --------------------------------------------------------------------

def train(model, batches, *, steps=4, fault_step=None, fault=None, lr=0.05):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    with loopdoctor.watch(model, optimizer) as watch:
        for step in range(steps):
            x, y = batches(step)
            if fault_step == step and fault == "input":
                x = x.clone()
                x.view(-1)[7] = float("nan")
            optimizer.zero_grad()
            logits = model(x)
            if fault_step == step and fault == "loss":
                loss = -(torch.log(torch.softmax(logits * 1e6, dim=1)) * nn.functional.one_hot(y, 3).add(0.1)).sum(1).mean()
            else:
                loss = nn.functional.cross_entropy(logits, y)
            loss.backward()
            if fault_step == step and fault == "parameter":
                optimizer.param_groups[0]["lr"] = float("inf")
            optimizer.step()
            optimizer.param_groups[0]["lr"] = lr
        model.eval()
        with torch.no_grad():
            model(batches(99)[0])
    return watch


@pytest.mark.parametrize("make_model, batches", [(SmallCNN, cnn_batch), (TransformerClassifier, sequence_batch)])
def test_other_architectures_train_clean(make_model, batches):
    torch.manual_seed(0)
    assert train(make_model(), batches).findings == []


@pytest.mark.parametrize("make_model, batches", [(SmallCNN, cnn_batch), (TransformerClassifier, sequence_batch)])
@pytest.mark.parametrize("fault, stage", [("input", "input"), ("loss", "loss"), ("parameter", "parameter")])
def test_other_architectures_faults(make_model, batches, fault, stage):
    torch.manual_seed(0)
    with pytest.raises(loopdoctor.NonFiniteError) as caught:
        train(make_model(), batches, fault_step=2, fault=fault)
    diagnosis = caught.value.diagnosis
    assert (diagnosis.stage, diagnosis.step) == (stage, 2)
    if stage == "parameter":
        first = next(iter(dict(make_model().named_parameters())))
        assert diagnosis.where == first


def test_cnn_activation_overflow_names_the_conv_layer():
    torch.manual_seed(0)
    model = SmallCNN()
    with torch.no_grad():
        model.features[4].weight.fill_(3e38)  # a corrupted checkpoint: second conv weights huge
    with pytest.raises(loopdoctor.NonFiniteError) as caught:
        train(model, cnn_batch)
    diagnosis = caught.value.diagnosis
    assert (diagnosis.stage, diagnosis.where, diagnosis.module_type, diagnosis.step) == ("activation", "features.4", "Conv2d", 0)


def test_transformer_logit_stage_is_the_models_own_code():
    torch.manual_seed(0)
    model = TransformerClassifier()
    model.temperature = 0.0  # the model's own forward divides by zero
    with pytest.raises(loopdoctor.NonFiniteError) as caught:
        train(model, sequence_batch)
    assert (caught.value.diagnosis.stage, caught.value.diagnosis.where) == ("logit", "(model)")


def test_gradient_created_inside_a_module_names_that_module():
    torch.manual_seed(0)
    model = SmallCNN()
    with torch.no_grad():  # dead features: every row reaching RowNorm is exactly zero
        model.features[5].weight.zero_()
        model.features[5].bias.fill_(-1.0)
    with pytest.raises(loopdoctor.NonFiniteError) as caught:
        train(model, cnn_batch)
    diagnosis = caught.value.diagnosis
    assert (diagnosis.stage, diagnosis.where, diagnosis.step) == ("gradient", "norm", 0)
    # The ReLU behind the dead units masks the NaN, so no parameter's .grad went bad: the NaN
    # exists only in the gradient flowing out of RowNorm, which is exactly what is reported.
    assert diagnosis.bad_gradients == []
    assert diagnosis.stats.shape == [6, 8] and diagnosis.stats.nan is None  # nothing kept to count


# ---- mixed precision ------------------------------------------------------------------------

def test_bf16_autocast_runs_clean():
    torch.manual_seed(0)
    model = TransformerClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with loopdoctor.watch(model, optimizer) as watch:
        for step in range(3):
            x, y = sequence_batch(step)
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
    assert watch.findings == []


def amp_run(init_scale, steps, max_skipped_steps=16, loss_factor=4.0, fused=False):
    torch.manual_seed(0)
    model = SmallCNN()
    # A fused optimizer is stepped even when the scaler skips: its kernel reads ``found_inf``.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, fused=fused or None)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1000)
    with loopdoctor.watch(model, optimizer, scaler=scaler, max_skipped_steps=max_skipped_steps) as watch:
        for step in range(steps):
            x, y = cnn_batch(step)
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_factor * nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss).backward()  # loss * 2**127 overflows: the scaler must back off
            scaler.step(optimizer)
            scaler.update()
    return watch, scaler


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
def test_grad_scaler_overflow_skips_are_not_findings(fused):
    watch, scaler = amp_run(init_scale=2.0 ** 127, steps=6, fused=fused)
    assert watch.findings == []
    skipped = round(math.log2(2.0 ** 127 / scaler.get_scale()))
    assert skipped > 0  # the scaler really did skip steps
    assert watch.step == 6 - skipped  # and a skipped step is not counted as one


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
def test_grad_scaler_collapse_is_reported(fused):
    with pytest.raises(loopdoctor.NonFiniteError) as caught:
        amp_run(init_scale=2.0 ** 127, steps=12, max_skipped_steps=3, loss_factor=1e6, fused=fused)
    assert caught.value.diagnosis.stage == "gradient"


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "not a model"}, "watch() takes a torch.nn.Module as its model, not str"),
    ({"optimizer": [object()]}, "watch() takes a torch.optim.Optimizer (or a list of them) as its optimizer, not object"),
])
def test_watch_rejects_what_is_not_a_model_or_optimizer(kwargs, message):
    with pytest.raises(TypeError) as caught:
        loopdoctor.watch(**kwargs)
    assert str(caught.value) == message


def scaler_loop(watch_factory, steps, bad_grad=False, micro_batches=1):
    """A plain-model AMP loop whose scale first grows past what the gradients can take (skips
    after a real step), or whose weight gradient is Inf at every step (`bad_grad`)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 100, growth_factor=2.0 ** 20, growth_interval=1)
    held = []
    with watch_factory(model, optimizer, scaler) as watch:
        for step in range(steps):
            optimizer.zero_grad()
            for _ in range(micro_batches):
                scaler.scale(model(torch.randn(8, 4)).pow(2).mean() * 1e3).backward()
                held.append(len(watch._records))
            if bad_grad:
                model.weight.grad[0, 0] = float("inf")  # written by hand, outside the scaled backward
            scaler.step(optimizer)
            scaler.update()
    return watch, held


WATCHES = {
    "watch": lambda model, optimizer, scaler: loopdoctor.watch(model, optimizer, scaler=scaler, mode="record"),
    "run": lambda model, optimizer, scaler: GlobalWatch(mode="record"),
}


@pytest.mark.parametrize("kind", sorted(WATCHES))
def test_scaler_skips_after_a_real_step_are_silent_and_not_steps(kind):
    watch, _ = scaler_loop(WATCHES[kind], steps=12)
    assert watch.findings == []
    assert watch.step == 10  # steps 1 and 2 overflow at 2**120 and 2**119 and are skipped


@pytest.mark.parametrize("kind", sorted(WATCHES))
def test_a_scaler_that_skips_every_step_is_reported_once_and_holds_nothing(kind):
    watch, held = scaler_loop(WATCHES[kind], steps=40, bad_grad=True)
    assert len(watch.findings) == 1
    diagnosis = watch.findings[0]
    assert (diagnosis.stage, diagnosis.where, diagnosis.step) == ("gradient", "weight", 0)
    assert diagnosis.detail.startswith("GradScaler skipped the last 16 optimizer steps in a row (max_skipped_steps=16)")
    assert "its scale has fallen to" in diagnosis.detail and "GradScaler skips every update" in diagnosis.cause
    assert diagnosis.stats_of == "weight.grad" and diagnosis.stats.posinf == 1
    assert max(held) == held[0]  # each skipped step's records are dropped at once, not piled up


def test_gradient_accumulation_holds_one_micro_batch_under_run():
    _, one = scaler_loop(WATCHES["run"], steps=3, micro_batches=1)
    _, sixteen = scaler_loop(WATCHES["run"], steps=3, micro_batches=16)
    assert max(sixteen) == max(one)


@pytest.mark.parametrize("kind", sorted(WATCHES))
def test_closure_steps_record_the_gradients_the_closure_made(kind):
    """LBFGS (and Lightning's automatic optimization) compute the gradients inside step(closure)."""
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight[0, 0] = 0.0  # sqrt(|w|) has an infinite derivative there
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=2)
    x = torch.randn(8, 2)

    def closure():
        optimizer.zero_grad()
        loss = model(x).pow(2).mean() + model.weight.abs().sqrt().sum()
        loss.backward()
        return loss

    with WATCHES[kind](model, optimizer, None) as watch:
        optimizer.step(closure)
    diagnosis = watch.findings[0]
    assert (diagnosis.stage, diagnosis.where, diagnosis.step) == ("gradient", "weight", 0)
    assert diagnosis.stats_of == "weight.grad" and not diagnosis.detail.startswith("its gradient was finite")


@pytest.mark.parametrize("kind", sorted(WATCHES))
def test_a_gan_iteration_is_one_step_though_two_optimizers_step(kind):
    torch.manual_seed(0)
    generator, critic = nn.Linear(4, 4), nn.Linear(4, 1)
    g_opt = torch.optim.SGD(generator.parameters(), lr=0.01)
    d_opt = torch.optim.SGD(critic.parameters(), lr=0.01)
    factory = WATCHES[kind]
    with factory(critic, [d_opt, g_opt], None) as watch:
        if kind == "watch":
            watch.add_model(generator)
        for iteration in range(8):
            noise = torch.randn(8, 4)
            if iteration == 5:
                noise[0, 0] = float("nan")
            d_opt.zero_grad()
            critic(generator(noise).detach()).mean().backward()
            d_opt.step()
            g_opt.zero_grad()
            (-critic(generator(noise)).mean()).backward()
            g_opt.step()
    assert (watch.findings[0].stage, watch.findings[0].step) == ("input", 5)


class TwoLayer(nn.Module):
    """`labels=` makes it return its own loss, as every Hugging Face model does; `rescale`
    divides the first layer's output in place by each row's largest input."""

    def __init__(self, rescale=False):
        super().__init__()
        self.fc1, self.fc2, self.rescale = nn.Linear(4, 8), nn.Linear(8, 3), rescale

    def forward(self, x, labels=None):
        h = self.fc1(x)
        if self.rescale:
            h /= x.abs().amax(dim=1, keepdim=True)
        else:
            h = torch.relu(h)
        logits = self.fc2(h)
        if labels is None:
            return logits
        return nn.functional.cross_entropy(logits, labels, ignore_index=-100), logits


def train_two_layer(kind, model, steps=4, batch=lambda step: (torch.randn(6, 4), torch.randint(0, 3, (6,))),
                    between_steps=lambda step, model: None, micro_batches=1, validate=None):
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with WATCHES[kind](model, optimizer, None) as watch:
        for step in range(steps):
            between_steps(step, model)
            optimizer.zero_grad()
            for micro in range(micro_batches):
                x, y = batch(step * micro_batches + micro)
                loss, _ = model(x, labels=y)
                loss.backward()
            optimizer.step()
            if validate is not None:
                with torch.no_grad():
                    model(validate(step))
    return watch.findings[0]


@pytest.mark.parametrize("kind", sorted(WATCHES))
def test_a_loss_computed_in_forward_is_the_loss_stage(kind):
    def labels_all_ignored_at_2(i):
        return torch.randn(6, 4), torch.full((6,), -100) if i == 2 else torch.randint(0, 3, (6,))

    diagnosis = train_two_layer(kind, TwoLayer(), batch=labels_all_ignored_at_2)
    assert (diagnosis.stage, diagnosis.where, diagnosis.step) == ("loss", "loss", 2)
    assert diagnosis.detail.startswith("a loss computed inside the forward of `(model)`")


@pytest.mark.parametrize("kind", sorted(WATCHES))
def test_an_in_place_change_in_the_parents_forward_is_blamed_on_the_parent(kind):
    def zero_row_at_1(i):
        x = torch.randn(6, 4)
        if i == 1:
            x[0] = 0.0
        return x, torch.randint(0, 3, (6,))

    diagnosis = train_two_layer(kind, TwoLayer(rescale=True), batch=zero_row_at_1)
    assert (diagnosis.stage, diagnosis.where, diagnosis.step) == ("activation", "(model)", 1)
    assert diagnosis.detail == "changed in place by code in the model's own forward after `fc1` made it, and first seen entering `fc2`"


@pytest.mark.parametrize("kind", sorted(WATCHES))
def test_an_in_place_change_made_only_later_is_still_blamed_on_the_parent(kind):
    """`fc1`'s output waits for the step's check once two steps saw no code change it; when the
    forward starts rescaling it in place at step 2, the change is still what is blamed."""
    def zero_row_at_2(i):
        x = torch.randn(6, 4)
        if i == 2:
            x[0] = 0.0
        return x, torch.randint(0, 3, (6,))

    def rescale_from_2(step, model):
        model.rescale = step >= 2

    diagnosis = train_two_layer(kind, TwoLayer(), batch=zero_row_at_2, between_steps=rescale_from_2)
    assert (diagnosis.stage, diagnosis.where, diagnosis.step) == ("activation", "(model)", 2)
    assert diagnosis.detail.startswith("changed in place by code in the model's own forward after `fc1` made it")


class SqrtWhereNegative(nn.Module):
    """`where(h > 100, sqrt(h), h)`: finite forward, but a NaN gradient wherever h < 0 (the
    branch not taken still backpropagates 0 * NaN)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)
        with torch.no_grad():
            self.fc.weight.fill_(1.0)
            self.fc.bias.zero_()

    def forward(self, x):
        h = self.fc(x)
        return torch.where(h > 100, torch.sqrt(h), h)


@pytest.mark.parametrize("kind", sorted(WATCHES))
@pytest.mark.parametrize("bad_step, traced", [(64, True), (70, False)])
def test_a_gradient_at_a_step_not_traced_is_caught_at_its_parameter(kind, bad_step, traced):
    model = SqrtWhereNegative()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    with WATCHES[kind](model, optimizer, None) as watch:
        for step in range(bad_step + 1):
            x = torch.full((4, 1), -1.0 if step == bad_step else 1.0)
            optimizer.zero_grad()
            model(x).sum().backward()
            optimizer.step()
    diagnosis = watch.findings[0]
    assert (diagnosis.stage, diagnosis.step) == ("gradient", bad_step)
    if traced:  # the activation gradient: made by the model's own forward code, into fc's output
        assert diagnosis.where == "(model)" and "caught at the parameter" not in diagnosis.detail
    else:
        assert diagnosis.where == "fc.weight" and diagnosis.detail.startswith("caught at the parameter")


@pytest.mark.parametrize("kind", sorted(WATCHES))
def test_a_parameter_broken_outside_the_optimizer_is_named(kind):
    def renormalise_badly_before_3(step, model):
        if step == 3:
            with torch.no_grad():
                model.fc2.weight[0] /= model.fc2.weight[0].sum() * 0  # a renormalisation by zero

    diagnosis = train_two_layer(kind, TwoLayer(), between_steps=renormalise_badly_before_3)
    assert (diagnosis.stage, diagnosis.where, diagnosis.step) == ("parameter", "fc2.weight", 3)
    assert diagnosis.detail == "`fc2.weight` was already non-finite when `fc2` ran, before any update of this step"
    assert "outside the optimizer" in diagnosis.cause


@pytest.mark.parametrize("kind", sorted(WATCHES))
def test_the_batch_is_where_the_value_appeared_and_evaluation_says_so(kind):
    def nan_in_micro_batch_6(i):
        x = torch.randn(6, 4)
        if i == 6:
            x[0, 0] = float("nan")
        return x, torch.randint(0, 3, (6,))

    accumulated = train_two_layer(kind, TwoLayer(), batch=nan_in_micro_batch_6, micro_batches=4)
    assert (accumulated.stage, accumulated.step, accumulated.batch, accumulated.evaluating) == ("input", 1, 6, False)

    def nan_in_validation_after_2(step):
        x = torch.randn(6, 4)
        if step == 2:
            x[0, 0] = float("nan")
        return x

    validated = train_two_layer(kind, TwoLayer(), validate=nan_in_validation_after_2)
    assert (validated.stage, validated.step, validated.evaluating) == ("input", 3, True)
    assert validated.headline == "first non-finite value: input, during evaluation after 3 optimizer steps"


def train_lm(kind, model, steps=3, mask_input=False):
    from runtime_models import lm_batch

    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with WATCHES[kind](model, optimizer, None) as watch:
        for step in range(steps):
            tokens, targets = lm_batch(step)
            mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1]) if mask_input else None
            logits = model(tokens, mask) if mask_input else model(tokens)
            optimizer.zero_grad()
            nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
            optimizer.step()
    return watch


@pytest.mark.parametrize("kind", sorted(WATCHES))
@pytest.mark.parametrize("mask", ["forward", "input"])
def test_causal_masks_and_masked_scores_are_no_finding(kind, mask):
    from runtime_models import CausalLM

    watch = train_lm(kind, CausalLM(mask=mask), mask_input=mask == "input")
    assert watch.findings == []
    assert watch.step == 3


@pytest.mark.parametrize("kind", sorted(WATCHES))
def test_a_row_masked_entirely_is_a_nan_and_says_so(kind):
    from runtime_models import CausalLM

    diagnosis = train_lm(kind, CausalLM(mask_rows=[2])).findings[0]
    assert (diagnosis.stage, diagnosis.where, diagnosis.step, diagnosis.module_type) == ("activation", "softmax", 0, "Softmax")
    assert diagnosis.detail == "4 row(s) of its input are -inf everywhere along the last dimension (masked entirely): their softmax is 0/0 = NaN"


def test_a_nan_in_a_mask_is_still_found():
    from runtime_models import CausalLM, lm_batch

    model = CausalLM(mask="input")
    mask = nn.Transformer.generate_square_subsequent_mask(8)
    mask[3, 0] = float("nan")
    with pytest.raises(loopdoctor.NonFiniteError) as caught:
        with loopdoctor.watch(model):
            model(lm_batch(0)[0], mask)
    assert caught.value.diagnosis.stage == "input"


def test_logit_stage_alone_reports_the_models_output_not_its_layers():
    model = nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    with pytest.raises(loopdoctor.NonFiniteError) as caught:
        with loopdoctor.watch(model, stages=["logit"]):
            model(torch.full((1, 2), 3e38))  # the first layer overflows, and so the output
    assert (caught.value.diagnosis.stage, caught.value.diagnosis.where) == ("logit", "(model)")


def test_unchecked_earlier_stages_leave_the_cause_open():
    trainer = TicketTrainer(fault=make_fault("input", 4))
    with pytest.raises(loopdoctor.NonFiniteError) as caught:
        with loopdoctor.watch(trainer.model, trainer.optimizer, stages=["loss", "parameter"]):
            trainer.fit()
    diagnosis = caught.value.diagnosis
    assert diagnosis.stage == "loss"
    assert diagnosis.cause.startswith("not known: the input, activation, logit stage(s) were not checked")


def test_the_first_bad_element_and_float16_overflow_are_named():
    from loopdoctor.runtime.diagnosis import Diagnosis
    from loopdoctor.runtime.watch import tensor_stats

    values = torch.tensor([[1.0, 2.0], [70000.0, 3.0]]).half()  # 70000 is beyond float16
    diagnosis = Diagnosis(stage="activation", where="fc", step=0, batch=0, stats=tensor_stats(values), cause="c")
    lines = diagnosis.lines()
    assert "tensor (2, 2) float16: 0 NaN, 1 +Inf, 0 -Inf; first at (1, 0); finite range [1, 3]" in lines
    assert "float16 overflows to Inf beyond ±65504: compute this in float32 or bfloat16, or scale it down" in lines
