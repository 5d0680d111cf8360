"""Speech-like audio whose content drives the mouth.

A random phone sequence (syllables grouped in phrases, separated by pauses) is turned into
a mouth-articulation trajectory with Cohen-Massaro dominance-function coarticulation: each
phone pulls the jaw opening and lip shape towards its target with a dominance that decays
exponentially away from the phone centre, and the trajectory is the dominance-weighted mean
of the targets. Bilabial closures and pauses dominate strongly, so the lips really close.

The same trajectory drives a formant synthesiser: F1 rises with jaw opening and F2 with
lip spreading (falls with rounding), as in real vowels; voiced sounds are a sum of pitch
harmonics shaped by the formant resonances; fricatives and stop bursts are shaped noise;
vowel loudness grows with jaw opening. Pitch follows a phrase declination with accents and
a little jitter. All randomness comes from the seed, so a seed always gives the same
samples.

Time alignment: video frame ``i`` shows the mouth at the centre of its audio window,
t = (i + 0.5) / fps; the audio has exactly ``n_frames * sample_rate / fps`` samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edtalk_cli.defaults import FPS as MODEL_FPS
from edtalk_cli.defaults import SAMPLE_RATE

FPS = int(MODEL_FPS)  # the synthetic world is filmed at the model's rate, in whole frames per second
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
_CTRL_RATE = 500  # control (articulation) rate in Hz
# Documented smoothness bound of the per-frame mouth factors (asserted in the tests).
MAX_JAW_STEP = 0.35  # max |jaw[i+1] - jaw[i]|
MAX_LIP_STEP = 0.6  # max |lip[i+1] - lip[i]|


@dataclass(frozen=True)
class Phone:
    """A phone class: articulation target, sound source and coarticulation strength."""

    jaw: float
    lip: float
    kind: str  # vowel, nasal, approximant, stop, fricative, silence
    voiced: bool
    noise: str = ""  # fricative/burst noise colour: s, sh, f, h, p, t, k
    dominance: float = 1.0
    duration: tuple[float, float] = (0.06, 0.1)


PHONES: dict[str, Phone] = {
    # vowels (jaw, lip)
    "a": Phone(0.95, 0.05, "vowel", True, duration=(0.10, 0.22)),
    "ae": Phone(0.75, 0.45, "vowel", True, duration=(0.10, 0.20)),
    "e": Phone(0.50, 0.60, "vowel", True, duration=(0.08, 0.18)),
    "i": Phone(0.16, 0.95, "vowel", True, duration=(0.08, 0.16)),
    "o": Phone(0.60, -0.70, "vowel", True, duration=(0.10, 0.20)),
    "u": Phone(0.20, -1.00, "vowel", True, duration=(0.08, 0.16)),
    "@": Phone(0.38, 0.00, "vowel", True, duration=(0.06, 0.11)),
    # consonants
    "p": Phone(0.0, 0.0, "stop", False, "p", dominance=6.0, duration=(0.06, 0.10)),
    "b": Phone(0.0, 0.0, "stop", True, "p", dominance=6.0, duration=(0.05, 0.09)),
    "m": Phone(0.0, 0.0, "nasal", True, dominance=6.0, duration=(0.06, 0.10)),
    "f": Phone(0.08, 0.15, "fricative", False, "f", dominance=3.0, duration=(0.07, 0.12)),
    "v": Phone(0.08, 0.15, "fricative", True, "f", dominance=3.0, duration=(0.05, 0.09)),
    "t": Phone(0.18, 0.25, "stop", False, "t", dominance=1.2, duration=(0.05, 0.09)),
    "d": Phone(0.18, 0.25, "stop", True, "t", dominance=1.2, duration=(0.04, 0.08)),
    "n": Phone(0.18, 0.20, "nasal", True, dominance=1.0, duration=(0.05, 0.09)),
    "s": Phone(0.14, 0.40, "fricative", False, "s", dominance=2.0, duration=(0.08, 0.13)),
    "z": Phone(0.14, 0.40, "fricative", True, "s", dominance=2.0, duration=(0.06, 0.10)),
    "l": Phone(0.25, 0.15, "approximant", True, dominance=0.8, duration=(0.05, 0.08)),
    "k": Phone(0.28, 0.00, "stop", False, "k", dominance=0.8, duration=(0.06, 0.10)),
    "g": Phone(0.28, 0.00, "stop", True, "k", dominance=0.8, duration=(0.05, 0.08)),
    "sh": Phone(0.15, -0.55, "fricative", False, "sh", dominance=2.5, duration=(0.08, 0.13)),
    "w": Phone(0.10, -0.95, "approximant", True, dominance=2.5, duration=(0.05, 0.08)),
    "r": Phone(0.25, -0.35, "approximant", True, dominance=1.0, duration=(0.05, 0.08)),
    "h": Phone(0.40, 0.00, "fricative", False, "h", dominance=0.15, duration=(0.05, 0.08)),
    # pause: mouth relaxed and closed
    "_": Phone(0.0, 0.0, "silence", False, dominance=4.0, duration=(0.08, 0.08)),
}
VOWELS = ("a", "ae", "e", "i", "o", "u", "@")
ONSETS = ("p", "b", "m", "f", "v", "t", "d", "n", "s", "z", "l", "k", "g", "sh", "w", "r", "h")
CODAS = ("m", "n", "t", "d", "s", "z", "l", "k", "p", "f", "r")


@dataclass(frozen=True)
class Voice:
    """Speaker traits: mean pitch (Hz), accent range (semitones), speaking rate factor."""

    f0: float = 140.0
    accent: float = 3.0
    rate: float = 1.0
    breath: float = 0.02

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Voice:
        return cls(
            f0=float(rng.choice([rng.uniform(95, 140), rng.uniform(170, 240)])),
            accent=float(rng.uniform(1.5, 4.5)),
            rate=float(rng.uniform(0.85, 1.2)),
            breath=float(rng.uniform(0.005, 0.04)),
        )


@dataclass
class Speech:
    """A speech track and the mouth articulation it implies, per video frame."""

    audio: np.ndarray  # (n_frames * 640,) float32 in [-1, 1], 16 kHz mono
    jaw: np.ndarray  # (n_frames,) float32 in [0, 1]
    lip: np.ndarray  # (n_frames,) float32 in [-1, 1]
    silent: np.ndarray  # (n_frames,) bool: frame centre inside a pause
    phones: list[tuple[str, float, float]] = field(default_factory=list)  # (label, start s, end s)
    sample_rate: int = SAMPLE_RATE
    fps: int = FPS

    @property
    def n_frames(self) -> int:
        return len(self.jaw)


# ----------------------------------------------------------------------------- phone sequence


def _phone_sequence(rng: np.random.Generator, seconds: float, voice: Voice) -> list[tuple[str, float, float]]:
    """Random phrases of CV(C) syllables separated by pauses, covering [0, seconds)."""
    out: list[tuple[str, float, float]] = []
    t = float(rng.uniform(0.12, 0.45))
    out.append(("_", 0.0, t))
    end_limit = seconds - 0.2
    while t < end_limit - 0.3:
        n_syll = int(rng.integers(2, 9))
        phrase: list[tuple[str, float]] = []
        for k in range(n_syll):
            stressed = rng.random() < 0.35 or k == n_syll - 1
            if rng.random() < 0.8:
                phrase.append((str(rng.choice(ONSETS)), 0.0))
            v = str(rng.choice(VOWELS))
            phrase.append((v, 1.35 if stressed else 1.0))
            if rng.random() < 0.3:
                phrase.append((str(rng.choice(CODAS)), 0.0))
        for label, stretch in phrase:
            lo, hi = PHONES[label].duration
            d = float(rng.uniform(lo, hi)) / voice.rate * (stretch or 1.0)
            if t + d > end_limit:
                break
            out.append((label, t, t + d))
            t += d
        pause = float(rng.uniform(0.2, 0.7))
        out.append(("_", t, min(t + pause, seconds)))
        t += pause
    if out[-1][0] == "_":
        out[-1] = ("_", out[-1][1], seconds)
    else:
        out.append(("_", t, seconds))
    return [p for p in out if p[2] > p[1]]


# ----------------------------------------------------------------------------- articulation


def _articulation(phones: list[tuple[str, float, float]], tc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cohen-Massaro coarticulation: dominance-weighted jaw and lip at control times tc."""
    # pauses are split into 80 ms pieces so a long pause keeps the mouth closed throughout
    centres, taus, alphas, jaws, lips = [], [], [], [], []
    for label, a, b in phones:
        ph = PHONES[label]
        if ph.kind == "silence":
            n = max(1, round((b - a) / 0.08))
            edges = np.linspace(a, b, n + 1)
            for k in range(n):
                centres.append(0.5 * (edges[k] + edges[k + 1]))
                taus.append(0.05)
                alphas.append(ph.dominance)
                jaws.append(ph.jaw)
                lips.append(ph.lip)
            continue
        centres.append(0.5 * (a + b))
        taus.append(0.35 * (b - a) + 0.025)
        alphas.append(ph.dominance)
        jaws.append(ph.jaw)
        lips.append(ph.lip)
    total = np.full_like(tc, 1e-12)
    acc_jaw = np.zeros_like(tc)
    acc_lip = np.zeros_like(tc)
    for c, tau, alpha, j, lp in zip(centres, taus, alphas, jaws, lips, strict=True):
        # dominance is negligible (< 1e-6 of its peak) beyond 14 tau
        lo = max(int((c - 14 * tau) * _CTRL_RATE), 0)
        hi = min(int((c + 14 * tau) * _CTRL_RATE) + 2, len(tc))
        dom = alpha * np.exp(-np.abs(tc[lo:hi] - c) / tau)
        total[lo:hi] += dom
        acc_jaw[lo:hi] += dom * j
        acc_lip[lo:hi] += dom * lp
    jaw = acc_jaw / total
    lip = acc_lip / total
    # a little extra smoothing (muscle inertia): Gaussian, sigma 15 ms
    jaw = _gauss_smooth(jaw, 0.015 * _CTRL_RATE)
    lip = _gauss_smooth(lip, 0.015 * _CTRL_RATE)
    return np.clip(jaw, 0, 1), np.clip(lip, -1, 1)


