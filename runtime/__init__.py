"""Runtime helpers that are not audio: the injected clock (`runtime.clock`), stopping a
task cleanly (`runtime.tasks`) and starting a child process cheaply (`runtime.spawn`).

A leaf package: it imports nothing of `agent`, `media` or `gateway`, and all three may use
it."""
