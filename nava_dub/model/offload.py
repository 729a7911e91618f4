"""Block offload: transformer blocks live in (pinned) host memory and stream to the GPU a group ahead.

The blocks run in a fixed order, so while group g computes, group g+1 is copied on a side CUDA
stream into the other of two device buffers; after the last group, group 0 is fetched for the next
call. Each group's parameters are packed into one host buffer, so a group moves in a single copy,
and on the device they are views into the buffer the group was copied to. The device thus holds
exactly two group buffers of weights whatever the call pattern, and nothing is allocated per step.
Everything that is not a block (stems, embeddings, heads: ~2% of the weights) stays on the device.

Ordering: the copy stream waits until the compute stream has finished the group that last used the
buffer (an event recorded after that group's last block), and the compute stream waits until the
copy of the group it is about to run has landed. On the CPU the same bookkeeping runs with
synchronous copies, so tests check the logic without a GPU.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BLOCK_LISTS = ("double_blocks", "single_blocks")   # children of NavaTransformer that are streamed
ALIGNMENT_BYTES = 256                              # parameter offsets inside a packed buffer
N_BUFFERS = 2                                      # the group running and the group arriving


class BlockOffload:
    """Streams `model`'s blocks from host memory to `device`, `group_size` blocks at a time.

    Takes effect on construction (the blocks' parameters move to host buffers, pinned when the
    device is a GPU); `remove()` makes every block resident on the device again.
    """

    def __init__(self, model: nn.Module, group_size: int, device: torch.device | str) -> None:
        if group_size < 1:
            raise ValueError(f"offload group size must be >= 1, got {group_size}")
        self.device = torch.device(device)
        blocks: list[nn.Module] = [b for name in BLOCK_LISTS for b in getattr(model, name)]
        self.groups = [blocks[i:i + group_size] for i in range(0, len(blocks), group_size)]
        for name, child in model.named_children():
            if name not in BLOCK_LISTS:
                child.to(self.device)
        cuda = self.device.type == "cuda"
        self._params = [[p for b in group for p in b.parameters()] for group in self.groups]
        self._layouts = [_layout(params) for params in self._params]
        self._host = _pack(self._params, self._layouts, pin=cuda)
        n_bytes = max(buf.numel() for buf in self._host)
        self._buffers = [torch.empty(n_bytes, dtype=torch.uint8, device=self.device)
                         for _ in range(min(N_BUFFERS, len(self.groups)))]
        self._copy_stream = torch.cuda.Stream(self.device) if cuda else None
        self._buffer_free: list[torch.cuda.Event | None] = [None] * N_BUFFERS  # compute is done with buffer i
        self._ready: dict[int, tuple[int, torch.cuda.Event | None]] = {}      # group → (buffer, copy done)
        self._n_loads = 0
        self.n_bytes_copied = 0
        self._hooks = [hook for g, group in enumerate(self.groups) for hook in self._hook(g, group)]

    @property
    def buffer_bytes(self) -> int:
        """Device bytes of one group buffer (the offload holds N_BUFFERS of them)."""
        return self._buffers[0].numel()

    @property
    def group_bytes(self) -> list[int]:
        """Bytes each group moves per copy (its parameters, packed)."""
        return [buf.numel() for buf in self._host]

    def resident_groups(self) -> list[int]:
        """Groups whose parameters point at a device buffer now."""
        return sorted(self._ready)

    def remove(self) -> None:
        """Unhook and make every block resident on the device (as ordinary separate tensors)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self._synchronize()
        for params in self._params:
            for p in params:
                p.data = p.data.to(self.device, copy=True)
        self._ready.clear()
        self._buffers.clear()

    def _hook(self, g: int, group: list[nn.Module]) -> list:
        def before(module: nn.Module, args: object) -> None:
            if g not in self._ready:
                self._load(g)   # the first call, or blocks run out of order
            _, copied = self._ready[g]
            if copied is not None:
                torch.cuda.current_stream(self.device).wait_event(copied)
            nxt = (g + 1) % len(self.groups)
            if nxt not in self._ready:
                self._load(nxt)

        def after(module: nn.Module, args: object, output: object) -> None:
            if len(self.groups) > 1:
                self._release(g)

        hooks = [block.register_forward_pre_hook(before) for block in group[:1]]
        return hooks + [group[-1].register_forward_hook(after)]

    def _load(self, g: int) -> None:
        """Copy group g into the next buffer (asynchronously on a GPU) and point its parameters there."""
        index = self._n_loads % len(self._buffers)
        self._n_loads += 1
        for other, (used, _) in list(self._ready.items()):
            if used == index:   # only when blocks run out of order: the buffer's group goes home
                self._release(other)
        buffer, host = self._buffers[index], self._host[g]
        if self._copy_stream is None:
            buffer[: host.numel()].copy_(host)
            copied = None
        else:
            with torch.cuda.stream(self._copy_stream):
                if self._buffer_free[index] is not None:
                    self._copy_stream.wait_event(self._buffer_free[index])
                buffer[: host.numel()].copy_(host, non_blocking=True)
                copied = torch.cuda.Event()
                copied.record(self._copy_stream)
        self._ready[g] = (index, copied)
        self._point(g, buffer)
        self.n_bytes_copied += host.numel()

    def _release(self, g: int) -> None:
        """After group g's last block: its buffer is free once the queued kernels ran."""
        index, _ = self._ready.pop(g)
        if self._copy_stream is not None:
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(self.device))
            self._buffer_free[index] = done
        self._point(g, self._host[g])

    def _point(self, g: int, buffer: Tensor) -> None:
        for p, (offset, n_bytes) in zip(self._params[g], self._layouts[g], strict=True):
            p.data = buffer[offset: offset + n_bytes].view(p.dtype).view(p.shape)

    def _synchronize(self) -> None:
        if self._copy_stream is not None:
            torch.cuda.synchronize(self.device)


