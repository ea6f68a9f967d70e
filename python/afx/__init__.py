"""afx from Python: real audio plugins (LV2, CLAP, VST3) as NumPy functions and PyTorch layers.

- ``afx.scan()``: the installed plugins, as ``afx scan --json`` lists them.
- ``afx.Plugin(name)``: one plugin; ``.params`` in plain units, ``.render(x, sample_rate, **values)``.
- ``afx.Pool(chain)``: N crash-proof workers on batches: ``.render``, ``.spsa``, ``.finite_difference``, each
  returning ``(array, errors)`` with ``errors[i]`` ``None`` or the ``afx.ItemError`` of item ``i``;
  ``.render_perturbed`` renders a batch and its SPSA perturbations in one go, and the ``afx.PerturbedRenders``
  it returns gives ``spsa``'s estimates later, for any ``grad_y``, by ``.vjp(grad_y)``.
- ``afx.load(path)`` / ``afx.save(path, audio, rate)``: WAV, FLAC, OGG, MP3 in; float WAV out.
- ``afx.torch.PluginLayer(pool)``: the real plugin as a ``torch.nn.Module``, differentiated by SPSA.

Plugins run in worker processes: one that crashes or hangs fails its item, never this interpreter.

>>> import numpy as np, afx
>>> comp = afx.Plugin("ZamComp", format="lv2")
>>> [p["id"] for p in comp.params]
['att', 'rel', 'kn', 'rat', 'thr', 'mak', 'slew', 'sidech']
>>> comp.render(np.zeros((2, 44100), np.float32), 44100, thr=-30.0, rat=4.0).shape
(2, 44100)
"""

import warnings as _warnings

from . import _afx
from ._afx import AfxError, ItemError, ParameterError, PerturbedRenders, Plugin, Pool, load, save

__all__ = ["AfxError", "ItemError", "ParameterError", "PerturbedRenders", "Plugin", "Pool", "load", "save", "scan"]


def scan(format=None, timeout=None, rescan=False):
    """Every installed plugin afx can host, as dicts with the fields of ``afx scan --json``'s ``plugins``.

    Each plugin file is described in a child process (a plugin that crashes while loading fails alone, with a
    warning naming its file); unchanged files come from the scan cache the CLI shares.

    Args:
        format: ``"lv2"``, ``"clap"`` or ``"vst3"`` to list one format only.
        timeout: seconds one file may take to be described.
        rescan: describe every file again instead of trusting the cache.
    """
    catalogue = _afx.scan(format=format, timeout=timeout, rescan=rescan)
    for failure in catalogue["failed"]:
        _warnings.warn(
            "plugin file {path} ({format}) failed to load: {reason}".format(**failure), RuntimeWarning, stacklevel=2
        )
    return catalogue["plugins"]
