"""The torch vocabulary and role inference: what a name holds in training code.

The semantic model (``model.py``) knows Python: names, bindings, calls, loops, same-file
functions. This module knows torch: which calls build a model, an optimizer, a loss, a scaler, a
scheduler or a loader, how a file spells grad mode, and which layers behave differently in
train and eval mode. Rules ask it through free functions over the semantic model
(``roles.has_role(semantic, key, function, "optimizer")``), the way ruff keeps
``is_logger_candidate`` beside its semantic model.
"""

from __future__ import annotations

import sys

from dataclasses import dataclass
from typing import Optional

import libcst as cst

from loopdoctor.static.crossfile import LAYER_PREFIX, LAYERS_KNOWN, MODULE
from loopdoctor.static.model import Assignment, CallSite, ClassInfo, Function, SemanticModel, call_args, dotted, words_of
from loopdoctor.static.walk import walk

# How torch spells a change of grad mode: contexts (and decorators) that turn it off or on, the
# switch that takes the mode as its argument, and the words a prefilter looks for.
GRAD_DISABLING = frozenset(
    {"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad", "torch.autograd.grad_mode.no_grad"}
)
GRAD_ENABLING = frozenset({"torch.enable_grad", "torch.autograd.enable_grad"})
GRAD_SWITCHES = frozenset({"torch.set_grad_enabled", "torch.autograd.set_grad_enabled", "torch.autograd.grad_mode.set_grad_enabled"})
GRAD_MODE_TOKENS = ("no_grad", "inference_mode", "set_grad_enabled")

ROLE_WORDS = {
    "optimizer": {"optimizer", "optim", "opt", "optimiser"},
    "scheduler": {"scheduler", "sched", "lr_scheduler"},
    "scaler": {"scaler", "grad_scaler", "gradscaler"},
    "loss": {"criterion", "loss_fn", "loss_func", "lossfn", "loss_function", "loss_module"},
    "loader": {"loader", "dataloader", "dl"},
    "model": {
        "model", "net", "network", "module", "encoder", "decoder", "generator", "discriminator",
        "netg", "netd", "student", "teacher", "classifier", "backbone", "critic", "actor",
    },
}
OPTIMIZER_CLASSES = frozenset(
    {
        "SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "ASGD", "LBFGS", "NAdam",
        "RAdam", "RMSprop", "Rprop", "SparseAdam", "Adafactor", "Lamb", "LAMB", "Lion",
        "Muon", "FusedAdam", "FusedLAMB", "ZeroRedundancyOptimizer",
    }
)
SOFTMAX_FUNCTIONS = frozenset(
    {"torch.softmax", "torch.nn.functional.softmax", "torch.special.softmax", "torch.Tensor.softmax"}
)
# Methods that keep the values of a tensor (and so keep "these are probabilities" true).
VALUE_PRESERVING_METHODS = frozenset(
    {
        "float", "double", "half", "bfloat16", "to", "cpu", "cuda", "view", "reshape", "squeeze",
        "unsqueeze", "contiguous", "permute", "transpose", "flatten", "clone", "detach",
    }
)
WRAPPER_CALLS = frozenset(
    {
        "torch.nn.parallel.DistributedDataParallel", "torch.nn.DataParallel",
        "torch.nn.parallel.DataParallel", "torch.compile", "torch.jit.script",
        "torch.nn.SyncBatchNorm.convert_sync_batchnorm",
    }
)
# Files built on these (and not on torch) use words like backward() and step() differently.
OTHER_FRAMEWORKS = frozenset({"mxnet", "tensorflow", "jax", "flax", "paddle", "mindspore", "oneflow", "chainer", "keras"})
# Libraries whose constructors this module recognises (anything else they build has no role).
UNDERSTOOD_LIBRARIES = frozenset({"torch", "torchvision", "transformers", "timm", "open_clip"})
# Factories that return a model (open_clip's *_and_transforms return tuples, so not those).
MODEL_FACTORIES = frozenset({"create_model"})
TORCHVISION_NON_MODELS = frozenset({"get_weight", "get_model_weights", "list_models", "get_model_builder"})
# Methods that run a model's forward whatever its class: Hugging Face's and GPT codebases' generate.
FORWARD_RUNNING_METHODS = frozenset({"forward", "generate"})
# Methods that run part of the forward: timm's `forward_features` / `forward_head` /
# `forward_intermediates`, and their like elsewhere.
FORWARD_RUNNING_PREFIX = "forward_"
MODEL_MOVING_METHODS = frozenset({"to", "cuda", "cpu", "float", "double", "half", "bfloat16", "train", "eval", "to_empty"})


