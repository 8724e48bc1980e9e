"""libespeak-ng through ctypes, from the ``espeakng-loader`` wheel (library and voice data, no system install).

espeak-ng keeps state between utterances that its API cannot reset: function-local statics in the wave
generator (pitch-flutter phase, echo buffer, ...) and two random generators (its own and libc's). So the
same text and voice sound slightly different depending on what was spoken before. For outputs that are a
function of the utterance alone (whatever the order, the process or the number of jobs), every
:class:`Espeak` loads a fresh copy of the library (``dlclose`` on close, so the next ``dlopen`` starts from
the library's initial data) and :meth:`Espeak.synth` seeds both random generators. Use one instance per
utterance where byte-identical output matters; it costs a few milliseconds. Not thread-safe (nor is
espeak): parallelise with processes.
"""
from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import numpy as np

from asrkt.utils.errors import AsrktError

# espeak_AUDIO_OUTPUT, espeak_PARAMETER and flag values from espeak-ng's speak_lib.h.
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAMS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _loader():
    try:
        import espeakng_loader
    except ImportError:
        raise AsrktError("the espeakng-loader package is needed to synthesise speech: "
                         "pip install espeakng-loader") from None
    return espeakng_loader


def data_path() -> Path:
    """The espeak-ng-data folder shipped in the wheel."""
    return Path(_loader().get_data_path())


def english_languages(data=None) -> list[str]:
    """English accents shipped in the data (``lang/gmw/en*``), by file name as SetVoiceByName takes them.

    ``en-Shaw`` is left out: it exists to read the Shavian alphabet and reads Latin text exactly as ``en``.
    """
    folder = Path(data or data_path()) / "lang" / "gmw"
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("en") and p.name != "en-Shaw")


def voice_variants(data=None) -> list[str]:
    """Voice variants (``voices/!v``): timbre, pitch and breathiness presets combined as ``lang+variant``."""
    folder = Path(data or data_path()) / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file())


class Espeak:
    """A freshly loaded, initialised libespeak-ng; ``close()`` (or ``with``) unloads it again."""

    def __init__(self):
        loader = _loader()
        self._lib = lib = ctypes.CDLL(loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, loader.get_data_path().encode(),
                                          INITIALIZE_DONT_EXIT)
        if self.rate <= 0:
            self.close()
            raise AsrktError(f"espeak-ng failed to initialise with data at {loader.get_data_path()}")
        self.version = lib.espeak_Info(None).decode()
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: espeak calls it
        lib.espeak_SetSynthCallback(self._callback)
        self._libc = ctypes.CDLL(None)

    def _collect(self, wav, n, events):
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def set_voice(self, name: str) -> bool:
        """Select a voice (``en-US+m3``); False when espeak does not know it."""
        return self._lib.espeak_SetVoiceByName(name.encode()) == 0

    def synth(self, text: str, voice: str, seed: int = 0, **params) -> np.ndarray:
        """Speak ``text`` with ``voice``; ``params``: rate (words/min), volume, pitch, range, wordgap (10 ms).

        Returns int16 samples at ``self.rate``; raises AsrktError for an unknown voice or a failed synthesis.
        """
        if not self.set_voice(voice):
            raise AsrktError(f"espeak-ng: unknown voice '{voice}'")
        for key, value in params.items():
            if key not in PARAMS:
                raise ValueError(f"unknown espeak parameter {key}")
            self._lib.espeak_SetParameter(PARAMS[key], int(value), 0)
        # Both generators: espeak's own (breath noise) and libc's (some klatt voices).
        self._lib.espeak_ng_SetRandSeed(int(seed))
        self._libc.srand(ctypes.c_uint(int(seed) & 0xFFFFFFFF))
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        status = self._lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if status != 0:
            raise AsrktError(f"espeak-ng failed (status {status}) to speak '{text}' with voice '{voice}'")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    def close(self) -> None:
        if self._lib is None:
            return
        self._lib.espeak_Terminate()
        handle = self._lib._handle
        self._lib = None
        import _ctypes

        # Unload, so that the next instance starts from the library's initial static state.
        _ctypes.dlclose(handle)
        _check_unloaded()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_checked = False


def _check_unloaded() -> None:
    """Warn (once) when dlclose did not unload the library: another holder in this process (another package
    that loaded libespeak-ng) keeps it mapped, and then outputs depend on the order of synthesis."""
    global _checked
    if _checked or not Path("/proc/self/maps").exists():
        return
    _checked = True
    if "libespeak-ng" in Path("/proc/self/maps").read_text():
        logging.getLogger(__name__).warning(
            "libespeak-ng stays loaded after dlclose (something else in this process holds it): synthesised "
            "audio may depend on the order of utterances and not be reproducible")


def espeak_version() -> str:
    with Espeak() as es:
        return es.version
