"""Robustness: odd, malformed and hostile input is a clear error or a clean result, never a crash.

Files (a generated corpus and hypothesis-mutated WAV headers), settings from config files,
checkpoints, and the command line with bad values. Signals and a vanished reader or audio
server are in tests/test_signals.py and tests/test_microphone.py.
"""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from models.predictor import EmotionPredictor
from streamer.config import Settings, load_settings
from streamer.errors import UserError
from streamer.records import SAMPLE_RATE
from streamer.sources import open_file
from tests.conftest import EMOSTREAM, EXAMPLES, ROOT, cli_env

# --- files --------------------------------------------------------------------------------------


def wav(tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16, data: bytes = b"",
        size: int | None = None) -> bytes:
    """A RIFF/WAVE file with exactly the header fields given (nothing is checked or fixed)."""
    block = channels * max(1, bits // 8)
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block & 0xFFFFFFFF, block, bits)
    size = len(data) if size is None else size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body) & 0xFFFFFFFF) + body


TONE = (np.sin(np.arange(16000) * 0.1) * 8000).astype("<i2").tobytes()  # 1 s at 16 kHz, 16-bit


def float_wav(samples: Any) -> bytes:
    return wav(tag=3, bits=32, data=np.asarray(samples, "<f4").tobytes())


# case -> (file content, "error: <phrase>" or "ok" + the phrase a warning must contain, or "")
FILES: dict[str, tuple[bytes, str]] = {
    "unknown format tag 0x1234": (wav(tag=0x1234, data=TONE), "error: WAV format tag 0x1234"),
    "rate 1 Hz (35 h of audio)": (wav(rate=1, data=TONE * 8), "error: the header says 1 Hz"),
    "rate 100 Hz": (wav(rate=100, data=TONE), "error: the header says 100 Hz"),
    "rate 2e9 Hz": (wav(rate=2_000_000_000, data=TONE), "error: the header says 2000000000 Hz"),
    "0 channels": (wav(channels=0, data=TONE), "error: without a sample rate or channels"),
    "0 samples": (wav(data=b""), "error: no audio could be decoded"),
    "header only, data size claims 1 s": (wav(data=b"", size=32000), "error: no audio could be decoded"),
    "7-bit samples": (wav(bits=7, data=TONE), "ok: 7 bits per sample"),
    "NaN samples": (float_wav([np.nan] * 16000), "ok: not finite"),
    "inf samples": (float_wav(np.r_[np.zeros(8000), [np.inf] * 8000]), "ok: not finite"),
    "samples at 1e30": (float_wav(np.full(16000, 1e30)), "ok: beyond full scale"),
    "3 channels": (wav(channels=3, data=TONE * 3), "ok: 3 channels"),
    "data size 4 GB": (wav(data=TONE, size=0xFFFFFFF0), "ok: truncated"),
    "odd byte count": (wav(data=TONE[:-1]), "ok: "),
    "8 kHz": (wav(rate=8000, data=TONE), "ok: "),
    "PNG named .wav": (b"\x89PNG\r\n\x1a\n" + bytes(200), "error: not an audio file"),
    "RIFF header only": (b"RIFF\x04\x00\x00\x00WAVE", "error: "),
    "zeros": (bytes(4096), "error: "),
}


def read_all(path: Path) -> np.ndarray:
    """Decode a file through the source: float32 [n, channels] at 16 kHz, blocks checked."""
    blocks = list(open_file(path).blocks())
    for before, after in zip(blocks, blocks[1:]):
        assert after.start == pytest.approx(before.start + before.duration, abs=1e-9)
    return np.concatenate([b.samples for b in blocks]) if blocks else np.zeros((0, 1), np.float32)