def disables_grad(semantic: SemanticModel, qualified: Optional[str]) -> bool:
    """Is ``qualified`` a context manager or decorator that turns gradients off: torch's, one whose
    name says it wraps torch's (``smart_inference_mode``, ``maybe_no_grad``), or one the project
    names in ``grad-disabling-functions`` (by its name or qualified name)?"""
    if not qualified:
        return False
    if qualified in GRAD_DISABLING:
        return True
    if qualified.rsplit(".", 1)[-1].endswith(("no_grad", "inference_mode")):
        return True  # a project's own wrapper of torch's (yolov5's `@smart_inference_mode()`)
    custom = semantic.settings.grad_disabling
    return bool(custom) and (qualified in custom or qualified.rsplit(".", 1)[-1] in custom)


def is_step_method(semantic: SemanticModel, method: Optional[str]) -> bool:
    """``step``, or a wrapper the project names in ``optimizer-step-methods``."""
    return method == "step" or (method is not None and method in semantic.settings.step_methods)


# A class whose own code reads `self.training` (timm's DropBlock2d and DropPath, stochastic
# depth, a layer that samples only in training): eval() changes what it computes.
TRAINING_BRANCH = "self.training"


def _branches_on_training(cls: cst.ClassDef) -> bool:
    return any(
        isinstance(node, cst.Attribute) and node.attr.value == "training" and dotted(node.value) == "self"
        for node in walk(cls)
    )


def _mode_dependent_kind(qualified: str, last: str) -> Optional[str]:
    if not qualified.startswith("torch.nn."):
        return None
    if "dropout" in last.lower():
        return "Dropout"
    if "BatchNorm" in last or (last.startswith("InstanceNorm") and "functional" not in qualified):
        return "BatchNorm"
    return None



@dataclass
class Role:
    kind: str  # model | optimizer | loss | scaler | scheduler | loader | softmax
    detail: Optional[str] = None  # loss class name, model class name, ...
    source: Optional[cst.BaseExpression] = None  # the constructor expression, when known



def is_module_class(semantic: SemanticModel, cls: ClassInfo, seen: set[str]) -> bool:
    seen.add(cls.name)
    for base in cls.bases:
        if base.endswith("Module") or base.endswith("Model"):
            return True
        local = semantic.classes.get(base)
        if local is not None and local.name not in seen and is_module_class(semantic, local, seen):
            return True
    return False

def uses_other_framework(semantic: SemanticModel) -> bool:
    roots = {target.split(".", 1)[0] for target in semantic.imports.values()}
    roots.update(base.split(".", 1)[0] for base in semantic.star_imports)
    return bool(roots & OTHER_FRAMEWORKS) and "torch" not in roots

# ---- names -------------------------------------------------------------------------
def is_torch_name(semantic: SemanticModel, qualified: Optional[str], *last_names: str) -> bool:
    """Is ``qualified`` torch's object called one of ``last_names``, however it was imported?"""
    if not qualified:
        return False
    head, _, last = qualified.rpartition(".")
    if last not in last_names:
        return False
    if head.split(".", 1)[0] == "torch":
        return True
    # `from torch.nn import *` leaves the bare name unresolved.
    return head == "" and qualified not in semantic.imports and bool(semantic.star_imports)

