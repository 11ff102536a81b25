"""Helpers for the SIP interop tests: an in-process gateway that keeps its calls, real
peers (sipp, baresip) run as subprocesses, a test RTP endpoint, and audio measures.

A missing tool fails the test (never a skip): `scripts/system-deps.sh` installs them.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.app import AtomsApp
from gateway.call import Call
from gateway.sip.rtp import RtpPacket, RtpSender, parse_rtp
from media.codecs import WireFormat
from media.resample import StreamResampler

SCENARIOS = Path(__file__).resolve().parents[2] / "sip_examples" / "sipp"
LOCALHOST = "127.0.0.1"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed; run scripts/system-deps.sh", pytrace=False)
    return path


def free_port(*, even: bool = False, tcp_too: bool = False) -> int:
    """A port free for UDP (and TCP) on 127.0.0.1 right now."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOCALHOST, 0))
            port = s.getsockname()[1]
            if even and port % 2:
                continue
            if tcp_too:
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                        t.bind((LOCALHOST, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


class RecordingApp(AtomsApp):
    """AtomsApp that remembers every call it opened (their timelines stay readable)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened: list[Call] = []

    async def open_call(self, *args: Any, **kwargs: Any) -> Call:
        call = await super().open_call(*args, **kwargs)
        self.opened.append(call)
        return call

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for c in self.opened for e in c.timeline if e["type"] == kind]


async def start_gateway(**settings: Any) -> RecordingApp:
    """The demo agent answering SIP on a free 127.0.0.1 port (`app.sip_port`)."""
    rtp_base = free_port(even=True)
    settings.setdefault("rtp_port_min", rtp_base)
    settings.setdefault("rtp_port_max", min(rtp_base + 200, 65534))
    app = RecordingApp(host=LOCALHOST, sip_port=free_port(tcp_too=True), **settings)
    await app.start(host=LOCALHOST, port=0)
    return app


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll `predicate()` until true (a timeout is a failure, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


# ----------------------------------------------------------------------------- Kamailio

KAMAILIO_CONFIG = SCENARIOS.parent / "kamailio" / "kamailio.cfg"


def kamailio_config(tmp_path: Path, port: int, gateways: list[int]) -> Path:
    """The example config (sip_examples/kamailio/), listening on 127.0.0.1:`port`,
    dispatching to the gateways on 127.0.0.1:`gateways`."""
    listed = tmp_path / "dispatcher.list"
    listed.write_text("".join(f"1 sip:{LOCALHOST}:{p}\n" for p in gateways))
    text = KAMAILIO_CONFIG.read_text()
    assert "listen=udp:0.0.0.0:5060" in text and "/etc/kamailio/dispatcher.list" in text
    text = text.replace("listen=udp:0.0.0.0:5060", f"listen=udp:{LOCALHOST}:{port}")
    text = text.replace("/etc/kamailio/dispatcher.list", str(listed))
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(text)
    return cfg


async def start_kamailio(tmp_path: Path, port: int, gateways: list[int],
                         log: Path | None = None) -> asyncio.subprocess.Process:
    """Kamailio in the foreground with that config (its log to `log`, else a pipe); fails
    the test unless it answers OPTIONS."""
    kamailio = require("kamailio")
    cfg = kamailio_config(tmp_path, port, gateways)
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    out: Any = asyncio.subprocess.PIPE if log is None else open(log, "wb")  # noqa: SIM115
    try:
        proc = await asyncio.create_subprocess_exec(
            kamailio, "-f", str(cfg), "-DD", "-E", "-Y", str(run_dir),
            "-P", str(run_dir / "kamailio.pid"), stdout=out, stderr=asyncio.subprocess.STDOUT)
    finally:
        if log is not None:
            out.close()
    probe = await run_sipp("uac_options", port, tmp_path, timeout=15)  # the proxy is up
    if probe.returncode != 0:
        await stop_process(proc)
        pytest.fail(f"Kamailio does not answer OPTIONS\n{probe.explain()}")
    return proc


async def stop_process(proc: asyncio.subprocess.Process | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()


# ----------------------------------------------------------------------------- sipp


@dataclass
class SippResult:
    returncode: int
    output: str
    errors: str

    def explain(self) -> str:
        return f"sipp exit {self.returncode}\n{self.output[-3000:]}\n{self.errors[-3000:]}"


async def run_sipp(
    scenario: str, sip_port: int, cwd: Path, *, extra: list[str] | None = None,
    timeout: float = 60.0,
) -> SippResult:
    """Run one sipp call of `sip_examples/sipp/<scenario>.xml` against the gateway."""
    sipp = require("sipp")
    args = [
        sipp, "-sf", str(SCENARIOS / f"{scenario}.xml"), "-s", "agent", "-m", "1",
        "-i", LOCALHOST, "-p", str(free_port()), "-ci", LOCALHOST, "-cp", str(free_port()),
        "-mi", LOCALHOST, "-mp", str(free_port(even=True)), "-nostdin", "-trace_err",
        "-timeout", f"{int(timeout)}s", "-timeout_error", *(extra or []),
        f"{LOCALHOST}:{sip_port}",
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout + 10)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    errors = "\n".join(p.read_text(errors="replace") for p in cwd.glob("*_errors.log"))
    return SippResult(proc.returncode or 0, out.decode(errors="replace"), errors)


# ----------------------------------------------------------------------------- RTP peer


@dataclass
class Received:
    t: float
    packet: RtpPacket
    addr: tuple[str, int]


@dataclass
class RtpPeer(asyncio.DatagramProtocol):
    """The caller's media end in a test: hears the gateway and speaks G.711 to it."""

    received: list[Received] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    sent_frames: int = 0
    last_rx: float = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.received.append(Received(time.monotonic(), parse_rtp(data), addr))
        self.last_rx = asyncio.get_running_loop().time()

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    @property
    def gateway_addr(self) -> tuple[str, int]:
        return self.received[0].addr

    async def speak(self, pcm16k: np.ndarray, *, encoding: str = "pcmu",
                    payload_type: int = 0, sender: RtpSender | None = None) -> RtpSender:
        """Send 16 kHz audio to the gateway as 20 ms G.711 packets, paced in real time."""
        assert self.transport is not None
        wire = WireFormat(encoding, 8000)  # type: ignore[arg-type]
        pcm8k = StreamResampler(16000, 8000).process(pcm16k)
        sender = sender or RtpSender(payload_type)
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        for start in range(0, len(pcm8k) - 159, 160):
            self.transport.sendto(sender.packet(wire.encode(pcm8k[start:start + 160])),
                                  self.gateway_addr)
            self.sent_frames += 1
            next_t += 0.02
            await asyncio.sleep(max(0.0, next_t - loop.time()))
        return sender


async def open_rtp_peer() -> RtpPeer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(RtpPeer, local_addr=(LOCALHOST, 0))
    return peer


def decode_stream(packets: list[RtpPacket]) -> np.ndarray:
    """The 8 kHz audio of received PCMU/PCMA packets in sequence order, gaps as silence."""
    if not packets:
        return np.zeros(0, dtype=np.int16)
    enc = "pcmu" if packets[0].payload_type == 0 else "pcma"
    wire = WireFormat(enc, 8000)  # type: ignore[arg-type]
    return np.concatenate([wire.decode(p.payload) for p in packets])


# ----------------------------------------------------------------------------- audio


def active_seconds(pcm: np.ndarray, rate: int, threshold_dbfs: float = -45.0) -> float:
    """How much of `pcm` (in 20 ms frames) is louder than `threshold_dbfs`."""
    n = rate // 50
    frames = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    rms = np.sqrt(np.mean(frames**2, axis=1)) / 32768.0
    loud = 20 * np.log10(np.maximum(rms, 1e-9)) > threshold_dbfs
    return float(np.count_nonzero(loud)) * 0.02


def rms_dbfs(pcm: np.ndarray) -> float:
    if not len(pcm):
        return -120.0
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) / 32768.0
    return 20 * np.log10(max(rms, 1e-9))


def write_pcap(path: Path, packets: list[bytes], *, src: tuple[str, int],
               dst: tuple[str, int], interval: float = 0.02) -> None:
    """A libpcap file of UDP datagrams (Ethernet/IPv4), as sipp's play_pcap_audio reads."""
    def ip(addr: str) -> bytes:
        return socket.inet_aton(addr)

    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, payload in enumerate(packets):
        udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                          ip(src[0]), ip(dst[0]))
        csum = sum(struct.unpack("!10H", hdr))
        csum = (csum & 0xFFFF) + (csum >> 16)
        csum = (csum & 0xFFFF) + (csum >> 16)
        hdr = hdr[:10] + struct.pack("!H", ~csum & 0xFFFF) + hdr[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + hdr + udp
        t = 1_700_000_000 + i * interval
        out.append(struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)) % 1_000_000,
                               len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


