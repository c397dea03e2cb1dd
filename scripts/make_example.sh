#!/usr/bin/env bash
# Build the example two-voice dialogue in examples/ with espeak-ng and sox (deterministic).
#
# Outputs (all 16 kHz, 16-bit):
#   examples/dialogue.wav         mono, both voices
#   examples/dialogue_stereo.flac speaker A on the left channel, B on the right, silence opposite
#                                 (FLAC, not WAV: a stereo WAV would push examples/ past 2 MB)
#   examples/dialogue.tsv         ground truth: speaker, start, end (seconds), text; one row per turn
#   examples/dialogue.txt         the transcript, "A: text" per turn
#
# Each turn is synthesised, trimmed to its first/last non-silent sample, normalised to -3 dBFS
# and placed after a fixed pause, so the TSV boundaries are exact sample positions of speech.
# sox runs with -R (repeatable) and -D (no dither): the same inputs give byte-identical files.
#
# Usage: scripts/make_example.sh [OUTDIR]   (default: examples/ next to this script's parent)
set -euo pipefail

out_dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/examples"}
rate=16000
lead_s=0.5   # silence before the first turn, seconds
tail_s=0.6   # silence after the last turn, seconds

# speaker | espeak-ng voice | espeak-ng options (pitch, words/min) | pause after, seconds | text
# Wording carries the emotion: neutral, happy, sad, angry, sad, neutral, happy, happy.
turns=(
  "A|en-us|-p 45 -s 170|0.7|Hi Sarah, I got the lab results this morning."
  "B|en-us+f3|-p 70 -s 185|0.9|Oh, that is wonderful! I am so happy, we finally did it!"
  "A|en-us|-p 35 -s 145|0.6|Actually, no. It failed again. I am really sorry."
  "B|en-us+f3|-p 60 -s 195|0.8|Failed again? This is ridiculous! I told you to check the settings!"
  "A|en-us|-p 30 -s 145|1.0|I know. I should have listened. I feel terrible."
  "B|en-us+f3|-p 50 -s 175|0.7|Okay. Let us look at the data tomorrow at nine."
  "A|en-us|-p 55 -s 180|0.8|Thank you, that would be great!"
  "B|en-us+f3|-p 75 -s 185|0|Don't worry, we will get it right next time!"
)

for tool in espeak-ng sox soxi; do
  command -v "$tool" >/dev/null || { echo "make_example.sh: $tool not found (apt install espeak-ng sox)" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"

silence() { # silence FILE CHANNELS SECONDS
  sox -R -D -n -r "$rate" -b 16 -c "$2" "$1" trim 0 "$3"
}

samples() { soxi -s "$1"; }

silence "$work/lead1.wav" 1 "$lead_s"
silence "$work/lead2.wav" 2 "$lead_s"
mono=("$work/lead1.wav")
stereo=("$work/lead2.wav")
pos=$(samples "$work/lead1.wav")   # running position, samples

printf 'speaker\tstart\tend\ttext\n' >"$work/dialogue.tsv"
: >"$work/dialogue.txt"
i=0
for turn in "${turns[@]}"; do
  IFS='|' read -r speaker voice opts pause text <<<"$turn"
  i=$((i + 1))
  # shellcheck disable=SC2086  # opts is a word list on purpose
  espeak-ng -v "$voice" $opts -w "$work/raw$i.wav" "$text"
  # Trim leading and trailing silence (espeak-ng pads with digital silence), resample, normalise.
  sox -R -D "$work/raw$i.wav" -r "$rate" -b 16 "$work/turn$i.wav" \
    silence 1 1 0.1% reverse silence 1 1 0.1% reverse gain -n -3
  n=$(samples "$work/turn$i.wav")
  if [[ $speaker == A ]]; then layout="1 0"; else layout="0 1"; fi
  # shellcheck disable=SC2086
  sox -R -D "$work/turn$i.wav" "$work/turn${i}s.wav" remix $layout
  mono+=("$work/turn$i.wav")
  stereo+=("$work/turn${i}s.wav")
  awk -v s="$speaker" -v a="$pos" -v n="$n" -v r="$rate" -v t="$text" \
    'BEGIN { printf "%s\t%.4f\t%.4f\t%s\n", s, a / r, (a + n) / r, t }' >>"$work/dialogue.tsv"
  printf '%s: %s\n' "$speaker" "$text" >>"$work/dialogue.txt"
  pos=$((pos + n))
  if [[ $pause != 0 ]]; then
    silence "$work/pause$i.wav" 1 "$pause"
    silence "$work/pause${i}s.wav" 2 "$pause"
    mono+=("$work/pause$i.wav")
    stereo+=("$work/pause${i}s.wav")
    pos=$((pos + $(samples "$work/pause$i.wav")))
  fi
done
silence "$work/tail1.wav" 1 "$tail_s"
silence "$work/tail2.wav" 2 "$tail_s"
mono+=("$work/tail1.wav")
stereo+=("$work/tail2.wav")

sox -R -D "${mono[@]}" "$out_dir/dialogue.wav"
sox -R -D "${stereo[@]}" "$out_dir/dialogue_stereo.flac"
cp "$work/dialogue.tsv" "$work/dialogue.txt" "$out_dir/"
echo "wrote $out_dir/dialogue.wav ($(soxi -d "$out_dir/dialogue.wav")), dialogue_stereo.flac, dialogue.tsv, dialogue.txt" >&2
