"""ReDimNet speaker embedder (IDRnD), inference only: 16 kHz waveform -> raw 192-d timbre embedding.

NAVA loads the 'M' model (`M-vb2+vox2+cnc-ft_mix.pt`) through torch.hub; this is our own
implementation of the same network. Module and parameter names follow the release checkpoint's
`state_dict` so it loads strictly without renaming, and the network is built from the
checkpoint's own `model_config` (every ReDimNetWrap argument; unsupported values raise).

ReDimNet keeps one 1-D feature map [B, C·F, T] per stage. Each stage takes a learned softmax mix
of all earlier stages' maps, reshapes it to 2-D [B, c, f, T] (c·f = C·F throughout: each stride-2
stage halves f and doubles c), runs 2-D blocks, flattens back and runs one 1-D time-context block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

_MEL_KEYS = {"sample_rate", "n_fft", "win_length", "f_min", "f_max", "do_spec_aug", "norm_signal",
             "do_preemph", "spec_norm", "freq_start_bin", "num_apply_spec_aug", "freq_mask_width",
             "time_mask_width"}
_BLOCK_1D = {"att", "fc", "conv", "conv+att"}
_BLOCK_2D = {"convnext_like", "convnext_like_relu", "basic_resnet", "basic_resnet_fwse"}
_IGNORED = {"class_dropout", "feat_agg_dropout", "head_activation", "return_all_outputs"}  # train/head only
# ReDimNetWrap's default stages_setup, the 'M' model: (stride, n_blocks, conv_exp, kernels, att_block_red)
_M_STAGES_SETUP = [(1, 2, 1, [(3, 3)], 12), (2, 2, 1, [(3, 3)], 12), (1, 3, 1, [(3, 3)], 12),
                   (2, 4, 1, [(3, 3)], 8), (1, 4, 1, [(3, 3)], 8), (2, 4, 1, [(3, 3)], 4)]


@dataclass(frozen=True)
class Stage:
    stride: int                    # frequency stride (1, 2 or 3); channels grow by the same factor
    n_blocks: int                  # 2-D blocks
    conv_exp: int                  # channel expansion inside the 2-D blocks
    att_block_red: int | None      # 1-D block width = C·F // att_block_red; None: no 1-D block


@dataclass(frozen=True)
class ReDimNetParams:
    """ReDimNetWrap's constructor arguments, checked. Defaults are the 'M' model's."""

    F: int = 72                    # mel bins
    C: int = 16                    # stem channels
    block_1d_type: str = "att"
    block_2d_type: str = "convnext_like"
    stages: tuple[Stage, ...] = ()   # from_model_config fills in M's six stages when absent
    group_divisor: int | None = 4
    out_channels: int | None = None
    embed_dim: int = 192
    hop_length: int = 160
    global_context_att: bool = False
    emb_bn: bool = False
    mel: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any]) -> ReDimNetParams:
        unknown = set(config) - {"F", "C", "block_1d_type", "block_2d_type", "stages_setup", "group_divisor",
                                 "out_channels", "embed_dim", "num_classes", "hop_length", "pooling_func",
                                 "feat_type", "global_context_att", "emb_bn", "spec_params",
                                 "tf_optimized_arch"} - _IGNORED
        spec = dict(config.get("spec_params") or {})
        _require(not unknown, f"unsupported ReDimNet config keys {sorted(unknown)}")
        _require(not set(spec) - _MEL_KEYS, f"unsupported spec_params {sorted(set(spec) - _MEL_KEYS)}")
        _require(config.get("num_classes") is None, "a classification head (num_classes) is not supported")
        _require(not config.get("tf_optimized_arch", False), "tf_optimized_arch=True is not supported")
        _require(config.get("feat_type", "pt") in ("pt", "pt_mel"), f"feat_type {config.get('feat_type')!r}")
        _require(config.get("pooling_func", "ASTP") == "ASTP", f"pooling {config.get('pooling_func')!r}")
        params = cls(
            F=int(config.get("F", 72)),
            C=int(config.get("C", 16)),
            block_1d_type=config.get("block_1d_type", "att"),
            block_2d_type=config.get("block_2d_type", "convnext_like"),
            stages=tuple(Stage(int(s), int(n), int(e), None if r is None else int(r))
                         for s, n, e, _kernels, r in config.get("stages_setup", _M_STAGES_SETUP)),
            # (the kernel sizes are unused upstream too: every 2-D block is 3x3)
            group_divisor=config.get("group_divisor", 4),
            out_channels=config.get("out_channels"),
            embed_dim=int(config.get("embed_dim", 192)),
            hop_length=int(config.get("hop_length", 160)),
            global_context_att=bool(config.get("global_context_att", False)),
            emb_bn=bool(config.get("emb_bn", False)),
            mel=spec,
        )
        _require(params.block_1d_type in _BLOCK_1D, f"block_1d_type {params.block_1d_type!r}")
        _require(params.block_2d_type in _BLOCK_2D, f"block_2d_type {params.block_2d_type!r}")
        _require(all(s.stride in (1, 2, 3) for s in params.stages), "stage strides must be 1, 2 or 3")
        return params


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"ReDimNet checkpoint config: {what}")


# --- front end ------------------------------------------------------------------------------

class PreEmphasis(nn.Module):
    def __init__(self, coef: float = 0.97) -> None:
        super().__init__()
        self.flipped_filter: torch.Tensor
        self.register_buffer("flipped_filter", torch.tensor([[[-coef, 1.0]]]))   # [1, 1, 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, N] -> [B, N]; y[n] = x[n] - coef·x[n-1], with x[-1] := x[1] (reflect)
        x = F.pad(x.unsqueeze(1), (1, 0), mode="reflect")
        return F.conv1d(x, self.flipped_filter).squeeze(1)


class NormalizeAudio(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True, unbiased=False) + 1e-6)


class MelFrontEnd(nn.Module):
    """Log-mel with per-bin mean removal over time: [B, N] -> [B, F, 1 + N // hop].

    Computed in float32 whatever the input dtype, then cast back to it, as upstream's MelBanks.
    """

    def __init__(self, n_mels: int, hop_length: int, sample_rate: int = 16000, n_fft: int = 512,
                 win_length: int = 400, f_min: float = 20, f_max: float = 7600, norm_signal: bool = False,
                 do_preemph: bool = True, spec_norm: str = "mn", **_augmentation: Any) -> None:
        super().__init__()
        _require(spec_norm in ("mn", "mvn", "bn"), f"spec_norm {spec_norm!r}")
        self.sample_rate = sample_rate
        self.torchfbank = nn.Sequential(
            NormalizeAudio() if norm_signal else nn.Identity(),
            PreEmphasis() if do_preemph else nn.Identity(),
            # torchaudio's transform, so window and filterbank are the checkpoint's own buffers
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                f_min=f_min, f_max=f_max, n_mels=n_mels, window_fn=torch.hamming_window,
            ),
        )
        self.norm_kind = spec_norm
        if spec_norm == "bn":
            self.spec_norm = nn.BatchNorm1d(n_mels)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        with torch.autocast(waveform.device.type, enabled=False):
            x = (self.torchfbank(waveform.float()) + 1e-6).log()               # [B, F, T]
            if self.norm_kind == "bn":
                x = self.spec_norm(x)
            else:
                x = x - x.mean(dim=-1, keepdim=True)
            if self.norm_kind == "mvn":
                x = x / (x.std(dim=-1, keepdim=True) + 1e-8)
        return x.to(waveform.dtype)


# --- small blocks ---------------------------------------------------------------------------

class LayerNormChannelsFirst(nn.Module):
    """LayerNorm over dim 1 of [B, C, ...]."""

    def __init__(self, n_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_channels))
        self.bias = nn.Parameter(torch.zeros(n_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return self.weight.view(shape) * x + self.bias.view(shape)


class To1d(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape                                          # [B, c, f, T] -> [B, f·c, T]
        return x.permute(0, 2, 1, 3).reshape(b, c * f, t)


class To2d(nn.Module):
    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.f, self.c = f, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape                                             # [B, f·c, T] -> [B, c, f, T]
        return x.reshape(b, self.f, self.c, t).permute(0, 2, 1, 3)


class StageMix(nn.Module):
    """Softmax-weighted sum of the n_inputs earlier 1-D maps (upstream's `weigth1d`)."""

    def __init__(self, n_inputs: int, n_channels: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, n_inputs, n_channels, 1))

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        w = F.softmax(self.w, dim=1)                                  # [1, N, CF|1, 1]
        return (w * torch.stack(maps, dim=1)).sum(dim=1)              # [B, CF, T]


def _groups(n_channels: int, group_divisor: int | None) -> int:
    return 1 if group_divisor is None else n_channels // group_divisor


class ConvNeXtLikeBlock(nn.Module):
    """Residual: parallel grouped convs -> BatchNorm -> GELU/ReLU -> pointwise conv (1-D or 2-D)."""

    def __init__(self, c: int, dim: int, kernel_sizes: list, group_divisor: int | None = 1,
                 relu: bool = False) -> None:
        super().__init__()
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dim == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.dwconvs = nn.ModuleList(
            conv(c, c, kernel_size=k, padding="same", groups=_groups(c, group_divisor)) for k in kernel_sizes
        )
        self.norm = norm(c * len(kernel_sizes))
        self.act = nn.ReLU() if relu else nn.GELU()
        self.pwconv1 = conv(c * len(kernel_sizes), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([dwconv(x) for dwconv in self.dwconvs], dim=1)
        return x + self.pwconv1(self.act(self.norm(y)))


class FreqSqueezeExcite(nn.Module):
    """Per-frequency gating from the mean over channels and time (upstream's fwSE)."""

    def __init__(self, n_freqs: int, n_hidden: int) -> None:
        super().__init__()
        self.squeeze = nn.Linear(n_freqs, n_hidden)
        self.exitation = nn.Linear(n_hidden, n_freqs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.exitation(F.relu(self.squeeze(x.mean(dim=(1, 3))))))   # [B, f]
        return x * gate[:, None, :, None]


class ResBasicBlock(nn.Module):
    """Same-width residual block of two grouped 3x3 (+ pointwise) convs, optional fwSE."""

    def __init__(self, c: int, f: int, group_divisor: int | None, use_se: bool) -> None:
        super().__init__()
        grouped = group_divisor is not None
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False, groups=_groups(c, group_divisor))
        self.conv1pw = nn.Conv2d(c, c, 1) if grouped else nn.Identity()
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False, groups=_groups(c, group_divisor))
        self.conv2pw = nn.Conv2d(c, c, 1) if grouped else nn.Identity()
        self.bn2 = nn.BatchNorm2d(c)
        self.se = FreqSqueezeExcite(f, min(64, max(c, 32))) if use_se else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn1(F.relu(self.conv1pw(self.conv1(x))))            # ReLU before BN, as upstream
        y = self.se(self.bn2(self.conv2pw(self.conv2(y))))
        return F.relu(y + x)


