"""Train the fixed Fashion-MNIST classifier behind srl's Fashion-MNIST Fréchet distance
and write its weights to srl/data/fashion_classifier.npz (srl.fashion_frechet).

    python scripts/train_fashion_classifier.py            # needs dataset-fashion-mnist
    python scripts/train_fashion_classifier.py --check    # retrain and compare with the shipped weights

Training is deterministic (NumPy, float64, one seeded generator): on the same NumPy/BLAS
build the fingerprint printed here equals ``srl.fashion_frechet.FASHION_FINGERPRINT``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=None, help="directory of the Fashion-MNIST idx files (default: Debian's)")
    ap.add_argument("--check", action="store_true", help="compare with the shipped weights instead of writing")
    a = ap.parse_args(argv)
    from srl import data
    from srl.fashion_frechet import WEIGHTS_FILE, FashionClassifier, fashion_classifier

    ds = data.load("fashion-mnist", root=a.root)
    t = time.process_time()
    clf = FashionClassifier().fit(ds.train, ds.train_labels)
    print(f"trained in {time.process_time() - t:.0f} s of CPU; config {clf.config}")
    print(f"held-out accuracy {clf.accuracy(ds.test, ds.test_labels):.4f} on {ds.test.shape[0]} test images")
    print(f"fingerprint {clf.fingerprint()}")
    if a.check:
        same = clf.fingerprint() == fashion_classifier().fingerprint()
        print("matches the shipped weights" if same else "DIFFERS from the shipped weights")
        return 0 if same else 1
    out = ROOT / "srl" / "data" / WEIGHTS_FILE
    clf.save(out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