def role_of(semantic: SemanticModel, key: Optional[str], function: Function) -> Optional[Role]:
    if not key:
        return None
    cache_key = (id(function), key)
    if cache_key in semantic._role_cache:
        return semantic._role_cache[cache_key]
    if cache_key in semantic._role_stack:
        return None
    semantic._role_stack.add(cache_key)
    try:
        role = _infer_role(semantic, key, function)
    finally:
        semantic._role_stack.discard(cache_key)
    semantic._role_cache[cache_key] = role
    return role

def has_role(semantic: SemanticModel, key: Optional[str], function: Function, kind: str) -> bool:
    role = role_of(semantic, key, function)
    return role is not None and role.kind == kind

def called_model(semantic: SemanticModel, site: CallSite) -> Optional[str]:
    """The model this call runs (``model(x)``, ``semantic.net(x)``): its key, else None."""
    key = dotted(site.node.func)
    return key if has_role(semantic, key, site.function, "model") else None

def evaluated_model(semantic: SemanticModel, site: CallSite) -> Optional[str]:
    """The model this call runs for its outputs: ``model(x)``, or a method that runs the forward
    (``model.generate(...)``, ``model.forward(...)``, ``model.forward_features(...)``, or a
    method of the model's class in this file that calls ``self(...)``): its key, else None."""
    key = called_model(semantic, site)
    if key is not None or site.receiver is None or not has_role(semantic, site.receiver, site.function, "model"):
        return key
    if site.method in FORWARD_RUNNING_METHODS or (site.method or "").startswith(FORWARD_RUNNING_PREFIX):
        return site.receiver
    cls = model_class(semantic, site.receiver, site.function)
    method = cls.methods.get(site.method or "") if cls is not None else None
    return site.receiver if method is not None and _runs_own_forward(method) else None

def _runs_own_forward(method: Function) -> bool:
    return any(dotted(site.node.func) in ("self", "self.forward") for site in method.calls)

def _infer_role(semantic: SemanticModel, key: str, function: Function) -> Optional[Role]:
    if key == "self":
        cls = function.owner_class
        return Role("model", cls.name) if cls is not None and cls.is_module else None
    definitions = semantic.definitions(key, function)
    for assignment in sorted(definitions, key=lambda a: -a.order):
        role = _role_of_assignment(semantic, assignment)
        if role is not None:
            return role
    scope = _param_scope(semantic, key, function)
    if scope is not None:
        if key in scope.defaults:
            role = role_of_value(semantic, scope.defaults[key], scope)
            if role is not None:
                return role
        annotation = scope.annotations.get(key)
        if annotation:
            role = _role_of_class_name(semantic, annotation)
            if role is not None:
                return role
        role = _role_from_callers(semantic, key, scope)
        if role is not None:
            return role
    if any(_is_understood(semantic, a.value) for a in definitions):
        return None  # built from something known, and that is none of the roles
    return _role_from_usage(semantic, key, function) or _role_from_words(semantic, key)

def _role_from_callers(semantic: SemanticModel, param: str, function: Function) -> Optional[Role]:
    """The role of what this file's calls of ``function`` hand in as ``param``, where every call
    that passes something known passes the same kind (``evaluate(head, ...)`` after ``head =
    ProbeHead(...)``)."""
    found: list[Role] = []
    for site in semantic.call_sites_of(function):
        argument = semantic.bind_arguments(site, function).get(param)
        role = role_of(semantic, argument, site.function) if argument else None
        if role is not None:
            found.append(role)
    return found[0] if found and all(role.kind == found[0].kind for role in found) else None


def _param_scope(semantic: SemanticModel, key: str, function: Function) -> Optional[Function]:
    scope: Optional[Function] = function
    while scope is not None:
        if key in scope.params:
            return scope
        if key in scope.assignments:
            return None
        scope = scope.parent
    return None

