"""config.toml documents the built-in defaults; files and flags override them."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.config import PROJECT_CONFIG, Settings, load_settings
from streamer.errors import UserError


def test_config_toml_equals_the_built_in_defaults():
    assert load_settings(PROJECT_CONFIG) == Settings()


def test_file_and_flag_overrides(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text("[vad]\naggressiveness = 1\n[asr.decoding]\nbeam_size = 4\n")
    settings = load_settings(path).updated({"vad": {"hangover_ms": 300}, "asr": {"model": None}})
    assert settings.vad.aggressiveness == 1 and settings.vad.hangover_ms == 300
    assert settings.asr.decoding.beam_size == 4 and settings.asr.model is None
    assert settings.to_dict()["vad"]["aggressiveness"] == 1


@pytest.mark.parametrize("text, message", [
    ("[vad]\nloudness = 3\n", "unknown setting 'vad.loudness'"),
    ("[vad]\naggressiveness = 7\n", "aggressiveness"),
    ("[vad\n", "not valid TOML"),
    ("[asr.decoding]\nstyle_prompt = 3\n", "style_prompt must be a string"),
    ("[asr.decoding]\nlead_in_s = 5\n", "lead_in_s must be between 0 and 2"),
    (f"[asr.decoding]\nstyle_prompt = '{'Wow! ' * 41}'\n", "style_prompt must be at most 200 characters"),
])
def test_bad_config_is_a_user_error(tmp_path: Path, text: str, message: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_settings(path)