# ----------------------------------------------------------------------------- baresip

BARESIP_CONFIG = """\
poll_method		epoll
net_interface		127.0.0.1
sip_listen		127.0.0.1:{sip_port}
sip_transports		udp
audio_player		alsa,null
audio_alert		alsa,null
audio_source		aufile,{wav}
ausrc_srate		16000
auplay_srate		16000
audio_channels		1
rtp_ports		{rtp_low}-{rtp_high}
module_path		/usr/lib/baresip/modules
module			g711.so
module			aufile.so
module			alsa.so
module			sndfile.so
module_app		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:{ctrl_port}
snd_path		{dump_dir}
"""


def write_baresip_config(cfg_dir: Path, wav: Path, *, codec: str = "PCMU") -> int:
    """A config directory for baresip (nothing read from ~/.baresip): the WAV is its
    microphone, the sndfile module records what it hears (and sends) into `cfg_dir`.
    Returns the ctrl_tcp port."""
    cfg_dir.mkdir(parents=True, exist_ok=True)
    ctrl_port = free_port(tcp_too=True)
    rtp_low = free_port(even=True)
    (cfg_dir / "config").write_text(BARESIP_CONFIG.format(
        sip_port=free_port(tcp_too=True), wav=wav, rtp_low=rtp_low,
        rtp_high=min(rtp_low + 10, 65535), ctrl_port=ctrl_port, dump_dir=cfg_dir))
    (cfg_dir / "accounts").write_text(
        f"<sip:+15557654321@127.0.0.1>;regint=0;audio_codecs={codec}\n")
    return ctrl_port


