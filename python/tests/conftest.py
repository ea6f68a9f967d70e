"""Shared fixtures: the Rust programs the module is compared with, afx's test effect, real recordings.

The Rust side is built here with cargo (the test command has already built it, so this takes a moment): the
`afx` CLI (renders, scans and error messages to compare with), the pool example `batch_gradients` (the Rust
pool's renders and gradients), and the test effect packaged for LV2 (a plugin that crashes on demand).
"""

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import afx

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
SAMPLES = Path("/usr/share/sonic-pi/samples")


def cargo(*args):
    subprocess.run(["cargo", *args], cwd=REPO, check=True)


@pytest.fixture(scope="session", autouse=True)
def environment(tmp_path_factory):
    """Builds the Rust side, packages the test effect, and points LV2_PATH and the scan cache at test folders."""
    # --workspace, as `cargo test --workspace` builds them: with `-p` cargo resolves features for that package
    # alone and rebuilds every workspace crate under it (minutes on 2 cores) for the same code.
    cargo("build", "--quiet", "--workspace", "--bin", "afx", "--example", "batch_gradients")
    cargo("build", "--quiet", "-p", "afx-testfx")  # the plugin library and its packaging tool
    testfx = tmp_path_factory.mktemp("testfx")
    subprocess.run([str(TARGET / "debug" / "afx-testfx-package"), str(testfx)], check=True, stdout=subprocess.DEVNULL)
    saved = dict(os.environ)
    os.environ["LV2_PATH"] = f"{testfx / 'lv2'}:/usr/lib/lv2:/usr/local/lib/lv2"
    os.environ["AFX_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.pop("AFX_CONFIG", None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def afx_cli():
    return TARGET / "debug" / "afx"


@pytest.fixture(scope="session")
def batch_gradients():
    return TARGET / "debug" / "examples" / "batch_gradients"


@pytest.fixture(autouse=True)
def no_plugins_toml(tmp_path, monkeypatch):
    """Every test runs in a fresh folder: no ./plugins.toml is in force unless the test writes one."""
    monkeypatch.chdir(tmp_path)


def recording(name):
    """A sonic-pi recording (FLAC) as float32 `(channels, frames)`, and its rate."""
    return afx.load(SAMPLES / f"{name}.flac")


def read_wav(path):
    """A float32 or 16-bit PCM WAV as float32 `(channels, frames)` and its rate."""
    data = Path(path).read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", f"{path} is not a WAV file"
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            tag, channels, rate, bits = fmt
            if (tag, bits) == (3, 32):
                samples = np.frombuffer(body, "<f4")
            elif (tag, bits) == (1, 16):
                samples = np.frombuffer(body, "<i2").astype(np.float32) / 32768.0
            else:
                raise ValueError(f"{path}: format {tag} with {bits} bits is not read here")
            return np.ascontiguousarray(samples.reshape(-1, channels).T), rate
        pos += 8 + size + (size & 1)
    raise ValueError(f"{path} has no data chunk")


def write_wav(path, audio, rate):
    """float32 `(channels, frames)` (or `(frames,)`) as a 32-bit float WAV."""
    audio = np.atleast_2d(np.asarray(audio, np.float32))
    channels = audio.shape[0]
    body = np.ascontiguousarray(audio.T).astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
    header = b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(body)) + b"WAVE"
    Path(path).write_bytes(header + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body)


@pytest.fixture(scope="session")
def amen():
    """loop_amen: a real drum recording, stereo at 44.1 kHz, 1.75 s."""
    return recording("loop_amen")


def batch(amen, items, frames, params, seed=0):
    """`items` mono crops of the recording, θ rows in [0, 1] and random ∂L/∂y, all float32."""
    audio, _ = amen
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, audio.shape[1] - frames, items)
    x = np.stack([audio[i % 2, s : s + frames] for i, s in enumerate(starts)])
    theta = rng.uniform(0.05, 0.95, (items, params)).astype(np.float32)
    grad_y = rng.standard_normal(x.shape).astype(np.float32)
    return x, theta, grad_y


def rust_pool(batch_gradients, folder, x, theta, grad_y, *flags):
    """The Rust pool's renders, SPSA and FD gradients of the same batch (None for a failed item)."""
    folder.mkdir()
    for i in range(len(x)):
        write_wav(folder / f"x{i}.wav", x[i], 44100)
        write_wav(folder / f"g{i}.wav", grad_y[i], 44100)
    (folder / "theta.json").write_text(json.dumps(theta.tolist()))
    subprocess.run([str(batch_gradients), str(folder), *flags], check=True)
    renders = [read_wav(folder / f"y{i}.wav")[0][0] if (folder / f"y{i}.wav").exists() else None for i in range(len(x))]
    load = lambda name: [None if g is None else np.array(g, np.float32) for g in json.loads((folder / name).read_text())]
    return renders, load("spsa.json"), load("fd.json")
