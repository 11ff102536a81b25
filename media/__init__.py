"""Audio and speech: frames, codecs, resampling, VAD, playout, engines. Imports nothing from agent/ or gateway/."""