class ConvBlock2d(nn.Module):
    def __init__(self, c: int, f: int, block_type: str, group_divisor: int | None) -> None:
        super().__init__()
        self.conv_block: nn.Module
        if block_type.startswith("convnext_like"):
            self.conv_block = ConvNeXtLikeBlock(c, 2, [(3, 3)], group_divisor, relu=block_type.endswith("relu"))
        else:
            self.conv_block = ResBasicBlock(c, f, group_divisor, use_se=block_type.endswith("fwse"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_block(x)


# --- 1-D time-context block -----------------------------------------------------------------

class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape                                             # [B, T, D]
        heads = lambda y: y.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)  # noqa: E731
        q = heads(self.q_proj(x) * (d // self.n_heads) ** -0.5)       # scaled before the product, as upstream
        att = F.softmax(q @ heads(self.k_proj(x)).transpose(-1, -2), dim=-1)   # [B, H, T, T]
        return self.out_proj((att @ heads(self.v_proj(x))).transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.output_dense = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(F.gelu(self.intermediate_dense(x), approximate="tanh"))


class TransformerEncoderLayer(nn.Module):
    """Post-norm transformer layer (wav2vec2 style) on channels-first [B, D, T]."""

    def __init__(self, dim: int, hidden: int, n_heads: int = 4) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, n_heads)
        self.layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feed_forward = FeedForward(dim, hidden)
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)                                         # [B, T, D]
        x = self.layer_norm(x + self.attention(x))
        x = self.final_layer_norm(x + self.feed_forward(x))
        return x.transpose(1, 2)


class PosEncConv(nn.Module):
    def __init__(self, c: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c, c, kernel_size, padding=kernel_size // 2, groups=c)
        self.norm = LayerNormChannelsFirst(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.conv(x))


def _time_context(kind: str, h: int) -> nn.Sequential:
    if kind == "att":
        return nn.Sequential(PosEncConv(h, 59), TransformerEncoderLayer(h, 2 * h))
    if kind == "fc":
        return nn.Sequential(nn.Conv1d(h, 2 * h, 1), LayerNormChannelsFirst(2 * h), nn.GELU(), nn.Conv1d(2 * h, h, 1))
    if kind == "conv":
        return nn.Sequential(*(ConvNeXtLikeBlock(h, 1, [7, 15, 31]) for _ in range(4)))
    return nn.Sequential(*(ConvNeXtLikeBlock(h, 1, [k]) for k in (7, 19, 31, 59)), TransformerEncoderLayer(h, h))


class TimeContextBlock1d(nn.Module):
    """Residual bottleneck over time: [B, C·F, T] -> width h -> context -> back."""

    def __init__(self, c: int, h: int, kind: str) -> None:
        super().__init__()
        self.red_dim_conv = nn.Sequential(nn.Conv1d(c, h, 1), LayerNormChannelsFirst(h))
        self.tcm = _time_context(kind, h)
        self.exp_dim_conv = nn.Conv1d(h, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.exp_dim_conv(self.tcm(self.red_dim_conv(x)))


# --- backbone, pooling, head ----------------------------------------------------------------

class Backbone(nn.Module):
    """mel [B, 1, F, T] -> [B, C·F (or out_channels), T]."""

    def __init__(self, p: ReDimNetParams) -> None:
        super().__init__()
        width = p.C * p.F
        self.n_stages = len(p.stages)
        self.stem = nn.Sequential(nn.Conv2d(1, p.C, 3, padding="same"), LayerNormChannelsFirst(p.C), To1d())
        c, f = p.C, p.F
        for i, stage in enumerate(p.stages):
            layers: list[nn.Module] = [
                StageMix(i + 1, width if i > 0 else 1),
                To2d(f, c),
                nn.Conv2d(c, stage.stride * c * stage.conv_exp, (stage.stride, 1), stride=(stage.stride, 1)),
            ]
            _require(f % stage.stride == 0, f"stage {i}: {f} mel bins do not divide by stride {stage.stride}")
            c, f = c * stage.stride, f // stage.stride
            layers += [ConvBlock2d(c * stage.conv_exp, f, p.block_2d_type, p.group_divisor)
                       for _ in range(stage.n_blocks)]
            if stage.conv_exp != 1:   # squeeze the expanded channels back to c
                relu = "relu" in p.block_1d_type and "relu" in p.block_2d_type
                layers.append(nn.Sequential(
                    nn.Conv2d(c * stage.conv_exp, c, 3, padding="same", groups=_groups(c, p.group_divisor)),
                    nn.BatchNorm2d(c, eps=1e-6), nn.ReLU() if relu else nn.GELU(), nn.Conv2d(c, c, 1)))
            layers.append(To1d())
            if stage.att_block_red is not None:
                layers.append(TimeContextBlock1d(width, width // stage.att_block_red, p.block_1d_type))
            setattr(self, f"stage{i}", nn.Sequential(*layers))
        self.fin_wght1d = StageMix(self.n_stages + 1, width)
        self.mfa = (nn.Identity() if p.out_channels is None else
                    nn.Sequential(nn.Conv1d(width, p.out_channels, 1), nn.BatchNorm1d(p.out_channels)))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        maps = [self.stem(mel)]                                       # each [B, C·F, T]
        for i in range(self.n_stages):
            maps.append(getattr(self, f"stage{i}")(maps))             # a stage reads all earlier maps
        return self.mfa(self.fin_wght1d(maps))


class ASTP(nn.Module):
    """Attentive statistics pooling: attention-weighted mean and std over time -> [B, 2·D]."""

    def __init__(self, dim: int, global_context: bool, bottleneck: int = 128) -> None:
        super().__init__()
        self.global_context = global_context
        self.linear1 = nn.Conv1d(3 * dim if global_context else dim, bottleneck, 1)
        self.linear2 = nn.Conv1d(bottleneck, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = x                                                      # [B, D, T]
        if self.global_context:
            mean = x.mean(dim=-1, keepdim=True).expand_as(x)
            std = torch.sqrt(x.var(dim=-1, keepdim=True) + 1e-7).expand_as(x)
            x_in = torch.cat((x, mean, std), dim=1)
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x_in))), dim=2)
        mean = (alpha * x).sum(dim=2)
        var = (alpha * x**2).sum(dim=2) - mean**2
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-7))], dim=1)


class ReDimNet(nn.Module):
    """Speaker embedder: waveform [B, N] float32 at `sample_rate_hz` -> raw embedding [B, embed_dim]."""

    def __init__(self, p: ReDimNetParams) -> None:
        super().__init__()
        self.params = p
        self.backbone = Backbone(p)
        self.spec = MelFrontEnd(n_mels=p.F, hop_length=p.hop_length, **p.mel)
        dim = p.out_channels or p.C * p.F
        self.pool = ASTP(dim, p.global_context_att)
        self.bn = nn.BatchNorm1d(2 * dim)
        self.linear = nn.Linear(2 * dim, p.embed_dim)
        if p.emb_bn:
            self.bn2 = nn.BatchNorm1d(p.embed_dim)

    @property
    def sample_rate_hz(self) -> int:
        return self.spec.sample_rate

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.spec(waveform)                                     # [B, F, T]
        x = self.linear(self.bn(self.pool(self.backbone(mel.unsqueeze(1)))))
        return self.bn2(x) if self.params.emb_bn else x