@pytest.mark.parametrize("case", FILES)
def test_odd_files(case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    content, expected = FILES[case]
    path = tmp_path / "odd.wav"
    path.write_bytes(content)
    outcome, phrase = expected.split(": ", 1)
    with caplog.at_level(logging.WARNING, logger="streamer.sources"):
        if outcome == "error":
            with pytest.raises(UserError, match=phrase or None) as err:
                open_file(path)  # before a session starts: no output may have been written yet
            assert "\n" not in str(err.value)
            return
        audio = read_all(path)
    assert audio.dtype == np.float32 and len(audio) > 0
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert phrase in caplog.text


def test_non_finite_samples_become_silence(tmp_path: Path) -> None:
    """inf must not become an (invented) utterance: the repaired half is digital silence."""
    path = tmp_path / "inf.wav"
    path.write_bytes(float_wav(np.r_[np.full(8000, 0.25), [np.inf] * 8000]))
    audio = read_all(path)[:, 0]
    assert np.all(audio[8100:] == 0.0) and np.abs(audio[:7900]).max() == pytest.approx(0.25, abs=1e-3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tag=st.sampled_from([0, 1, 2, 3, 6, 7, 0x11, 0x55, 0xFFFE, 0x1234]),
    channels=st.integers(0, 70),
    rate=st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([8000, 16000, 44100, 48000])),
    bits=st.integers(0, 70),
    size=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    cut=st.integers(0, 200),
)
def test_mutated_wav_headers(tmp_path: Path, tag: int, channels: int, rate: int, bits: int,
                             size: int | None, cut: int) -> None:
    """Any header on 1 s of data, cut anywhere in its first bytes: a UserError, or finite blocks
    of bounded length (the decoded audio can never outgrow what the file holds by much)."""
    content = wav(tag, channels, rate, bits, TONE, size)
    path = tmp_path / "mutated.wav"
    path.write_bytes(content[: len(content) - cut])
    try:
        audio = read_all(path)
    except UserError as err:
        assert str(err) and "\n" not in str(err)
        return
    # Clipped to full scale before resampling; the 16 kHz resampler may overshoot a little.
    assert np.isfinite(audio).all() and np.abs(audio).max(initial=0.0) <= 2.0
    # A file of ~32 kB read at >= 4 kHz: at most a few seconds, whatever the header says.
    assert len(audio) <= 40 * SAMPLE_RATE


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=4096))
def test_random_bytes(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "garbage.mp3"
    path.write_bytes(garbage)
    try:
        read_all(path)
    except UserError:
        pass


# --- settings -----------------------------------------------------------------------------------

# Config files from the issue: every one a UserError naming the setting.
BAD_CONFIGS = {
    '[input]\nblock_s = "fast"\n': "input.block_s",
    "[input]\nblock_s = 0\n": "input.block_s",
    "[input]\nblock_s = -0.1\n": "input.block_s",
    "[context]\nmax_utterances = 0\n": "context.max_utterances",
    "[context]\nmax_utterances = -1\n": "context.max_utterances",
    "[context]\nmax_seconds = -1\n": "context.max_seconds",
    "[asr.decoding]\nbeam_size = 0\n": "asr.decoding.beam_size",
    "[asr.decoding]\nmax_tokens = 0\n": "asr.decoding.max_tokens",
    '[asr.decoding]\nno_speech_threshold = "high"\n': "asr.decoding.no_speech_threshold",
    '[asr.decoding]\nlogprob_threshold = "-1"\n': "asr.decoding.logprob_threshold",
    "[vad]\nframe_ms = 30.0\n": "vad.frame_ms",
    "[input]\nspeed = inf\n": "input.speed",
    "[input]\nmax_seconds = nan\n": "input.max_seconds",
    '[input]\nfast = "yes"\n': "input.fast",
    "[input]\nchannels = 3\n": "input.channels",
    "[input]\nqueue_blocks = 0\n": "input.queue_blocks",
    '[asr]\ndevice = "gpu"\n': "asr.device",
    '[asr]\ncompute_type = "int4"\n': "asr.compute_type",
    '[model]\ndevice = "tpu"\n': "model.device",
    '[model]\nmodalities = "video"\n': "model.modalities",
    '[speakers]\nmode = "many"\n': "speakers.mode",
    "[speakers]\nnew_speaker_distance = -2\n": "speakers.new_speaker_distance",
    "[vad]\naggresiveness = 1\n": "did you mean 'vad.aggressiveness'",
    "input = 3\n": "section",
}


@pytest.mark.parametrize("text", BAD_CONFIGS)
def test_bad_config_values(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=BAD_CONFIGS[text].replace(".", r"\.")):
        load_settings(path)


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["", "auto", "cpu", "cuda", "0", "both", "voice", "int8"]),
)
def setting_paths(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """("input", "block_s"), ("asr", "decoding", "beam_size"), ...: every leaf setting."""
    paths = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        paths += setting_paths(value, (*prefix, f.name)) if hasattr(value, "__dataclass_fields__") else [(*prefix, f.name)]
    return paths


def value_at(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(setting_paths(Settings())), value=SCALARS)
def test_any_value_of_any_setting(path: tuple[str, ...], value: Any) -> None:
    """Every setting with any scalar: a UserError, or settings whose value has the default's type."""
    update: Any = value
    for name in reversed(path):
        update = {name: update}
    try:
        result = Settings().updated(update)
    except UserError as err:
        assert "\n" not in str(err)
        return
    got, default = value_at(result, path), value_at(Settings(), path)
    if got is not None and default is not None:
        assert isinstance(got, (int, float)) if isinstance(default, float) else type(got) is type(default)
        assert not isinstance(got, float) or np.isfinite(got)


# --- checkpoints --------------------------------------------------------------------------------


def damaged(tmp_path: Path, change) -> Path:
    """The shipped checkpoint's payload with ``change(payload)`` applied, saved without a sidecar."""
    payload = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    change(payload)
    path = tmp_path / "damaged.pt"
    torch.save(payload, path)
    return path


def first_weight(payload: dict) -> str:
    return next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.ndim == 2)