def _is_understood(semantic: SemanticModel, value: Optional[cst.BaseExpression]) -> bool:
    """Values whose role we would have recognised: literals, classes of this file, and what the
    libraries whose vocabulary this module knows build. A class imported from the project's
    own modules (nanoGPT's ``from model import GPT``) or another library is not understood:
    the name's use and its words still say what it holds."""
    if value is None or isinstance(value, (cst.Name, cst.Attribute, cst.Subscript)):
        return False
    if not isinstance(value, cst.Call):
        return True
    name = dotted(value.func)
    if name is None:
        return False
    head = name.split(".", 1)[0]
    if name in semantic.classes:
        return True
    qualified = semantic.resolve(value.func) or ""
    if qualified in WRAPPER_CALLS or qualified.endswith("DistributedDataParallel"):
        return False  # `model = torch.compile(model)`: whatever the wrapped name holds
    if qualified == WHOLE_MODULE_LOAD:
        return False  # a checkpoint dict or a whole pickled module: its use says which
    return head in semantic.imports and semantic.imports[head].split(".", 1)[0] in UNDERSTOOD_LIBRARIES

# Calls whose model starts in a known mode: `torch.load` unpickles a whole module in the mode it
# was saved in, often training; Hugging Face's (and diffusers', peft's) `from_pretrained` calls
# `model.eval()`.
WHOLE_MODULE_LOAD = "torch.load"
PRETRAINED_LOADER_SUFFIX = ".from_pretrained"


def loaded_mode(semantic: SemanticModel, value: cst.BaseExpression) -> Optional[str]:
    """"train" or "eval" (flow.py's modes) for a model loaded by one of those calls, else None."""
    if not isinstance(value, cst.Call):
        return None
    qualified = semantic.resolve(value.func) or ""
    if qualified == WHOLE_MODULE_LOAD:
        return "train"
    return "eval" if qualified.endswith(PRETRAINED_LOADER_SUFFIX) else None


def _role_of_assignment(semantic: SemanticModel, assignment: Assignment) -> Optional[Role]:
    value = assignment.value
    if value is None:
        return None
    if assignment.unpack_index is not None:
        value = unpacked(semantic, value, assignment.unpack_index)
        if value is None:
            return None
    return role_of_value(semantic, value, assignment.function)

def unpacked(semantic: SemanticModel, value: cst.BaseExpression, index: int) -> Optional[cst.BaseExpression]:
    if isinstance(value, (cst.Tuple, cst.List)) and index < len(value.elements):
        return value.elements[index].value
    if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value == "prepare":
        positional, _ = call_args(value)
        return positional[index] if index < len(positional) else None
    return None

def role_of_value(semantic: SemanticModel, value: cst.BaseExpression, function: Function) -> Optional[Role]:
    """The role of whatever ``value`` evaluates to."""
    if isinstance(value, (cst.Name, cst.Attribute)):
        key = dotted(value)
        return role_of(semantic, key, function) if key and key not in semantic.imports else None
    if not isinstance(value, cst.Call):
        return None
    func = value.func
    if isinstance(func, cst.Attribute) and func.attr.value in MODEL_MOVING_METHODS:
        inner = role_of_value(semantic, func.value, function)
        if inner is not None and inner.kind in ("model", "loss", "softmax"):  # `nn.CrossEntropyLoss().to(device)`
            return inner
    qualified = semantic.resolve(func)
    if qualified is None:
        return None
    if qualified in WRAPPER_CALLS or qualified.endswith("DistributedDataParallel"):
        positional, keywords = call_args(value)
        wrapped = positional[0] if positional else keywords.get("module") or keywords.get("model")
        return role_of_value(semantic, wrapped, function) if wrapped is not None else None
    role = _role_of_class_name(semantic, qualified)
    if role is not None:
        role.source = value
    return role

