"""CUDA graphs for a denoiser's forward: captured once per input signature, replayed on every later step.

Eager PyTorch launches a UNet step's ~1,000 kernels one at a time from Python. On a fast GPU that host
work, not the arithmetic, sets the pace (SD 1.5 at 512 on an H100: the GPU idles between kernels). A CUDA
graph replays the whole forward with one launch, with the same kernels, so results equal eager ones.

`graph_forward(module)` replaces `module.forward` with a `GraphedForward`: a call whose tensors are all on
CUDA, with gradients off, is looked up by its signature (the tree of arguments with each tensor's shape,
dtype and strides, and every other value as is); the first call of a signature warms up on a side stream
and captures a graph into static input buffers; later calls copy their tensors into those buffers and
replay. Anything else (CPU tensors, autograd, a capture that fails) runs the module's own forward.

Outputs are cloned out of the graph's memory, so a caller may keep them across steps. The graphs of one
module share one memory pool: they never run at the same time, and each output is copied out before the
next replay.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

logger = logging.getLogger(__name__)

WARMUP_CALLS = 2  # eager calls on a side stream before a capture (cuDNN/cuBLAS pick their algorithms)
MAX_GRAPHS = 8  # signatures kept per module (sizes, batch sizes); the least recently used goes first
# A module whose signature keeps changing (a number that varies per step) stops capturing: past MAX_GRAPHS
# captures, once more than one call in CHURN makes a new one. A server's images make one per size.
CHURN = 4


@dataclass
class _Capture:
    graph: torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]
    output: object


class GraphedForward:
    """A module's forward that replays CUDA graphs (see the module docstring)."""

    def __init__(self, module: torch.nn.Module, eager) -> None:
        self.eager = eager
        self.captures: OrderedDict[tuple, _Capture | None] = OrderedDict()  # None: runs eagerly
        self.pool: Any = None  # one CUDA graph memory pool, made at the first capture
        self.name = type(module).__name__
        self.captured = 0
        self.calls = 0  # calls that could replay
        self.disabled = False

    def __call__(self, *args, **kwargs):
        if torch.is_grad_enabled() or self.disabled:
            return self.eager(*args, **kwargs)
        leaves, spec = pytree.tree_flatten((args, kwargs))
        key = _signature(leaves, spec)  # None off CUDA: asked first, as CUDA calls fail without a driver
        if key is None or torch.cuda.is_current_stream_capturing():
            return self.eager(*args, **kwargs)
        self.calls += 1
        if key not in self.captures:
            self.captured += 1
            if self.captured > MAX_GRAPHS and self.captured * CHURN > self.calls:
                logger.warning("%s: a new CUDA graph every few calls; running eagerly from now on", self.name)
                self.disabled = True
                self.captures.clear()
                return self.eager(*args, **kwargs)
            self.captures[key] = self._capture(leaves, spec)
            while len(self.captures) > MAX_GRAPHS:
                self.captures.popitem(last=False)
        self.captures.move_to_end(key)
        capture = self.captures[key]
        if capture is None:
            return self.eager(*args, **kwargs)
        live = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
        for static, tensor in zip(capture.inputs, live, strict=True):
            static.copy_(tensor)
        capture.graph.replay()
        return pytree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, capture.output)

    def _capture(self, leaves: list, spec) -> _Capture | None:
        statics = [leaf.clone() if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
        args, kwargs = pytree.tree_unflatten(statics, spec)
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_CALLS):
                    self.eager(*args, **kwargs)
            torch.cuda.current_stream().wait_stream(side)
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                output = self.eager(*args, **kwargs)
        except RuntimeError as exc:  # an op that cannot be captured: this signature runs eagerly
            logger.warning("%s runs without a CUDA graph for this input (%s)", self.name, exc)
            torch.cuda.synchronize()
            return None
        if any(
            not isinstance(leaf, (torch.Tensor, bool, int, float, str, type(None)))
            for leaf in pytree.tree_leaves(output)
        ):
            # an output object the tree utilities cannot open could not be copied out of the graph's memory
            logger.warning("%s runs without a CUDA graph: its output is a %s", self.name, type(output).__name__)
            return None
        # cuDNN's algorithm search in the warm-up may have taken most of the free memory for trial workspaces:
        # give what is no longer used back, so a process beside this one (or the next model) can have it
        torch.cuda.empty_cache()
        return _Capture(graph, [s for s in statics if isinstance(s, torch.Tensor)], output)


def _signature(leaves: list, spec) -> tuple | None:
    """The capture key of a call, or None when it cannot be captured (a tensor off CUDA, an odd value)."""
    parts: list = [str(spec), torch.is_inference_mode_enabled()]
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            if leaf.device.type != "cuda" or leaf.requires_grad:
                return None
            parts.append((tuple(leaf.shape), leaf.dtype, leaf.stride(), leaf.device.index))
        elif leaf is None or isinstance(leaf, (bool, int, float, str)):
            parts.append((type(leaf).__name__, leaf))
        else:
            return None
    return tuple(parts)


def graph_forward(module: torch.nn.Module, eager=None) -> GraphedForward:
    """Make `module` replay CUDA graphs of `eager` (its own forward by default, or e.g. a compiled one)
    from its next call on; the same wrapper if it already does."""
    current = module.__dict__.get("forward")
    if isinstance(current, GraphedForward):
        return current
    graphed = GraphedForward(module, eager or module.forward)
    module.forward = graphed
    return graphed


def ungraph_forward(module: torch.nn.Module) -> None:
    """Back to the module's own forward, dropping its graphs (before offload hooks or compile wrap it)."""
    if isinstance(module.__dict__.get("forward"), GraphedForward):
        del module.forward
