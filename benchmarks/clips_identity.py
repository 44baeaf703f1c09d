"""The same 256 calibration clips read from every source format give the same tensors (up to codec
error): frames list, videos list, a folder of videos, a folder of frame folders and the .npz
archive written from them.

    python benchmarks/clips_identity.py [--synth DIR] [--out benchmarks/results/clips_identity.json]

Also records decoding throughput per format and the shipped TSM's top-1 agreement between the
frames and video copies of the clips.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgefuse import clips
from edgefuse.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth", type=Path, default=Path("/tmp/edgefuse-bench-synth-both"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "clips_identity.json")
    ap.add_argument("--num-clips", type=int, default=256)
    args = ap.parse_args()
    if not (args.synth / "calib_videos.txt").is_file():
        subprocess.run([sys.executable, "-m", "edgefuse", "synth", "-o", str(args.synth), "--train", "0", "--val", "0",
                        "--calib", str(args.num_clips)], check=True)
    model = create_model("synth_tsm_r18w025", pretrained=True)
    pre, sampling = clips.Preprocess.from_model_config(model.config), clips.Sampling(num_segments=8)
    sources = {"frames list": args.synth / "calib.txt", "videos list": args.synth / "calib_videos.txt",
               "folder of videos": args.synth / "videos", "folder of frame folders": args.synth / "frames"}
    read: dict[str, tuple[torch.Tensor, list[str], float]] = {}
    for name, src in sources.items():
        t = time.perf_counter()
        cs = clips.open(src, pre, sampling, num_clips=args.num_clips, seed=0, workers=2)
        data, _, ids = cs.stack()
        read[name] = (data, [Path(i).stem for i in ids], time.perf_counter() - t)  # ids without folder / extension
        print(f"{name}: {len(ids)} clips in {read[name][2]:.1f} s")
    npz = args.synth.parent / "clips_identity.npz"
    clips.open(sources["frames list"], pre, sampling, num_clips=args.num_clips, seed=0, workers=2).to_npz(npz)
    data, _, ids = clips.open(npz, pre, sampling).stack()
    read["npz"] = (data, [Path(i).stem for i in ids], 0.0)
    ref, ref_ids, _ = read["frames list"]
    by_id = {i: k for k, i in enumerate(ref_ids)}
    rows = []
    for name, (data, ids, seconds) in read.items():
        order = [by_id[i] for i in ids if i in by_id]
        common = [k for k, i in enumerate(ids) if i in by_id]
        diff = (data[common] - ref[order]).abs()  # (n, T, 3, H, W) normalised units
        rows.append({"source": name, "clips": len(ids), "common_with_frames": len(common),
                     "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
                     "clips_per_s": round(len(ids) / seconds, 1) if seconds else None})
    with torch.no_grad():
        a = torch.cat([model(ref[i:i + 32]) for i in range(0, len(ref), 32)]).argmax(1)
        vids, vid_ids, _ = read["videos list"]
        b = torch.cat([model(vids[i:i + 32]) for i in range(0, len(vids), 32)]).argmax(1)
    agree = float(np.mean([a[by_id[i]] == b[k] for k, i in enumerate(vid_ids)]))
    result = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "rows": rows,
              "tsm_top1_agreement_frames_vs_videos": agree}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| source | clips | same ids as frames | max abs diff | mean abs diff | clips/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['source']} | {r['clips']} | {r['common_with_frames']} | {r['max_abs']:.4f} | {r['mean_abs']:.5f} | "
              f"{r['clips_per_s']} |")
    print(f"TSM top-1 agreement, frames vs videos: {100 * agree:.1f}%")


if __name__ == "__main__":
    main()