def _layout(params: list[nn.Parameter]) -> list[tuple[int, int]]:
    """(byte offset, byte count) of each parameter in a packed buffer."""
    layout, offset = [], 0
    for p in params:
        n_bytes = p.numel() * p.element_size()
        layout.append((offset, n_bytes))
        offset += -(-n_bytes // ALIGNMENT_BYTES) * ALIGNMENT_BYTES
    return layout


def _pack(groups: list[list[nn.Parameter]], layouts: list[list[tuple[int, int]]], pin: bool) -> list[Tensor]:
    """One host byte buffer per group holding its parameters at their offsets; each parameter then
    points into its buffer.

    Parameters are moved in the order of their source addresses, each one repointed as soon as it
    is copied: loaded weights are views of memory-mapped file pieces, which are unmapped once none
    of their tensors is left, so piece after piece goes while the buffers fill and host memory
    peaks near one copy of the weights, not two (bench.load --offload measures it)."""
    buffers = [torch.empty(layout[-1][0] + layout[-1][1] if layout else 0, dtype=torch.uint8, pin_memory=pin)
               for layout in layouts]
    slots = [(p, buffer, offset, n_bytes) for params, layout, buffer in zip(groups, layouts, buffers, strict=True)
             for p, (offset, n_bytes) in zip(params, layout, strict=True)]
    for p, buffer, offset, n_bytes in sorted(slots, key=lambda slot: slot[0].data_ptr()):
        packed = buffer[offset: offset + n_bytes]
        packed.copy_(p.data.detach().reshape(-1).view(torch.uint8))
        p.data = packed.view(p.dtype).view(p.shape)
    return buffers


def offload_blocks(model: nn.Module, group_size: int, device: torch.device | str) -> BlockOffload:
    """Start streaming `model`'s blocks (see BlockOffload); keep the handle to `remove()` it."""
    return BlockOffload(model, group_size, device)
