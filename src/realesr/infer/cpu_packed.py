"""The CPU's fast path: a network's convolutions with their weights pre-packed once into oneDNN's blocked
layout, fused with the LeakyReLU that follows them, in bf16 or fp32.

Why: bf16 with fp32 first and last layers (precision.half_network) keeps the trunk's residual sums in fp32;
in eager torch that makes each dense block concatenate in fp32 and cast back, which cost 40-50 % of bf16's
time on RRDBNet. Traced with ``torch.fx`` (plain module graph, no compilation), each ``nn.Conv2d`` becomes a
:class:`PackedConv2d` calling oneDNN's fused convolution (``torch.ops.mkldnn._convolution_pointwise``, the op
inductor's CPU backend lowers to) with weights packed once, a following ``LeakyReLU`` is folded into it, and
concatenations run in bf16: the fp32 ends then cost 3-5 %. Packing and fusion alone were not measurably
faster than a plain bf16 cast on AMD Zen 4 at one thread (bench/cpu.py). Networks it cannot trace, or ops it
does not know, stay as they are.

``keep_fp32`` names convolutions that stay fp32 in a bf16 network: the first (its input is the 8-bit picture,
which bf16's 8-bit mantissa would round by up to half a level) and the last (its output is the picture). Every
packed convolution casts its input to its own dtype, so a bf16 trunk between fp32 ends keeps its residual sums
in fp32 (type promotion), which cuts bf16's difference to fp32 on RRDBNet by about 40 % (docs/upscale.md).
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

__all__ = ["PackedConv2d", "available", "pack_network"]


def available() -> bool:
    """Whether this torch has oneDNN with the fused convolution op."""
    return bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


class PackedConv2d(nn.Module):
    """An ``nn.Conv2d`` (zero padding) in ``dtype`` with pre-packed weights and an optional fused LeakyReLU."""

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype, slope: float | None, input_size: list[int]) -> None:
        super().__init__()
        self.dtype = dtype
        self.padding = list(conv.padding)
        self.stride, self.dilation, self.groups = list(conv.stride), list(conv.dilation), conv.groups
        self.attr, self.scalars = ("leaky_relu", [slope]) if slope is not None else ("none", [])
        weight = conv.weight.detach().to(dtype).contiguous()
        self.bias = None if conv.bias is None else conv.bias.detach().to(dtype)
        # oneDNN's blocked layout, chosen for an input of this size; other sizes run on it too.
        # (torch's stub lacks the input_size argument the op takes.)
        self.packed = torch._C._nn.mkldnn_reorder_conv2d_weight(  # type: ignore[call-arg]
            weight.to_mkldnn(), self.padding, self.stride, self.dilation, self.groups, input_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return torch.ops.mkldnn._convolution_pointwise(
            x,
            self.packed,
            self.bias,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
            self.attr,
            self.scalars,
            "",
        )

    def extra_repr(self) -> str:
        return f"{self.dtype}, groups={self.groups}, {self.attr}"


def _packable(module: nn.Module) -> bool:
    return type(module) is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str)


def _slope_of(node: fx.Node, modules: dict[str, nn.Module]) -> float | None:
    """The negative slope when ``node`` is a LeakyReLU module call (or a plain ReLU: slope 0)."""
    if node.op != "call_module":
        return None
    module = modules[str(node.target)]
    if type(module) is nn.LeakyReLU:
        return float(module.negative_slope)
    if type(module) is nn.ReLU:
        return 0.0
    return None


def pack_network(
    net: nn.Module, dtype: torch.dtype, keep_fp32: tuple[str, ...] = (), fuse: bool = True, channels: int = 3
) -> nn.Module | None:
    """A copy of ``net`` (eval, CPU) whose convolutions are packed (and fused), or None when it cannot be traced.

    ``keep_fp32``: names of convolutions ("first", "last" or module names) that stay fp32. The result's
    output is in the dtype of its last layer; it takes inputs in any float dtype.
    """
    try:
        graph_module = fx.symbolic_trace(copy.deepcopy(net).eval())
    except Exception:  # noqa: BLE001 - any tracing failure means: run the network as it is
        return None
    modules = dict(graph_module.named_modules())
    convs = [n for n in graph_module.graph.nodes if n.op == "call_module" and _packable(modules[str(n.target)])]
    if not convs:
        return None
    keep_fp32 = keep_fp32 if len(convs) >= 3 else ()  # a network of fp32 ends alone would not be bf16 at all
    fp32_names = {
        str(convs[0].target) if k == "first" else str(convs[-1].target) if k == "last" else k for k in keep_fp32
    }
    hint = [1, channels, 64, 64]
    for index, node in enumerate(convs):
        conv = modules[str(node.target)]
        users = list(node.users)
        slope = _slope_of(users[0], modules) if fuse and len(users) == 1 else None
        conv_dtype = torch.float32 if str(node.target) in fp32_names else dtype
        packed = PackedConv2d(conv, conv_dtype, slope, [1, conv.in_channels, *hint[2:]])
        name = f"packed_{index}"
        graph_module.add_submodule(name, packed)
        with graph_module.graph.inserting_after(node):
            new = graph_module.graph.call_module(name, node.args, node.kwargs)
        node.replace_all_uses_with(new)
        graph_module.graph.erase_node(node)
        if slope is not None:
            users[0].replace_all_uses_with(new)
            graph_module.graph.erase_node(users[0])
    if dtype != torch.float32:
        _concatenate_in(graph_module, dtype)
    graph_module.graph.eliminate_dead_code()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    _cast_other_parameters(graph_module, dtype, fp32_names)
    return graph_module.eval()


def _concatenate_in(graph_module: fx.GraphModule, dtype: torch.dtype) -> None:
    """Concatenations run in ``dtype``: with fp32 ends the trunk's residual sums are fp32, and a dense block's
    concatenation of that fp32 sum with its bf16 layers would otherwise be fp32 (twice the memory traffic, and
    cast back to bf16 by the next convolution anyway)."""
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target is not torch.cat or not isinstance(node.args[0], (list, tuple)):
            continue
        with graph_module.graph.inserting_before(node):
            cast = [graph_module.graph.call_method("to", (part, dtype)) for part in node.args[0]]
        node.args = (cast, *node.args[1:])


def _cast_other_parameters(graph_module: fx.GraphModule, dtype: torch.dtype, fp32_names: set[str]) -> None:
    """Layers other than convolutions (PReLU) take the trunk's dtype; their inputs are cast to it."""
    for module in graph_module.modules():
        if isinstance(module, PackedConv2d) or not any(True for _ in module.parameters(recurse=False)):
            continue
        module.to(dtype)
        module.register_forward_pre_hook(lambda m, args: (args[0].to(next(m.parameters()).dtype), *args[1:]))