CHECKPOINTS = {
    "wrong tensor shape": (lambda p: p["state_dict"].__setitem__(first_weight(p), torch.zeros(3, 5)), "is \\[3, 5\\]"),
    "missing weight": (lambda p: p["state_dict"].pop(first_weight(p)), "is missing"),
    "extra weight": (lambda p: p["state_dict"].__setitem__("extra.weight", torch.zeros(2)), "not part of the network"),
    "no network": (lambda p: p.pop("network"), "no 'network'"),
    "network not a dict": (lambda p: p.__setitem__("network", "mcaf"), "'network' is not a dict"),
    "bad network config": (lambda p: p["network"].__setitem__("d_model", -4), "network"),
    "empty labels": (lambda p: p.__setitem__("labels", []), "labels"),
    "duplicate labels": (lambda p: p.__setitem__("labels", ["sad", "sad", "happy", "angry"]), "labels"),
    "one label too many": (lambda p: p.__setitem__("labels", [*p["labels"], "bored"]),
                           r"has \d+ labels for a network of \d+ classes"),
    "NaN weights": (lambda p: p["state_dict"][first_weight(p)].fill_(float("nan")), "NaN"),
    "zero audio_std": (lambda p: p["audio_std"].zero_(), "audio_std"),
    "audio_std of another length": (lambda p: p.__setitem__("audio_std", torch.ones(3)), "audio_std"),
    "weights not tensors": (lambda p: p["state_dict"].__setitem__(first_weight(p), [1.0, 2.0]), "not a tensor"),
}


@pytest.mark.parametrize("case", CHECKPOINTS)
def test_damaged_checkpoints_are_refused_at_load(tmp_path: Path, case: str) -> None:
    change, phrase = CHECKPOINTS[case]
    path = damaged(tmp_path, change)
    with pytest.raises(UserError, match=phrase) as err:
        EmotionPredictor(path, device="cpu")
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.audio_server
def test_listen_whose_checkpoint_fails_to_load_writes_no_session(
    audio_server: dict[str, str], portaudio: None, tmp_path: Path
) -> None:
    """listen opens the input first and loads the models in the background; a checkpoint damaged
    inside (found only when it loads) is one error line, exit 2, and no session/summary pair."""
    path = damaged(tmp_path, lambda p: p["state_dict"][first_weight(p)].fill_(float("nan")))
    proc = subprocess.run(
        [*EMOSTREAM, "listen", "--json", "--no-display", "--max-seconds", "60", "--checkpoint", str(path)],
        capture_output=True, text=True, timeout=180, env=cli_env(),
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("emostream: error:")]
    assert len(errors) == 1 and "NaN" in errors[0], proc.stderr


def test_intact_copy_of_the_checkpoint_loads(tmp_path: Path) -> None:
    """The damage above is what is refused: the same payload unchanged loads and predicts."""
    predictor = EmotionPredictor(damaged(tmp_path, lambda p: None), device="cpu")
    assert predictor.labels == load_checkpoint()[0].label_set.labels


def test_cuda_on_a_machine_without_it_says_so() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="cuda"):
        EmotionPredictor(None, device="cuda")


# --- the command line ---------------------------------------------------------------------------

MONO = EXAMPLES / "dialogue.wav"

# Each must answer with one line and exit code 2 before any model loads.
FLAG_CASES = {
    "--context 0": ["replay", MONO, "--context", "0"],
    "--context -3": ["replay", MONO, "--context", "-3"],
    "--max-seconds nan": ["replay", MONO, "--max-seconds", "nan"],
    "--max-seconds -1": ["replay", MONO, "--max-seconds", "-1"],
    "--speed inf": ["replay", MONO, "--speed", "inf"],
    "--speed 0": ["replay", MONO, "--speed", "0"],
    "--config DIR": ["replay", MONO, "--config", ROOT / "streamer"],
    "--model-device tpu": ["replay", MONO, "--model-device", "tpu"],
    "--model-device gpu": ["replay", MONO, "--model-device", "gpu"],
    "--asr-device gpu": ["replay", MONO, "--asr-device", "gpu"],
    "--compute-type int4": ["replay", MONO, "--compute-type", "int4"],
    "--plot DIR": ["replay", MONO, "--plot", ROOT / "streamer"],
    "--plot no suffix": ["replay", MONO, "--plot", ROOT / "runs" / "chart"],
    "--fsat (misspelt)": ["replay", MONO, "--fsat"],
    "unknown command": ["replya", MONO],
    "evaluate --context -1": ["evaluate", "--dataset", "iemocap-text", "--data", MONO, "--context", "-1"],
    "evaluate --context 0": ["evaluate", "--dataset", "iemocap-text", "--data", MONO, "--context", "0"],
    "evaluate --device tpu": ["evaluate", "--dataset", "iemocap-text", "--data", MONO, "--device", "tpu"],
    "train --set optim.epochs=abc": ["train", "--config", ROOT / "models/configs/default.toml", "--out",
                                     ROOT / "runs/never.pt", "--set", "optim.epochs=abc"],
    "train unwritable --out": ["train", "--config", ROOT / "models/configs/default.toml", "--out", ROOT / "README.md/x.pt"],
    "tune-text --set tune_layers=0": ["tune-text", "--config", ROOT / "models/configs/text_encoder.toml", "--out",
                                      ROOT / "runs/never.safetensors", "--set", "tune_layers=0"],
    "tune-text --out .pt": ["tune-text", "--config", ROOT / "models/configs/text_encoder.toml", "--out", ROOT / "runs/x.pt"],
    "--threads 0": ["--threads", "0", "replay", MONO],
}
if not torch.cuda.is_available():
    FLAG_CASES["--model-device cuda without CUDA"] = ["replay", MONO, "--model-device", "cuda"]
    FLAG_CASES["--asr-device cuda without CUDA"] = ["replay", MONO, "--asr-device", "cuda"]

