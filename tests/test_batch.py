"""``emostream batch``: inputs and manifests, outputs equal to replay's events, resume, bad files, Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamer.api import Recognizer
from streamer.batch import INDEX_NAME, collect_inputs, output_names, read_manifest, run_batch
from streamer.config import load_settings
from streamer.errors import UserError
from streamer.records import SAMPLE_RATE

from .conftest import EXAMPLES, run_emostream, start_emostream, write_audio


def without_latency(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "latency_ms"}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- inputs (no models) --------------------------------------------------------------------------


def test_folders_and_manifests(tmp_path: Path) -> None:
    for name in ("a/one.wav", "a/b/two.flac", "a/notes.txt.bak", "three.mp3"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.csv").write_text("path,label\nthree.mp3,x\na/one.wav,y\n")
    (tmp_path / "list.jsonl").write_text(json.dumps({"path": str(tmp_path / "three.mp3")}) + "\n\n")
    (tmp_path / "list.txt").write_text("# recordings\na/b/two.flac\n")
    found = collect_inputs([tmp_path / "a", tmp_path / "list.csv", tmp_path / "list.jsonl", tmp_path / "list.txt"])
    assert found == [tmp_path / "a/b/two.flac", tmp_path / "a/one.wav", tmp_path / "three.mp3"]


def test_bad_manifests_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "no_path.csv").write_text("file\nx.wav\n")
    (tmp_path / "no_path.jsonl").write_text('{"file": "x.wav"}\n')
    with pytest.raises(UserError, match="'path' column"):
        read_manifest(tmp_path / "no_path.csv")
    with pytest.raises(UserError, match='needs a "path"'):
        read_manifest(tmp_path / "no_path.jsonl")
    with pytest.raises(UserError, match="manifest not found"):
        read_manifest(tmp_path / "missing.txt")


def test_output_names_are_unique() -> None:
    names = output_names([Path("x/a.wav"), Path("y/a.wav"), Path("b.flac")])
    assert names[Path("b.flac")] == "b.jsonl"
    assert len(set(names.values())) == 3 and all(n.startswith("a-") for p, n in names.items() if p.stem == "a")


@pytest.mark.parametrize("make_input, message", [
    (lambda tmp: tmp / "no-such-folder", "input not found"),
    (lambda tmp: tmp, "no audio files"),
])
def test_nothing_to_do_is_an_error(tmp_path: Path, make_input, message: str) -> None:
    done = run_emostream("batch", make_input(tmp_path), "--out", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip().splitlines()[0]]
    assert done.stderr.startswith(f"emostream: error: {message}")


# --- the work -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The example dialogue, its first 9 s as FLAC, a file that is not audio and one a manifest
    lists but that does not exist."""
    folder = tmp_path_factory.mktemp("recordings")
    from streamer.sources import open_file

    audio = np.concatenate([b.samples for b in open_file(EXAMPLES / "dialogue.wav").blocks()])  # [n, 1]
    write_audio(folder / "short.flac", audio[: 9 * SAMPLE_RATE], SAMPLE_RATE, "flac")
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt nothing here")
    (folder / "more.txt").write_text("missing.wav\n")  # a manifest
    return [EXAMPLES / "dialogue.wav", folder / "short.flac", folder / "broken.wav", folder / "missing.wav"]


@pytest.fixture(scope="module")
def first_run(recordings: list[Path], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("batch")
    return out, run_batch([*recordings[:3], recordings[3].with_name("more.txt")], out, load_settings(), workers=2)


@pytest.mark.slow
def test_batch_writes_replays_events_and_an_index(first_run, recordings: list[Path], recognizer: Recognizer) -> None:
    out, report = first_run
    assert (report.done, report.skipped, report.failed) == (2, 0, 2)
    index = {row["input"]: row for row in lines(out / INDEX_NAME)}
    assert [index[str(p)]["status"] for p in recordings] == ["done", "done", "failed", "failed"]
    assert "not found" in index[str(recordings[3])]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["dialogue.jsonl", INDEX_NAME, "short.jsonl"]
    for path in recordings[:2]:
        records = lines(out / index[str(path)]["output"])
        assert [r["type"] for r in records[:1] + records[-1:]] == ["session", "summary"]
        assert records[0]["settings"]["partials"]["every_s"] == 0
        expected = [without_latency(e.to_dict()) for e in recognizer.replay(path)]
        assert [without_latency(r) for r in records[1:-1]] == expected
        assert index[str(path)]["utterances"] == len(expected) > 0


@pytest.mark.slow
def test_a_second_run_resumes(first_run, recordings: list[Path]) -> None:
    out, _ = first_run
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.jsonl") if p.name != INDEX_NAME}
    report = run_batch(recordings[:2], out, load_settings(), workers=2)
    assert (report.done, report.skipped, report.failed) == (0, 2, 0)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.jsonl") if p.name != INDEX_NAME} == finished
    assert [row["status"] for row in lines(out / INDEX_NAME)] == ["skipped", "skipped"]
    assert lines(out / INDEX_NAME)[0]["utterances"] == 8


@pytest.mark.slow
def test_ray_gives_the_same_events(first_run, recordings: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")
    out, _ = first_run
    # In a subprocess: the local Ray's head processes are the command's, ended when it exits.
    done = run_emostream("batch", *recordings[:2], "--out", tmp_path, "--workers", "2", "--ray", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [row["status"] for row in lines(tmp_path / INDEX_NAME)] == ["done", "done"]
    for name in ("dialogue.jsonl", "short.jsonl"):
        ours = [without_latency(r) for r in lines(tmp_path / name)]
        assert ours == [without_latency(r) for r in lines(out / name)]


@pytest.mark.slow
def test_ctrl_c_stops_at_once(recordings: list[Path], tmp_path: Path) -> None:
    """Ctrl-C while the workers load or score: exit 130 within seconds, no traceback, and no
    half-written output (what is unfinished is done by the next run)."""
    import signal
    import time

    batch = start_emostream("batch", *recordings[:2], "--out", tmp_path, "--workers", "2")
    for line in batch.stderr:
        if "worker process(es)" in line:
            break
    time.sleep(2)
    batch.send_signal(signal.SIGINT)
    started = time.monotonic()
    code = batch.wait(timeout=60)
    stderr = batch.stderr.read()
    assert code == 130 and time.monotonic() - started < 20
    assert "Traceback" not in stderr and "emostream: interrupted" in stderr
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
