"""afx.scan and afx.Plugin against the afx CLI: the same plugins, bit-identical renders, the same error messages."""

import json
import subprocess

import numpy as np
import pytest

import afx
from conftest import read_wav, write_wav

COMP = "urn:zamaudio:ZamComp"


def cli(afx_cli, *args):
    """Runs the afx CLI; (exit code, stdout, stderr)."""
    run = subprocess.run([str(afx_cli), *args], capture_output=True, text=True)
    return run.returncode, run.stdout, run.stderr


def cli_error(afx_cli, *args):
    """The message the CLI prints for a failing command, without its `error: ` prefix."""
    code, _, stderr = cli(afx_cli, *args)
    assert code != 0, f"afx {' '.join(args)} should fail"
    assert stderr.startswith("error: "), stderr
    return stderr[len("error: ") :].rstrip("\n")


def test_scan_lists_what_the_cli_lists(afx_cli):
    plugins = afx.scan(format="lv2")
    code, stdout, _ = cli(afx_cli, "scan", "--json", "--format", "lv2")
    assert code == 0
    assert plugins == json.loads(stdout)["plugins"]
    ids = {p["id"] for p in plugins}
    assert {COMP, "urn:afx:testfx"} <= ids


@pytest.mark.parametrize("channels", [1, 2])
def test_render_equals_afx_render_bit_for_bit(afx_cli, amen, tmp_path, channels):
    audio, rate = amen
    x = np.ascontiguousarray(audio[:channels])
    write_wav(tmp_path / "in.wav", x, rate)
    values = {"att": 2.5, "rel": 40.0, "thr": -30.0, "rat": 6.0, "mak": 3.0}
    sets = [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]
    code, _, stderr = cli(afx_cli, "render", "--plugin", COMP, *sets, "-i", "in.wav", "-o", "out.wav")
    assert code == 0, stderr
    expected, expected_rate = read_wav(tmp_path / "out.wav")

    comp = afx.Plugin(COMP)
    y = comp.render(x if channels > 1 else x[0], rate, **values)
    assert expected_rate == rate
    assert y.dtype == np.float32
    assert y.shape == (x.shape if channels > 1 else x.shape[1:])
    assert np.array_equal(np.atleast_2d(y).view(np.uint32), expected.view(np.uint32))
    # The parameters mattered: the defaults give another output.
    assert not np.array_equal(comp.render(x[0], rate), np.atleast_2d(y)[0])


def test_params_are_the_scans(afx_cli):
    comp = afx.Plugin(COMP)
    (described,) = [p for p in afx.scan(format="lv2") if p["id"] == COMP]
    assert comp.params == described["params"]
    assert comp.name == "ZamComp"
    assert comp.info[0]["id"] == COMP
    threshold = next(p for p in comp.params if p["id"] == "thr")
    assert threshold["unit"] == "dB" and threshold["min"] < threshold["max"] and threshold["min"] <= threshold["default"] <= threshold["max"]


def test_unknown_plugin_raises_the_cli_message(afx_cli, amen, tmp_path):
    audio, rate = amen
    write_wav(tmp_path / "in.wav", audio, rate)
    expected = cli_error(afx_cli, "render", "--plugin", "ZamCompp", "--format", "lv2", "-i", "in.wav", "-o", "o.wav")
    with pytest.raises(afx.AfxError) as raised:
        afx.Plugin("ZamCompp", format="lv2")
    assert str(raised.value) == expected
    assert "did you mean ZamComp" in str(raised.value)


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [("thr=500", "outside the range"), ("thrr=-10", "did you mean thr")],
)
def test_bad_parameter_raises_the_cli_message(afx_cli, amen, tmp_path, setting, fragment):
    audio, rate = amen
    write_wav(tmp_path / "in.wav", audio[:1], rate)
    expected = cli_error(afx_cli, "render", "--plugin", COMP, "--set", setting, "-i", "in.wav", "-o", "out.wav")
    key, value = setting.split("=")
    with pytest.raises(afx.ParameterError) as raised:
        afx.Plugin(COMP).render(audio[0], rate, **{key: float(value)})
    assert str(raised.value) == expected
    assert fragment in str(raised.value)
    assert not (tmp_path / "out.wav").exists()


def test_bad_audio_raises_naming_the_argument(amen):
    audio, rate = amen
    comp = afx.Plugin(COMP)
    with pytest.raises(TypeError, match=r"x must be a float32 NumPy array, got a ndarray of dtype float64"):
        comp.render(audio.astype(np.float64), rate)
    with pytest.raises(TypeError, match="x must be a float32 NumPy array, got a list"):
        comp.render([0.0, 0.1], rate)
    with pytest.raises(ValueError, match=r"x must have shape \(frames,\) or \(channels, frames\), got \[1, 2, "):
        comp.render(audio[None], rate)
    nan = audio[0].copy()
    nan[100] = np.nan
    with pytest.raises(ValueError, match="x: sample NaN .* at frame 100 of channel 0"):
        comp.render(nan, rate)
    with pytest.raises(afx.ParameterError, match="thr=loud: give a number"):
        comp.render(audio[0], rate, thr="loud")
    with pytest.raises(ValueError, match="format=\"aax\""):
        afx.Plugin(COMP, format="aax")


def test_the_module_docstring_example_runs():
    import doctest

    result = doctest.testmod(afx)
    assert result.attempted > 0 and result.failed == 0


def test_a_crashing_render_raises_item_error_and_the_next_render_works(amen, monkeypatch):
    audio, rate = amen
    monkeypatch.setenv("AFX_TESTFX_FAULT", "segfault")
    fx = afx.Plugin("urn:afx:testfx", format="lv2")
    with pytest.raises(afx.ItemError) as raised:
        fx.render(audio[0], rate, drive=24.0)  # the armed fault fires from 23 dB
    assert (raised.value.kind, raised.value.signal) == ("crashed", 11)
    assert "SIGSEGV" in str(raised.value)
    y = fx.render(audio[0], rate, drive=6.0)
    assert y.shape == audio[0].shape and np.isfinite(y).all()


def test_files_round_trip_and_bad_files_raise_naming_them(amen, tmp_path):
    audio, rate = amen
    afx.save(tmp_path / "copy.wav", audio, rate)
    loaded, loaded_rate = afx.load(tmp_path / "copy.wav")
    assert loaded_rate == rate and np.array_equal(loaded, audio)
    with pytest.raises(afx.AfxError, match="nowhere.wav"):
        afx.load(tmp_path / "nowhere.wav")
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(afx.AfxError, match="text.wav"):
        afx.load(tmp_path / "text.wav")
    with pytest.raises(TypeError, match="audio must be a float32 NumPy array"):
        afx.save(tmp_path / "x.wav", audio.astype(np.float64), rate)
    with pytest.raises(ValueError, match="sample_rate=0"):
        afx.save(tmp_path / "x.wav", audio, 0)
    assert not (tmp_path / "x.wav").exists()
    with pytest.raises(ValueError, match='format="aax"'):
        afx.scan(format="aax")
