#!/usr/bin/env bash
# Make sure a PulseAudio server runs with a null sink whose monitor is the default source, so
# anything played to `emostream_sink` can be recorded from the default input. Idempotent.
#
#   tests/audio_server.sh   -> exit 0 when ready (prints the sink and source names), 1 otherwise
#
# Play:   paplay --device=emostream_sink examples/dialogue.wav
# Record: any PortAudio/ALSA client on the default device (ALSA's pulse plugin routes it here).
set -euo pipefail

sink=emostream_sink

for tool in pulseaudio pactl; do
  command -v "$tool" >/dev/null || { echo "audio_server.sh: $tool not found (apt install pulseaudio pulseaudio-utils)" >&2; exit 1; }
done

if ! pactl info >/dev/null 2>&1; then
  # As root, pulseaudio warns ("not intended to be run as root") but runs a per-user daemon,
  # which is what ALSA's pulse plugin and paplay connect to; --system would need extra setup.
  # --exit-idle-time=-1 keeps it alive between tests. With --daemonize the parent returns
  # once the daemon is ready to accept clients.
  pulseaudio --daemonize=yes --exit-idle-time=-1 --log-target=stderr --log-level=error 2>/dev/null || true
  pactl info >/dev/null 2>&1 || { echo "audio_server.sh: PulseAudio did not start" >&2; exit 1; }
fi

if ! pactl list short sinks | cut -f2 | grep -qx "$sink"; then
  pactl load-module module-null-sink sink_name="$sink" sink_properties=device.description="$sink" >/dev/null
fi
pactl set-default-source "$sink.monitor"
echo "sink=$sink source=$sink.monitor"
