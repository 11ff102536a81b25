"""The test kit: what tests (and benchmarks) share, so that no test module imports another.

- `tests.kit.fakes`: stand-ins for a session, a recogniser and an event sink.
- `tests.kit.speech`: speech for tests, made offline by espeak-ng (cached), and trimming.
- `tests.kit.audio`: test signals and measurements (placing speech in a silent track,
  finding DTMF tones).
- `tests.kit.servers`: local servers speaking the cloud services' protocols (OpenAI chat,
  speech and transcription, Deepgram, Smallest Waves and Pulse) on 127.0.0.1; each also
  runs on its own with `python -m tests.kit.servers.<name>`.
- `tests.kit.serve_process`: `atoms-gateway serve` as a child process.
- `tests.kit.clients`: far-end clients for the gateway's routes, one module per provider.
- `tests.kit.twilio_caller`: a minimal Twilio Media Streams far end for the compat tests
  (`audioop`'s G.711, not the gateway's).
- `tests.kit.rtc_peer`: a WebRTC caller (aiortc) for the gateway's `/webrtc/offer` signalling.
- `tests.kit.bargein_eval`, `tests.kit.bargein_flows`, `tests.kit.bargein_call_flows`: the
  labelled barge-in sets (single overlaps, conversation flows, whole calls) that the barge-in
  tests and benchmarks score.

Per-folder helpers that only one folder's tests use stay beside them (tests/sip/samples.py,
tests/webrtc/agents.py, tests/compat/servers.py, ...).
"""