def _gauss_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    return np.convolve(np.pad(x, r, mode="edge"), k, mode="valid")


def formants(jaw: np.ndarray, lip: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F1, F2, F3 (Hz) of an articulation: F1 follows the jaw, F2 the lip spreading."""
    f1 = 250.0 + 560.0 * jaw
    f2 = 1400.0 + 650.0 * lip - 200.0 * jaw
    f3 = 2500.0 + 250.0 * lip
    return f1, f2, f3


# ----------------------------------------------------------------------------- synthesis


def _envelopes(phones, tc: np.ndarray, jaw: np.ndarray) -> dict[str, np.ndarray]:
    """Source amplitudes at control times: voicing, nasal murmur, and one track per noise."""
    names = ("voice", "nasal", "s", "sh", "f", "h", "p", "t", "k")
    env = {k: np.zeros_like(tc) for k in names}
    for label, a, b in phones:
        ph = PHONES[label]
        m = (tc >= a) & (tc < b)
        if ph.kind == "vowel":
            env["voice"][m] = 1.0
        elif ph.kind == "approximant":
            env["voice"][m] = 0.55
        elif ph.kind == "nasal":
            env["nasal"][m] = 1.0
        elif ph.kind == "fricative":
            env[ph.noise][m] = 1.0 if ph.noise in ("s", "sh") else 0.6
            if ph.voiced:
                env["voice"][m] = 0.3
        elif ph.kind == "stop":
            if ph.voiced:
                env["nasal"][m] = 0.15  # voice bar during the closure
            burst = (tc >= b - 0.018) & (tc < b)
            env[ph.noise][burst] = 1.0
    for k in names:  # 8 ms attack/decay ramps
        env[k] = _gauss_smooth(env[k], 0.004 * _CTRL_RATE)
    env["voice"] *= 0.35 + 0.65 * jaw  # open vowels are louder
    return env


def _resonance(f: np.ndarray, fc: np.ndarray, bw: float) -> np.ndarray:
    """Magnitude of a 2nd-order resonator (unit gain at DC) at frequency f."""
    fc2 = fc * fc
    return fc2 / np.sqrt((fc2 - f * f) ** 2 + (f * bw) ** 2)


def _noise_bank(rng: np.random.Generator, n: int, sr: int) -> dict[str, np.ndarray]:
    """White noise shaped into fricative/burst colours (FFT-domain band shaping)."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1.0 / sr)

    def band(lo: float, hi: float, slope: float = 1.0) -> np.ndarray:
        g = 1.0 / (1.0 + ((f - 0.5 * (lo + hi)) / (0.5 * (hi - lo))) ** (4 * slope))
        y = np.fft.irfft(spec * g, n)
        return y / (np.std(y) + 1e-9)

    return {
        "s": band(4500, 7800) * 0.22,
        "sh": band(2200, 4800) * 0.24,
        "f": band(1000, 7800, 0.5) * 0.07,
        "h": band(500, 3000, 0.5) * 0.08,
        "p": band(200, 2500, 0.5) * 0.25,
        "t": band(3000, 7000) * 0.3,
        "k": band(1200, 3200) * 0.3,
    }


def synthesize(seed: int, n_frames: int, voice: Voice | None = None, fps: int = FPS) -> Speech:
    """Speech of ``n_frames`` video frames (``n_frames * 640`` samples at 16 kHz) for a seed."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    sr = SAMPLE_RATE
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E]))
    voice = voice or Voice.sample(rng)
    n = n_frames * (sr // fps)
    seconds = n / sr
    phones = _phone_sequence(rng, seconds, voice)

    n_ctrl = int(np.ceil(seconds * _CTRL_RATE)) + 2
    tc = np.arange(n_ctrl) / _CTRL_RATE
    jaw_c, lip_c = _articulation(phones, tc)
    env = _envelopes(phones, tc, jaw_c)

    # pitch: declination per phrase, accents, jitter
    semis = np.zeros(n_ctrl)
    for label, a, b in phones:
        if PHONES[label].kind == "vowel" and rng.random() < 0.4:
            c = 0.5 * (a + b)
            semis += voice.accent * rng.uniform(0.4, 1.0) * np.exp(-0.5 * ((tc - c) / 0.07) ** 2)
    phrase_start = 0.0
    prev = "_"
    decl = np.zeros(n_ctrl)
    for label, a, _b in phones:
        if prev == "_" and label != "_":
            phrase_start = a
        decl = np.where(tc >= a, 1.5 - 2.5 * (tc - phrase_start), decl)
        prev = label
    semis += np.clip(decl, -3, 2)
    semis += _gauss_smooth(rng.standard_normal(n_ctrl), 0.02 * _CTRL_RATE) * 0.8
    f0_c = voice.f0 * 2.0 ** (semis / 12.0)

    # control -> sample rate (linear interpolation)
    ts = np.arange(n) / sr
    pos = ts * _CTRL_RATE
    i0 = np.minimum(pos.astype(np.int64), n_ctrl - 2)
    w = (pos - i0).astype(np.float32)

    def up(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        return x[i0] * (1 - w) + x[i0 + 1] * w

    f0 = up(f0_c)
    phase = np.cumsum(2 * np.pi * f0 / sr, dtype=np.float64)
    phase = np.mod(phase, 2 * np.pi).astype(np.float32)

    # harmonic amplitudes at control rate through the formant filter
    f1, f2, f3 = formants(jaw_c, lip_c)
    kmax = int(7600 // f0_c.min())
    k = np.arange(1, kmax + 1, dtype=np.float32)[:, None]
    fk = k * f0_c[None, :].astype(np.float32)
    gain = (
        _resonance(fk, f1[None].astype(np.float32), 90.0)
        * _resonance(fk, f2[None].astype(np.float32), 120.0)
        * _resonance(fk, f3[None].astype(np.float32), 180.0)
        * _resonance(fk, np.float32(3600.0), 260.0)
        / k
    )
    gain *= fk < 7600
    nasal_gain = _resonance(fk, np.float32(260.0), 100.0) / k * (fk < 2500)
    amp_v = gain * env["voice"][None] * 0.045 + nasal_gain * env["nasal"][None] * 0.05
    audio = np.zeros(n, dtype=np.float32)
    for kk in range(kmax):
        a = amp_v[kk]
        if a.max() < 1e-5:
            continue
        audio += up(a) * np.sin((kk + 1) * phase)
    noise = _noise_bank(rng, n, sr)
    for key, track in noise.items():
        e = env[key]
        if e.max() > 0:
            audio += up(e) * track.astype(np.float32)
    audio += voice.breath * 0.05 * rng.standard_normal(n).astype(np.float32) * up(env["voice"])
    audio = np.tanh(audio * 1.2).astype(np.float32) * 0.9

    # per-frame factors at the frame centres
    tf = (np.arange(n_frames) + 0.5) / fps
    jaw = np.interp(tf, tc, jaw_c).astype(np.float32)
    lip = np.interp(tf, tc, lip_c).astype(np.float32)
    silent = np.zeros(n_frames, dtype=bool)
    for label, a, b in phones:
        if label == "_":
            silent |= (tf >= a) & (tf < b)
    return Speech(audio=audio, jaw=jaw, lip=lip, silent=silent, phones=phones, fps=fps)