class BaresipControl:
    """baresip's ctrl_tcp: netstring-framed JSON commands in, events out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.events: list[dict[str, Any]] = []
        self._buf = b""
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int, proc: asyncio.subprocess.Process,
                      timeout: float = 10.0) -> BaresipControl:
        """Connect to the ctrl_tcp of baresip `proc`; if it never listens, fail with what
        baresip printed (it exits when it cannot bind its ports)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            try:
                r, w = await asyncio.open_connection(LOCALHOST, port)
                return cls(r, w)
            except OSError as e:
                if loop.time() > end or proc.returncode is not None:
                    if proc.returncode is None:
                        proc.kill()
                    out = await proc.stdout.read() if proc.stdout else b""
                    raise RuntimeError(f"baresip ctrl_tcp on port {port} never answered "
                                       f"(exit code {proc.returncode}); baresip said:\n"
                                       f"{out.decode(errors='replace')[-3000:]}") from e
                await asyncio.sleep(0.1)

    async def _read(self) -> None:
        import json

        while data := await self.reader.read(4096):
            self._buf += data
            while b":" in self._buf:
                head, _, rest = self._buf.partition(b":")
                n = int(head)
                if len(rest) < n + 1:
                    break
                self.events.append(json.loads(rest[:n]))
                self._buf = rest[n + 1:]

    async def command(self, command: str, params: str = "") -> None:
        import json

        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.writer.write(str(len(body)).encode() + b":" + body + b",")
        await self.writer.drain()

    def saw(self, event_type: str) -> bool:
        return any(e.get("type") == event_type for e in self.events)

    async def close(self) -> None:
        self._task.cancel()
        self.writer.close()


async def stop_baresip(ctrl: BaresipControl | None,
                       proc: asyncio.subprocess.Process | None) -> None:
    """Quit baresip through its control socket and wait for it (killed after 10 s)."""
    if ctrl is not None:
        await ctrl.command("quit")
        await ctrl.close()
    if proc is not None:
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def read_wav(path: Path) -> tuple[np.ndarray, int, int]:
    """(samples, rate, channels) of a 16-bit WAV."""
    import wave

    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        return data, w.getframerate(), w.getnchannels()


def write_wav(path: Path, pcm: np.ndarray, rate: int = 16000) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def spot_words(pcm16k: np.ndarray, words: list[str], distractors: list[str]) -> list[str]:
    """Words pocketsphinx hears in `pcm16k` with a grammar that loops over `words` and
    `distractors` (so a match is a choice, not forced)."""
    import pocketsphinx

    base = pocketsphinx.get_model_path("en-us")
    dec = pocketsphinx.Decoder(hmm=f"{base}/en-us", dict=f"{base}/cmudict-en-us.dict",
                               lm=None, loglevel="FATAL")
    vocab = " | ".join(sorted(set(words) | set(distractors)))
    dec.add_jsgf_string("loop", f"#JSGF V1.0;\ngrammar loop;\npublic <s> = ( {vocab} )+ ;\n")
    dec.activate_search("loop")
    rng = np.random.default_rng(7)  # a noise floor: digital silence upsets the decoder
    noisy = np.clip(pcm16k.astype(np.int32) + rng.normal(0, 64, len(pcm16k)).astype(np.int32),
                    -32768, 32767).astype(np.int16)
    dec.start_utt()
    dec.process_raw(noisy.tobytes(), full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    return hyp.hypstr.split() if hyp is not None else []
