"""PyTorch peer of tools/bench/train-step.mjs: the same LLaVA-style embedding model, written by hand.

CLIP ViT (class token, pre_layrnorm, quick_gelu MLP; hidden_states[feature_layer] without the class
token) -> linear / GELU(erf) / linear projector -> Llama decoder (RMSNorm, RoPE, causal softmax
attention with an additive mask, SwiGLU) -> last token -> L2 -> in-batch InfoNCE (tau 0.02) ->
torch.optim.AdamW. Prints one JSON line: step times, peak RSS (resource.getrusage), parameters.

  /usr/bin/python3 tools/bench/train_step_torch.py --shape '<json>' --threads N --steps N
Run by train-step.mjs; the shape keys are the ones it defines.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MASKED = -1e9


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class VisionAttention(nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(h, h) for _ in range(4))

    def forward(self, x):
        b, s, h = x.shape
        split = lambda t: t.view(b, s, self.heads, h // self.heads).transpose(1, 2)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        p = torch.softmax(q @ k.transpose(-1, -2) * (h // self.heads) ** -0.5, -1)
        return self.out_proj((p @ v).transpose(1, 2).reshape(b, s, h))


class VisionLayer(nn.Module):
    def __init__(self, h, heads, mlp):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(h, eps=1e-5)
        self.self_attn = VisionAttention(h, heads)
        self.layer_norm2 = nn.LayerNorm(h, eps=1e-5)
        self.fc1, self.fc2 = nn.Linear(h, mlp), nn.Linear(mlp, h)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.fc2(quick_gelu(self.fc1(self.layer_norm2(x))))


class ClipVision(nn.Module):
    def __init__(self, s):
        super().__init__()
        h, p = s["visionHidden"], s["patchSize"]
        grid = s["imageSize"] // p
        self.patch_embedding = nn.Conv2d(3, h, p, stride=p, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(h) * 0.02)
        self.position_embedding = nn.Parameter(torch.randn(grid * grid + 1, h) * 0.02)
        self.pre_layrnorm = nn.LayerNorm(h, eps=1e-5)
        self.layers = nn.ModuleList(VisionLayer(h, s["visionHeads"], s["visionMlp"]) for _ in range(s["visionLayers"]))
        self.post_layernorm = nn.LayerNorm(h, eps=1e-5)  # unused by LLaVA features, as in the TS tower
        self.feature_layer = s["featureLayer"]

    def select_features(self, pixels):
        b = pixels.shape[0]
        e = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        e = torch.cat([self.class_embedding.expand(b, 1, -1), e], 1) + self.position_embedding
        x = self.pre_layrnorm(e)
        n = len(self.layers) + 1
        deepest = n + self.feature_layer if self.feature_layer < 0 else self.feature_layer
        for layer in self.layers[:deepest]:
            x = layer(x)
        return x[:, 1:]


class RmsNorm(nn.Module):
    def __init__(self, h, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(h))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    a, b = x.chunk(2, -1)
    return torch.cat([-b, a], -1)


class DecoderLayer(nn.Module):
    def __init__(self, h, heads, inter):
        super().__init__()
        self.heads = heads
        self.input_layernorm = RmsNorm(h)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(h, h, bias=False) for _ in range(4))
        self.post_attention_layernorm = RmsNorm(h)
        self.gate_proj, self.up_proj = nn.Linear(h, inter, bias=False), nn.Linear(h, inter, bias=False)
        self.down_proj = nn.Linear(inter, h, bias=False)

    def forward(self, x, cos, sin, mask):
        b, s, h = x.shape
        d = h // self.heads
        y = self.input_layernorm(x)
        split = lambda t: t.view(b, s, self.heads, d).transpose(1, 2)
        q, k, v = split(self.q_proj(y)), split(self.k_proj(y)), split(self.v_proj(y))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        p = torch.softmax(q @ k.transpose(-1, -2) * (1 / math.sqrt(d)) + mask, -1)
        x = x + self.o_proj((p @ v).transpose(1, 2).reshape(b, s, h))
        y = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))


class LlamaDecoder(nn.Module):
    def __init__(self, s):
        super().__init__()
        h = s["textHidden"]
        self.heads = s["textHeads"]
        self.embed_tokens = nn.Embedding(s["vocab"], h)
        self.layers = nn.ModuleList(DecoderLayer(h, self.heads, s["textIntermediate"]) for _ in range(s["textLayers"]))
        self.norm = RmsNorm(h)

    def forward(self, inputs_embeds):
        b, s, h = inputs_embeds.shape
        d = h // self.heads
        # Recomputed every call like the TS decoder's host-side tables and mask.
        inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        ang = torch.arange(s, dtype=torch.float32)[:, None] * inv[None]
        ang = torch.cat([ang, ang], -1)
        cos, sin = ang.cos()[None, None].expand(b, 1, s, d), ang.sin()[None, None].expand(b, 1, s, d)
        mask = torch.full((s, s), MASKED).triu(1)[None, None].expand(b, 1, s, s).contiguous()
        x = inputs_embeds
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


class LlavaEmbedder(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.vision_tower = ClipVision(s)
        self.linear_1 = nn.Linear(s["visionHidden"], s["textHidden"])
        self.linear_2 = nn.Linear(s["textHidden"], s["textHidden"])
        self.language_model = LlamaDecoder(s)
        for name, p in self.named_parameters():
            # As the TS side: norms 1, biases 0, everything else N(0, 0.02).
            with torch.no_grad():
                if "norm" in name or "layrnorm" in name:
                    if name.endswith("weight"):
                        p.fill_(1.0)
                    else:
                        p.zero_()
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.normal_(0, 0.02)

    def forward(self, pixels, ids):
        image = self.linear_2(F.gelu(self.linear_1(self.vision_tower.select_features(pixels))))
        h = self.language_model(torch.cat([image, self.language_model.embed_tokens(ids)], 1))
        return F.normalize(h[:, -1], dim=-1)  # all-ones mask: the last token is the last position


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    s = json.loads(a.shape)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rss_mb = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    model = LlavaEmbedder(s)
    grid = s["imageSize"] // s["patchSize"]
    b = s["batch"]
    pixels = torch.rand(b, 3, s["imageSize"], s["imageSize"]) * 2 - 1
    ids = torch.randint(0, s["vocab"], (b, s["seq"] - grid * grid))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    out = {
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "numParams": sum(p.numel() for p in model.parameters()),
        "rssSetupMB": rss_mb(),
    }

    def embed_once():
        with torch.inference_mode():
            model(pixels, ids)

    def train_once():
        e = model(pixels, ids)
        h = b // 2
        logits = e[:h] @ e[h:].T / 0.02
        loss = F.cross_entropy(logits, torch.arange(h))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out["loss"] = loss.item()

    def timed(fn, n):
        fn()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return times

    out["embedTimes"] = timed(embed_once, a.steps)
    out["embedPeakMB"] = rss_mb()
    out["trainTimes"] = timed(train_once, a.steps)
    out["trainPeakMB"] = rss_mb()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