# Runs main() and reports which heavy modules it imported: bad values must be answered before.
PROBE = """
import sys, time
from streamer.cli import main
started = time.perf_counter()
try:
    rc = main(sys.argv[1:])
except SystemExit as exit:  # --help, --version
    rc = exit.code or 0
heavy = sorted(m for m in ("torch", "faster_whisper", "transformers") if m in sys.modules)
print(f"rc={rc} heavy={','.join(heavy)} seconds={time.perf_counter() - started:.2f}", file=sys.stderr)
sys.exit(rc)
"""


def run_probe(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], cwd=ROOT, env=cli_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", FLAG_CASES)
def test_bad_flags_answer_before_any_model_loads(case: str) -> None:
    done = run_probe(*FLAG_CASES[case])
    *message, probe = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(message) == 1 and message[0].startswith("emostream: error: "), done.stderr
    # Nothing heavy is imported (train's config lives in the torch-free models.training_config).
    assert "heavy= " in probe + " ", probe
    assert done.stdout == ""


@pytest.mark.parametrize("args", [["--help"], ["replay", "--help"], ["--version"], [],
                                  ["replay", MONO, "--print-config"], ["listen", "--print-config", "--device", ""]])
def test_quick_answers_import_no_model_code(args: list[Any]) -> None:
    started = time.perf_counter()
    done = run_probe(*args)
    assert done.returncode == 0, done.stderr
    assert "heavy= " in done.stderr.splitlines()[-1] + " ", done.stderr
    assert "``" not in done.stdout  # plain help text, no reStructuredText markup
    assert time.perf_counter() - started < 30  # generous: the real figure is ~0.3 s, see the probe line


def test_did_you_mean(tmp_path: Path) -> None:
    option = run_probe("replay", MONO, "--fsat")
    assert "did you mean --fast?" in option.stderr
    config = tmp_path / "typo.toml"
    config.write_text("[vad]\naggresiveness = 1\n")
    key = run_probe("replay", MONO, "--config", config)
    assert "did you mean 'vad.aggressiveness'?" in key.stderr


def test_bare_command_prints_the_help() -> None:
    done = run_probe()
    assert done.returncode == 0 and "usage: emostream" in done.stdout and "replay" in done.stdout


def test_version() -> None:
    done = subprocess.run([sys.executable, "-m", "streamer.cli", "--version"], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("emostream ")


def test_empty_device_flag_means_unset() -> None:
    done = run_probe("listen", "--device", "", "--print-config")
    assert done.returncode == 0, done.stderr
    assert '"device": null' in done.stdout


def test_every_option_has_help_and_every_command_a_description() -> None:
    from streamer.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.choices and isinstance(a.choices, dict)]
    missing = [f"{name} {', '.join(a.option_strings) or a.dest}"
               for name, sub in [("emostream", parser), *commands.choices.items()]
               for a in sub._actions if not a.help and a.dest != "help"]
    assert missing == []
    assert all(sub.description for sub in commands.choices.values())
    assert "``" not in parser.format_help() + "".join(s.format_help() for s in commands.choices.values())


def test_list_devices_when_there_are_none(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """PortAudio loads but reports no input device: a message and exit code 2, not silence and 0."""
    import streamer.devices
    from streamer.cli import main

    monkeypatch.setattr(streamer.devices, "list_input_devices", lambda: [])
    assert main(["listen", "--list-devices"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("emostream: error: PortAudio sees no audio input device")


def test_main_in_process_leaves_signal_handling_as_it_was() -> None:
    import signal

    from streamer.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert main(["replay", str(MONO), "--context", "0"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before
