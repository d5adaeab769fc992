"""Bad command-line input: exit status 2, one line naming the option or file, no traceback."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from srl import checkpoint
from srl.cli import main

from .test_rundir import TINY_ARGS

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY_ARGS, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Damaged inputs: data files, weights, checkpoints, a regular file to write under."""
    d = tmp_path_factory.mktemp("bad")
    Image = pytest.importorskip("PIL.Image")
    (d / "images").mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8), mode="L").save(d / "images" / f"{i}.png")
    (d / "images" / "empty.png").write_bytes(b"")
    (d / "cifar" / "cifar-10-batches-py").mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / "cifar" / "cifar-10-batches-py" / name).write_bytes(
            pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}))
    (d / "cifar" / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x02garbage")
    (d / "svhn").mkdir()
    (d / "svhn" / "train_32x32.mat").write_bytes(b"garbage")
    (d / "svhn" / "test_32x32.mat").write_bytes(b"garbage")
    (d / "weights.pth").write_bytes(b"garbage")
    (d / "regular").write_text("a file")
    (d / "noconfig").mkdir()
    checkpoint.save(d / "noconfig" / "checkpoint.npz", params={"w": np.zeros(2)}, adam={"t": 0, "m": {}, "v": {}},
                    meta={"iteration": 1})
    return d


# (arguments, text that must appear in the error); {run} and {d} are filled in
CASES = [
    (["train", "--hidden", "0"], "--hidden"),
    (["train", "--model", "conv", "--channels", "0"], "--channels"),
    (["train", "--latent-dims", ""], "--latent-dims"),
    (["train", "--latent-dims", "a,b"], "--latent-dims"),
    (["train", "--lr", "-1e-3"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--step-lr", "-0.05"], "--step-lr"),
    (["train", "--step-lr", "inf"], "--step-lr"),
    (["train", "--beta1", "1.5"], "--beta1"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--sigma", "0"], "--sigma"),
    (["train", "--sigma", "1e-200"], "--sigma"),
    (["train", "--step-size", "-0.1"], "--step-size"),
    (["train", "--step-size", "x"], "--step-size"),
    (["train", "--step-size", "0.1,0.2", "--tied"], "--tied"),
    (["train", "--cuda-graphs"], "--cuda-graphs"),
    (["train", "--eval-n-codes", "-1"], "--eval-n-codes"),
    (["train", "--backend", "torch", "--cuda-graphs"], "--device cuda"),
    (["train", "--step-keep-activations", "--step-objective", "jacobian"], "--step-objective reverse"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--batch-size", "5000"], "--batch-size"),
    (["train", "--n-steps", "-1"], "--n-steps"),
    (["train", "--step-iterations", "-1"], "--step-iterations"),
    (["train", "--limit", "0"], "--limit"),
    (["train", "--checkpoint-every", "0"], "--checkpoint-every"),
    (["train", "--eval-n-bound", "0"], "--eval-n-bound"),
    (["train", "--model", "paper", "--hidden", "8"], "--hidden"),
    (["train", "--data", "nonsense"], "nonsense"),
    (["train", "--data", "{d}/images"], "empty.png"),
    (["train", "--data", "cifar10", "--root", "{d}/cifar"], "data_batch_2"),
    (["train", "--data", "svhn", "--root", "{d}/svhn"], "train_32x32.mat"),
    (["train", "--out", "{d}/regular/run"], "{d}/regular/run"),
    (["train", "--resume", "--out", "{d}/nothing-here"], "--resume"),
    (["train", "--resume", "--overwrite"], "--overwrite"),
    (["train", "--out", ""], "--out"),
    (["train", "--out", "{run}"], "--resume"),
    (["sample", "{run}", "-n", "0"], "-n"),
    (["sample", "{run}", "-o", "{d}/regular/x.png"], "{d}/regular/x.png"),
    (["sample", "{run}", "--seed", "-2"], "--seed"),
    (["sample", "{d}/noconfig"], "'config'"),
    (["sample", "{d}/nowhere"], "{d}/nowhere"),
    (["sample", "{run}", "--from", "posterior"], "--from"),
    (["sample", "{run}", "--from", "codes", "--n-codes", "0"], "--n-codes"),
    (["sample", "{run}", "--from", "codes", "--n-codes", "1"], "--n-codes"),
    (["train", "--eval-n-codes", "1"], "--eval-n-codes"),
    (["eval", "{run}", "--n-codes", "1"], "--n-codes"),
    (["reconstruct", "{run}", "-n", "0"], "-n"),
    (["reconstruct", "{run}", "-n", "-1"], "-n"),
    (["reconstruct", "{run}", "-o", "{d}/regular/r.png"], "{d}/regular/r.png"),
    (["eval", "{run}", "--n-bound", "0"], "--n-bound"),
    (["eval", "{run}", "--n-bound", "-5"], "--n-bound"),
    (["eval", "{run}", "--iw-chains", "0"], "--iw-chains"),
    (["eval", "{run}", "--backend", "nonsense"], "nonsense"),
    (["eval", "{d}/noconfig"], "'config'"),
    (["eval", "{run}", "--n-codes", "-1"], "--n-codes"),
]


@pytest.mark.parametrize("args, named", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_exits_2_with_one_line_naming_it(run_dir, files, capsys, args, named):
    fill = {"run": str(run_dir), "d": str(files)}
    args = [a.format(**fill) for a in args]
    if args[0] == "train" and "--out" not in args:
        args += ["--out", str(files / "out-never-written")]
    code = None
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    assert "Traceback" not in out + err
    assert named.format(**fill) in err, err
    message = [line for line in err.splitlines() if "error" in line]
    assert len(message) == 1, err


def test_garbage_fid_weights_file(files, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "rgb"
    Image = pytest.importorskip("PIL.Image")
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), mode="RGB").save(tmp_path / "img" / f"{i}.png")
    assert main(["train", "--data", str(tmp_path / "img"), *TINY_ARGS[2:], "--batch-size", "5", "--out",
                 str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--fid-weights", str(files / "weights.pth")]) == 2
    err = capsys.readouterr().err
    assert f"FID weights file {files / 'weights.pth'} is not a readable torch weights file" in err
    assert "Traceback" not in err


def test_sample_prints_the_path_it_wrote(run_dir, tmp_path, capsys):
    assert main(["sample", str(run_dir), "-n", "4", "-o", str(tmp_path / "name")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'name.png'}"
    assert (tmp_path / "name.png").exists() and not (tmp_path / "name").exists()


def test_samples_from_the_codes_gaussian(run_dir, tmp_path, capsys):
    """``--from codes`` draws other latents than the prior; ``srl eval`` reports the Fréchet
    distance of both."""
    Image = pytest.importorskip("PIL.Image")
    assert main(["sample", str(run_dir), "-n", "4", "-o", str(tmp_path / "codes.png"), "--from", "codes",
                 "--n-codes", "40"]) == 0
    assert main(["sample", str(run_dir), "-n", "4", "-o", str(tmp_path / "prior.png")]) == 0
    a, b = (np.asarray(Image.open(tmp_path / f)) for f in ("codes.png", "prior.png"))
    assert a.shape == b.shape and not np.array_equal(a, b)
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--n-bound", "3", "--iw-chains", "2", "--n-codes", "40", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_codes"] == 40 and np.isfinite(metrics["frechet_digits_codes"])
    assert metrics["frechet_digits_codes"] != metrics["frechet_digits"]


def test_eval_json_output_is_unaffected_by_validation(run_dir, capsys):
    assert main(["eval", str(run_dir), "--n-bound", "3", "--iw-chains", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_bound"] == 3


def test_a_vae_run_samples_from_its_posterior_samples_gaussian(tmp_path, capsys):
    """``srl sample --from codes`` on a VAE run fits the Gaussian of the encoder's posterior
    samples (``fit_vae_codes``), not of short-run chains: the written grid is that sample's."""
    Image = pytest.importorskip("PIL.Image")
    from srl import viz
    from srl.evaluate import fit_vae_codes, sample
    from srl.train import load_data, load_run, split_run_params

    out = tmp_path / "vae"
    assert main(["train", *TINY_ARGS, "--method", "vae", "--out", str(out)]) == 0
    assert main(["sample", str(out), "-n", "4", "--from", "codes", "--n-codes", "30", "-o", str(tmp_path / "c.png")]) == 0
    gen, params, _, cfg = load_run(out)
    gen_p, enc, enc_p = split_run_params(cfg, gen, params)
    codes = fit_vae_codes(gen, enc, gen_p, enc_p, load_data(cfg).train[:30], seed=[0, 7])
    viz.save_grid(tmp_path / "want.png", sample(gen, gen_p, 4, seed=0, codes=codes),
                  title=f"samples g(z), z from the Gaussian of {codes.n} training codes")
    got, want = (np.asarray(Image.open(tmp_path / f)) for f in ("c.png", "want.png"))
    np.testing.assert_array_equal(got, want)


def test_train_names_the_files_it_wrote(tmp_path, capsys):
    """The closing line lists the run directory's files as they are, not a fixed list."""
    out = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--out", str(out)]) == 0  # --no-eval: no pictures, no summary
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == f"wrote {out}/ (checkpoint.npz, config.json, metrics.jsonl)"