def _role_of_class_name(semantic: SemanticModel, qualified: str) -> Optional[Role]:
    last = qualified.rsplit(".", 1)[-1]
    local = semantic.classes.get(qualified)
    if local is not None:
        return _role_of_local_class(semantic, local)
    if MODULE in semantic.external.get(qualified, ()):
        return Role("model", qualified)
    factory = _model_factory(qualified)
    if factory is not None:
        return Role("model", factory)
    from_torch = qualified.split(".", 1)[0] == "torch" or (qualified == last and bool(semantic.star_imports))
    if "lr_scheduler" in qualified or last.endswith("LR") or last in ("ReduceLROnPlateau", "LambdaLR"):
        return Role("scheduler", last)
    if last.endswith("GradScaler"):
        return Role("scaler", last)
    if last in OPTIMIZER_CLASSES or (qualified.startswith("torch.optim.") and last[:1].isupper()) or last == "Optimizer":
        return Role("optimizer", last)
    if last == "DataLoader":
        return Role("loader", last)
    if not from_torch:
        return None
    if qualified.startswith("torch.nn.") or qualified.startswith("torch.nn.modules"):
        if last in ("Softmax", "Softmax2d"):
            return Role("softmax", last)
        if last.endswith("Loss"):
            return Role("loss", last)
        if last[:1].isupper() and last not in ("Parameter", "ParameterList", "ParameterDict"):
            return Role("model", last)
    return None

def _role_of_local_class(semantic: SemanticModel, cls: ClassInfo) -> Optional[Role]:
    """A class of this file: a model when it derives from a module, the loss it derives from
    when that is one of torch's (``class SmoothedCE(nn.CrossEntropyLoss)``)."""
    for base in cls.bases:
        qualified = semantic.resolve_dotted(base)
        last = qualified.rsplit(".", 1)[-1]
        if qualified.startswith("torch.nn.") and last.endswith("Loss"):
            return Role("loss", last)
    return Role("model", cls.name) if cls.is_module else None


def _model_factory(qualified: str) -> Optional[str]:
    """Models built by the libraries training code imports them from: ``timm.create_model``,
    ``AutoModelForCausalLM.from_pretrained``, ``LlamaForCausalLM(config)``,
    ``torchvision.models.resnet18``. The name of what is built, else None."""
    parts = qualified.split(".")
    root, last = parts[0], parts[-1]
    if root in ("timm", "open_clip") and last in MODEL_FACTORIES:
        return last
    if root == "transformers":
        cls = parts[-2] if last == "from_pretrained" and len(parts) > 2 else last
        if cls[:1].isupper() and (cls.endswith("Model") or "For" in cls):
            return cls
    if qualified.startswith("torchvision.models.") and last not in TORCHVISION_NON_MODELS and not last.endswith("Weights"):
        return last
    return None


def _role_from_usage(semantic: SemanticModel, key: str, function: Function) -> Optional[Role]:
    methods = set()
    scope: Optional[Function] = function
    functions = list(function.owner_class.methods.values()) if key.startswith("semantic.") and function.owner_class else [function]
    for scope in functions:
        for site in scope.calls:
            if site.receiver == key and site.method:
                methods.add(site.method)
    if {"scale", "unscale_"} & methods and "update" in methods:
        return Role("scaler")
    if "zero_grad" in methods and "step" in methods:
        return Role("optimizer")
    if {"eval", "parameters", "named_parameters", "state_dict", "load_state_dict"} & methods and "step" not in methods:
        if "eval" in methods or "parameters" in methods or "named_parameters" in methods:
            return Role("model")
    return None

def _role_from_words(semantic: SemanticModel, key: str) -> Optional[Role]:
    words = words_of(key)
    settings = semantic.settings
    extra = {"model": settings.model_names, "optimizer": settings.optimizer_names, "loss": settings.loss_names}
    last = key.rsplit(".", 1)[-1]
    for kind, names in extra.items():  # the project's own names first, matched whole
        if last in names:
            return Role(kind)
    for kind, vocabulary in ROLE_WORDS.items():
        if words & vocabulary:
            return Role(kind)
    if any(w.endswith("loader") for w in words):
        return Role("loader")
    return None

# ---- loss functions and models --------------------------------------------------------------
def loss_kind_of_call(semantic: SemanticModel, site: CallSite) -> Optional[str]:
    """For a call that computes a loss, the torch loss it is (``"CrossEntropyLoss"``, ...)."""
    func = site.node.func
    qualified = site.callee
    if qualified and qualified.startswith("torch.nn.functional."):
        return qualified.rsplit(".", 1)[-1]
    if isinstance(func, cst.Call):  # nn.CrossEntropyLoss()(logits, y)
        role = role_of_value(semantic, func, site.function)
    else:
        role = _reaching_loss(semantic, site) or role_of(semantic, dotted(func), site.function)
    if role is not None and role.kind == "loss":
        return role.detail
    return None

