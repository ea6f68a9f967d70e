#!/usr/bin/env python3
"""The PyTorch side of `afx bench model`: the same networks, loss and steps as afx, timed the same way.

    python3 scripts/bench_model_torch.py SPEC.json [--workload train|tcn] [--threads 2] [--check]

SPEC.json is written by `afx bench model` from afx's own defaults (`--keep-files DIR` keeps it, the inputs and
afx's reference weights and values in DIR, to rerun this script by hand); every shape comes from it (its "torch"
section) and the inputs from the safetensors file it names, so nothing here hard-codes a size. Prints one JSON
object (the fields of afx's ChildResult: per-part medians in seconds, memory in MiB).

What it mirrors (afx's source in brackets):
- features [trainer/src/frontend.rs]: ln of the STFT magnitude / LOG_SCALE, shape (B, 1, bins, frames), on
  detached audio;
- STFT magnitude [nn/src/stft.rs]: periodic Hann window of n_fft, centred frames with ZERO padding of n_fft/2,
  sqrt(max(re^2 + im^2, power_floor));
- MRSTFT per item [nn/src/loss.rs]: per resolution (hop n/4) the spectral convergence ||T - P||_F / ||T||_F
  plus mean |ln T - ln P|, averaged over resolutions, plus w * mean |y - t| when w > 0;
- encoder + controller [trainer/src/model.rs]: stride-2 3x3 convs (padding 1) -> GroupNorm(min(groups, c)) ->
  PReLU per channel, mean over frequency then time; controller Linear/PReLU/Linear/PReLU/Linear + sigmoid on
  [emb(input), emb(reference)];
- the SPSA step's update [trainer/src/train.rs, method/mod.rs]: backward of sum(theta * g / B), global
  gradient-norm clip, AdamW;
- the proxy TCN [proxy/src/tcn.rs, model.rs]: conditioning MLP (2 x Linear + PReLU), blocks of causal dilated
  conv -> FiLM (Linear -> gamma, beta) -> PReLU plus a 1x1 residual conv without bias, a 1x1 output conv, the
  input added through exp(Linear(cond)), output gains applied as 10^(dB/20); its step [proxy/src/train.rs]:
  MRSTFT + L1 per item on the last `patch` frames, mean, backward, clip, AdamW.

Memory as afx measures it: VmRSS after setup (before the warm-up step) is the baseline, the high-water mark is
reset ("5" into /proc/self/clear_refs) after the warm-up, and the working set is VmHWM - baseline after the
timed steps. With --check (after the timing), the networks are loaded with the weights afx wrote and their
values compared with afx's (SPEC.json "reference").
"""

import argparse
import json
import math
import os
import statistics
import sys
import time