def _reaching_loss(semantic: SemanticModel, site: CallSite) -> Optional[Role]:
    """The loss a local name holds at the call, where it is bound again on other branches
    (Hugging Face heads: ``loss_fct = MSELoss()`` / ``CrossEntropyLoss()`` / ``BCEWithLogitsLoss()``
    by problem type, each called right after it is bound)."""
    key = dotted(site.node.func)
    if key is None or "." in key or len(site.function.assignments.get(key, ())) < 2:
        return None
    reaching = semantic.reaching_value(key, site.function, site.order)
    role = _role_of_assignment(semantic, reaching) if reaching is not None else None
    return role if role is not None and role.kind == "loss" else None

def model_class(semantic: SemanticModel, key: str, function: Function) -> Optional[ClassInfo]:
    role = role_of(semantic, key, function)
    if role is None or role.kind != "model" or role.detail is None:
        return None
    return semantic.classes.get(role.detail)

def model_construction(semantic: SemanticModel, key: str, function: Function) -> Optional[cst.Call]:
    role = role_of(semantic, key, function)
    if role is None or role.kind != "model":
        return None
    return role.source if isinstance(role.source, cst.Call) else None

def mode_dependent_layers(semantic: SemanticModel, key: str, function: Function) -> Optional[frozenset[str]]:
    """Which layers that behave differently in train and eval mode (``"Dropout"``,
    ``"BatchNorm"``) the model under ``key`` contains, when its construction is visible here:
    an ``nn.*`` call or a class of this file whose every sub-layer is known. None: unknown."""
    cls = model_class(semantic, key, function)
    if cls is not None:
        return layers_of_class(semantic, cls)
    construction = model_construction(semantic, key, function)
    if construction is None or _model_factory(semantic.resolve(construction.func) or "") is not None:
        return None  # built where this file cannot see (timm, transformers, torchvision)
    tags = semantic.external.get(semantic.resolve(construction.func) or "", frozenset())
    if MODULE in tags:  # a class of another file of the project (crossfile.py)
        return frozenset(t[len(LAYER_PREFIX):] for t in tags if t.startswith(LAYER_PREFIX)) if LAYERS_KNOWN in tags else None
    return _layers_in(semantic, construction, set())


def layers_of_class(semantic: SemanticModel, cls: ClassInfo) -> Optional[frozenset[str]]:
    return _layers_in(semantic, cls.node, set())

# (Python 3.9 has no `sys.stdlib_module_names`: the modules whose classes models hold there.)
STANDARD_LIBRARY = getattr(sys, "stdlib_module_names", frozenset({"collections", "types", "dataclasses", "functools", "typing"}))


def _layers_in(semantic: SemanticModel, node: cst.CSTNode, seen: set[str]) -> Optional[frozenset[str]]:
    found: set[str] = {TRAINING_BRANCH} if isinstance(node, cst.ClassDef) and _branches_on_training(node) else set()
    known = True
    for call in (n for n in walk(node) if isinstance(n, cst.Call)):
        qualified = semantic.resolve(call.func) or ""
        last = qualified.rsplit(".", 1)[-1]
        kind = _mode_dependent_kind(qualified, last)
        if kind is not None:
            found.add(kind)
        elif last in semantic.classes and last not in seen:
            inner = _layers_in(semantic, semantic.classes[last].node, seen | {last})
            known = known and inner is not None
            found |= inner or set()
        elif last[:1].isupper() and not qualified.startswith("torch.") and qualified.split(".")[0] not in STANDARD_LIBRARY:
            # A layer built by a class this file cannot see into; the standard library's classes
            # build none (`nn.Sequential(OrderedDict(...))`, `types.SimpleNamespace(...)`).
            known = False
    return frozenset(found) if known or found else None