def status_mib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return float(line[len(field):].split()[0]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def read_safetensors(path, torch):
    """A safetensors file of f32 tensors, read without the safetensors package."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + start:base + end]), dtype=torch.float32)
        out[name] = t.reshape(info["shape"])
    return out


def build(torch):
    nn = torch.nn
    F = torch.nn.functional

    class Stft:
        def __init__(self, n_fft, hop, floor):
            self.n_fft, self.hop, self.floor = n_fft, hop, floor
            self.window = torch.hann_window(n_fft, periodic=True, dtype=torch.float32)

        def magnitude(self, x):
            """(B, T) -> (B, bins, frames)."""
            window = self.window if x.dtype == self.window.dtype else self.window.to(x.dtype)
            spec = torch.stft(x, self.n_fft, hop_length=self.hop, win_length=self.n_fft, window=window,
                              center=True, pad_mode="constant", normalized=False, onesided=True,
                              return_complex=True)
            spec = torch.view_as_real(spec)
            power = spec[..., 0].square() + spec[..., 1].square()
            return power.clamp_min(self.floor).sqrt()

    class MrStft:
        def __init__(self, loss):
            self.stfts = [Stft(n, h, loss["power_floor"]) for n, h in zip(loss["fft_sizes"], loss["hops"])]
            self.l1 = loss["time_l1_weight"]

        def per_item(self, pred, target):
            b = pred.shape[0]
            total = 0
            for stft in self.stfts:
                p = stft.magnitude(pred).reshape(b, -1)
                t = stft.magnitude(target).reshape(b, -1)
                convergence = (t - p).square().sum(1).sqrt() / t.square().sum(1).sqrt()
                log_mag = (t.log() - p.log()).abs().mean(1)
                total = total + convergence + log_mag
            spectral = total / len(self.stfts)
            if self.l1 == 0:
                return spectral
            return spectral + self.l1 * (pred - target).abs().mean(1)

    class Encoder(nn.Module):
        def __init__(self, s):
            super().__init__()
            self.n = len(s["channels"])
            inputs = 1
            for i, c in enumerate(s["channels"]):
                setattr(self, f"conv{i}", nn.Conv2d(inputs, c, 3, stride=2, padding=1, bias=True))
                setattr(self, f"norm{i}", nn.GroupNorm(min(s["groups"], c), c, eps=s["norm_eps"]))
                setattr(self, f"act{i}", nn.PReLU(c, init=0.25))
                inputs = c

        def forward(self, x):
            for i in range(self.n):
                x = getattr(self, f"act{i}")(getattr(self, f"norm{i}")(getattr(self, f"conv{i}")(x)))
            return x.mean(-1).mean(-1)

    class Controller(nn.Module):
        def __init__(self, s):
            super().__init__()
            e, h = s["channels"][-1], s["hidden"]
            self.fc0 = nn.Linear(2 * e, h)
            self.fc1 = nn.Linear(h, h)
            self.fc2 = nn.Linear(h, s["num_params"])
            self.act0 = nn.PReLU(h, init=0.25)
            self.act1 = nn.PReLU(h, init=0.25)

        def forward(self, a, b):
            x = torch.cat([a, b], 1)
            x = self.act0(self.fc0(x))
            x = self.act1(self.fc1(x))
            return torch.sigmoid(self.fc2(x))

    class Model(nn.Module):
        def __init__(self, s):
            super().__init__()
            self.encoder = Encoder(s)
            self.controller = Controller(s)
            self.stft = Stft(s["n_fft"], s["hop"], s["loss"]["power_floor"])
            self.log_scale = s["log_scale"]

        def features(self, audio):
            with torch.no_grad():
                return (self.stft.magnitude(audio.detach()).log() / self.log_scale).unsqueeze(1)

        def forward(self, x, r):
            return self.controller(self.encoder(x), self.encoder(r))

    class Cond(nn.Module):
        def __init__(self, inputs, width):
            super().__init__()
            self.linear = nn.Linear(inputs, width)
            self.act = nn.PReLU(width, init=0.25)

        def forward(self, x):
            return self.act(self.linear(x))

    class Film(nn.Module):
        def __init__(self, cond, channels):
            super().__init__()
            self.adaptor = nn.Linear(cond, 2 * channels)
            self.channels = channels

        def forward(self, x, cond):
            p = self.adaptor(cond)
            return x * p[:, :self.channels, None] + p[:, self.channels:, None]

    class Block(nn.Module):
        def __init__(self, inputs, s, dilation, cond):
            super().__init__()
            c, k = s["channels"], s["kernel"]
            self.pad = (k - 1) * dilation
            self.conv = nn.Conv1d(inputs, c, k, dilation=dilation, bias=True)
            self.norm = nn.BatchNorm1d(c, affine=False, momentum=0.1, eps=1e-5) if s["batch_norm"] else None
            self.film = Film(cond, c)
            self.act = nn.PReLU(c, init=0.25)
            self.res = nn.Conv1d(inputs, c, 1, bias=False)

        def forward(self, h, cond):
            y = self.conv(F.pad(h, (self.pad, 0)))
            if self.norm is not None:
                y = self.norm(y)
            return self.act(self.film(y, cond)) + self.res(h)

    class Proxy(nn.Module):
        def __init__(self, s):
            super().__init__()
            cond = s["num_params"]
            self.n_cond = 2 if s["cond_hidden"] > 0 else 0
            for i in range(self.n_cond):
                setattr(self, f"cond{i}", Cond(cond, s["cond_hidden"]))
                cond = s["cond_hidden"]
            self.n_blocks = len(s["dilations"])
            for i, d in enumerate(s["dilations"]):
                setattr(self, f"block{i}", Block(1 if i == 0 else s["channels"], s, d, cond))
            self.output = nn.Conv1d(s["channels"], 1, 1, bias=True)
            self.skip_gain = nn.Linear(cond, 1) if s["input_skip"] else None
            self.gains = [(g["index"], g["min_db"], g["max_db"]) for g in s["output_gains"]]

        def forward(self, x, theta):
            """(B, T) audio, (B, P) -> (B, T)."""
            b, t = x.shape
            x = x.reshape(b, 1, t)
            params = theta
            for i in range(self.n_cond):
                params = getattr(self, f"cond{i}")(params)
            h = x
            for i in range(self.n_blocks):
                h = getattr(self, f"block{i}")(h, params)
            y = self.output(h)
            if self.skip_gain is not None:
                y = y + x * self.skip_gain(params).exp().unsqueeze(2)
            y = y.reshape(b, t)
            if self.gains:
                db = sum(theta[:, i:i + 1] * (hi - lo) + lo for i, lo, hi in self.gains)
                y = y * (db * (math.log(10.0) / 20.0)).exp()
            return y

    return MrStft, Model, Proxy


def adamw(torch, params, o):
    return torch.optim.AdamW(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"],
                             weight_decay=o["weight_decay"])


def timed(steps, step):
    """One warm-up step, then `steps` timed; per-part medians and memory as afx's children measure them."""
    baseline = status_mib("VmRSS:")
    step()
    reset = reset_peak()
    parts = []
    for _ in range(steps):
        seconds = step()
        parts = parts or [[] for _ in seconds]
        for all_, t in zip(parts, seconds):
            all_.append(t)
    hwm = status_mib("VmHWM:") if reset else None
    memory = {"baseline_rss_mib": baseline, "vm_hwm_mib": hwm,
              "peak_mem_mib": hwm - baseline if hwm is not None and baseline is not None else None}
    return [statistics.median(p) for p in parts], memory


def load_state(module, tensors, what):
    """Loads afx's VarMap into `module` (the names match); every afx tensor must be used."""
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{what}: afx's weights do not fit (missing {missing}, unexpected {unexpected})")


def rel(a, b):
    """max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("spec")
    ap.add_argument("--workload", choices=["train", "tcn"], default="train")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check", action="store_true", help="compare with afx's values at its weights")
    args = ap.parse_args()
    for var in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"]:
        os.environ.setdefault(var, str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(args.spec) as f:
        spec = json.load(f)
    MrStft, Model, Proxy = build(torch)
    inputs = read_safetensors(spec["inputs"], torch)
    steps = spec["steps"]
    result = {"version": torch.__version__}

    if args.workload == "train":
        s = spec["torch"]["train"]
        model = Model(s)
        opt = adamw(torch, model.parameters(), s["optimizer"])
        loss_fn = MrStft(s["loss"])
        x_in, ref, target, g = inputs["input"], inputs["reference"], inputs["target"], inputs["grad_theta"]
        clip = s["optimizer"]["grad_clip"]

        def step():
            t0 = time.perf_counter()
            x, r = model.features(x_in), model.features(ref)
            t1 = time.perf_counter()
            theta = model(x, r)
            t2 = time.perf_counter()
            # The rendered output is the input clip itself, a leaf whose gradient is dL/dy.
            y = x_in.clone().requires_grad_(True)
            per_item = loss_fn.per_item(y, target)
            losses = per_item.detach().tolist()
            per_item.sum().backward()
            grad_y = y.grad.clone()
            t3 = time.perf_counter()
            surrogate = (theta * (g / len(losses)).detach()).sum()
            opt.zero_grad(set_to_none=True)
            surrogate.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            t4 = time.perf_counter()
            del grad_y
            return [t1 - t0, t2 - t1, t3 - t2, t4 - t3]

        parts, memory = timed(steps, step)
        result.update(features_s=parts[0], encoder_forward_s=parts[1], loss_s=parts[2], backward_s=parts[3])
    else:
        s = spec["torch"]["tcn"]
        proxy = Proxy(s)
        opt = adamw(torch, proxy.parameters(), s["optimizer"])
        loss_fn = MrStft(s["loss"])
        x, target, theta = inputs["tcn_x"], inputs["tcn_target"], inputs["tcn_theta"]
        context, patch, clip = s["context"], s["patch"], s["optimizer"]["grad_clip"]

        def step():
            t0 = time.perf_counter()
            y = proxy(x, theta)[:, context:context + patch]
            loss = loss_fn.per_item(y, target).mean()
            value = loss.item()
            if not math.isfinite(value):
                raise ValueError(f"the loss is {value}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(proxy.parameters(), clip)
            opt.step()
            return [time.perf_counter() - t0]

        parts, memory = timed(steps, step)
        result.update(tcn_step_s=parts[0])
    result.update(memory)

    if args.check and spec.get("reference"):
        ref_files = spec["reference"]
        values = read_safetensors(ref_files["values"], torch)
        check = {}
        if args.workload == "train":
            s = spec["torch"]["train"]
            fresh = Model(s)
            load_state(fresh, read_safetensors(ref_files["model"], torch), "model")
            with torch.no_grad():
                theta = fresh(fresh.features(inputs["input"]), fresh.features(inputs["reference"]))
            check["theta_max_abs_diff"] = float((theta - values["theta"]).abs().max())
            grads = {}
            for dtype in [torch.float32, torch.float64]:
                y = inputs["input"].detach().to(dtype).clone().requires_grad_(True)
                per_item = MrStft(s["loss"]).per_item(y, inputs["target"].to(dtype))
                per_item.sum().backward()
                grads[dtype] = y.grad
                if dtype == torch.float32:
                    diff = (per_item.detach() - values["loss"]).abs() / values["loss"].abs()
                    check["loss_max_rel_diff"] = float(diff.max())
            afx, g32, g64 = values["grad_y"].double(), grads[torch.float32].double(), grads[torch.float64]
            check["grad_y_rel_diff"] = float((g32 - afx).norm() / afx.norm())
            check["grad_y_f64_error_afx"] = float((afx - g64).norm() / g64.norm())
            check["grad_y_f64_error_torch"] = float((g32 - g64).norm() / g64.norm())
        else:
            s = spec["torch"]["tcn"]
            fresh = Proxy(s)
            load_state(fresh, read_safetensors(ref_files["tcn"], torch), "tcn")
            y = fresh(inputs["tcn_x"], inputs["tcn_theta"])
            check["tcn_output_max_rel_diff"] = rel(y.detach(), values["tcn_output"])
            loss = MrStft(s["loss"]).per_item(y[:, s["context"]:s["context"] + s["patch"]], inputs["tcn_target"])
            afx_loss = float(values["tcn_loss"].reshape(-1)[0])
            check["tcn_loss_rel_diff"] = abs(float(loss.mean()) - afx_loss) / abs(afx_loss)
        result["check"] = check

    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
