import io
import os
import pickle
import tarfile
import time

import numpy as np
import pytest

from tapefit.datasets import DatasetFormatError, DownloadError, RestrictedUnpickler, cifar10, cifar100


def rows(images):
    """(N, 32, 32, 3) -> the canonical (N, 3072) rows: 1024 red, 1024 green, 1024 blue."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def py2_pickle(obj):
    return pickle.dumps(obj, protocol=2)


def cifar10_batches(per_batch=7, n_test=5, seed=0):
    """Python-2-style batches (bytes keys, protocol 2) as the real files have, with known content."""
    rng = np.random.default_rng(seed)
    split = {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        split[name] = (x, y)
    blobs = {name: py2_pickle({b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                               b"data": rows(x), b"filenames": [b"f.png"] * len(x)})
             for name, (x, y) in split.items()}
    blobs["batches.meta"] = py2_pickle({b"label_names": [n.encode() for n in cifar10.CLASS_NAMES]})
    x_train = np.concatenate([split[f"data_batch_{i}"][0] for i in range(1, 6)])
    y_train = np.concatenate([split[f"data_batch_{i}"][1] for i in range(1, 6)])
    return blobs, (x_train, y_train), split["test_batch"]


def write_tar(path, folder, blobs):
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in blobs.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def write_folder(path, blobs):
    path.mkdir()
    for name, blob in blobs.items():
        (path / name).write_bytes(blob)


def check(result, train, test):
    (x_train, y_train), (x_test, y_test) = result
    for x, y, (ex, ey) in ((x_train, y_train, train), (x_test, y_test, test)):
        assert x.dtype == y.dtype == np.uint8
        assert x.shape == (len(ex), 32, 32, 3) and y.shape == (len(ex), 1)
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y[:, 0], ey)


@pytest.mark.parametrize("form", ["tar", "keras_tar", "folder"])
def test_cifar10_python_format(home, offline, form):
    blobs, train, test = cifar10_batches()
    if form == "tar":
        write_tar(home / "cifar-10-python.tar.gz", "cifar-10-batches-py", blobs)
    elif form == "keras_tar":
        write_tar(home / "cifar-10-batches-py.tar.gz", "cifar-10-batches-py", blobs)
    else:
        write_folder(home / "cifar-10-batches-py", blobs)
    check(cifar10.load_data(), train, test)
    assert offline == []


@pytest.mark.parametrize("form", ["tar", "folder"])
def test_cifar10_binary_format(home, form):
    _, train, test = cifar10_batches()
    blobs = {}
    for i in range(5):
        x, y = train[0][i * 7:(i + 1) * 7], train[1][i * 7:(i + 1) * 7]
        blobs[f"data_batch_{i + 1}.bin"] = np.concatenate([y[:, None].astype(np.uint8), rows(x)], 1).tobytes()
    blobs["test_batch.bin"] = np.concatenate([test[1][:, None].astype(np.uint8), rows(test[0])], 1).tobytes()
    if form == "tar":
        write_tar(home / "cifar-10-binary.tar.gz", "cifar-10-batches-bin", blobs)
    else:
        write_folder(home / "cifar-10-batches-bin", blobs)
    check(cifar10.load_data(), train, test)


def cifar100_python(seed=0):
    rng = np.random.default_rng(seed)
    out, blobs = {}, {}
    for split, n in (("train", 9), ("test", 4)):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        fine, coarse = rng.integers(0, 100, n), rng.integers(0, 20, n)
        out[split] = (x, fine, coarse)
        blobs[split] = py2_pickle({b"data": rows(x), b"fine_labels": [int(v) for v in fine],
                                   b"coarse_labels": [int(v) for v in coarse], b"filenames": [b"a"] * n})
    return blobs, out


@pytest.mark.parametrize("label_mode", ["fine", "coarse"])
def test_cifar100_python_format(home, label_mode):
    blobs, out = cifar100_python()
    write_tar(home / "cifar-100-python.tar.gz", "cifar-100-python", blobs)
    pick = 1 if label_mode == "fine" else 2
    check(cifar100.load_data(label_mode), (out["train"][0], out["train"][pick]),
          (out["test"][0], out["test"][pick]))


def test_cifar100_binary_format(home):
    _, out = cifar100_python()
    blobs = {}
    for s in ("train", "test"):
        x, fine, coarse = out[s]
        labels = np.stack([coarse, fine], 1).astype(np.uint8)
        blobs[f"{s}.bin"] = np.concatenate([labels, rows(x)], 1).tobytes()
    write_folder(home / "cifar-100-binary", blobs)
    check(cifar100.load_data("coarse"), (out["train"][0], out["train"][2]), (out["test"][0], out["test"][2]))


def test_cifar100_rejects_unknown_label_mode():
    with pytest.raises(ValueError, match='"fine" or "coarse"'):
        cifar100.load_data("medium")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_crafted_pickle_is_refused_and_never_runs(home, tmp_path):
    marker = tmp_path / "pwned"
    blobs, _, _ = cifar10_batches()
    blobs["data_batch_3"] = py2_pickle({b"data": _Exploit(marker), b"labels": []})
    write_tar(home / "cifar-10-python.tar.gz", "cifar-10-batches-py", blobs)
    with pytest.raises(pickle.UnpicklingError) as info:
        cifar10.load_data()
    assert f"{os.system.__module__}.system" in str(info.value)  # names the forbidden global
    assert "data_batch_3" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    b"c_codecs\nencode\n(S'x'\nS'zlib_codec'\ntR.",
    b"csubprocess\nPopen\n(S'true'\ntR.",
])
def test_restricted_unpickler_refuses_other_globals(payload):
    with pytest.raises(pickle.UnpicklingError, match="Refusing"):
        RestrictedUnpickler(io.BytesIO(payload), encoding="bytes").load()


def test_corrupt_archive_and_missing_member(home):
    (home / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DatasetFormatError, match="cifar-10-python.tar.gz"):
        cifar10.load_data()
    blobs, _, _ = cifar10_batches()
    del blobs["data_batch_5"]
    write_tar(home / "cifar-10-python.tar.gz", "cifar-10-batches-py", blobs)
    with pytest.raises(DatasetFormatError, match="data_batch_5"):
        cifar10.load_data()


def test_wrong_shaped_batch(home):
    blobs, _, _ = cifar10_batches()
    blobs["test_batch"] = py2_pickle({b"data": np.zeros((5, 1024), np.uint8), b"labels": [0] * 5})
    write_folder(home / "cifar-10-batches-py", blobs)
    with pytest.raises(DatasetFormatError, match=r"test_batch.*uint8 \(N, 3072\)"):
        cifar10.load_data()


def test_missing_offline_names_url_and_path(home):
    with pytest.raises(DownloadError) as info:
        cifar10.load_data()
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in str(info.value)
    assert str(home / "cifar-10-python.tar.gz") in str(info.value)


def test_full_size_cifar10_loads_in_seconds(home):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (10000, 3072), dtype=np.uint8)
    # Protocol 4 stores the pixels as raw bytes, as the real (Python 2) files do.
    blob = pickle.dumps({b"data": data, b"labels": [i % 10 for i in range(10000)]}, protocol=4)
    write_folder(home / "cifar-10-batches-py", {**{f"data_batch_{i}": blob for i in range(1, 6)},
                                                  "test_batch": blob})
    start = time.perf_counter()
    (x, y), (xt, _) = cifar10.load_data()
    assert time.perf_counter() - start < 10
    assert x.shape == (50000, 32, 32, 3) and xt.shape == (10000, 32, 32, 3)
    np.testing.assert_array_equal(x[10001], data[1].reshape(3, 32, 32).transpose(1, 2, 0))
    assert y[10001, 0] == 1


@pytest.mark.parametrize("evil", ["../cifar-10-batches-py/data_batch_1", "/cifar-10-batches-py/data_batch_1",
                                  "x/../../cifar-10-batches-py/data_batch_1", "notes/../../../escaped.txt"])
def test_archive_entries_pointing_outside_are_refused(home, evil):
    blobs, _, _ = cifar10_batches()
    path = home / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in [(evil, blobs["data_batch_1"]), *((f"cifar-10-batches-py/{n}", b)
                                                            for n, b in blobs.items())]:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(DatasetFormatError, match=f"cifar-10-python.tar.gz .*{evil!r} points outside"):
        cifar10.load_data()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_archive_links_are_refused(home, kind):
    blobs, _, _ = cifar10_batches()
    path = home / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        link.type, link.linkname = kind, "/etc/passwd"
        tar.addfile(link)
        for name, blob in blobs.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(DatasetFormatError, match="data_batch_1 is not a regular file"):
        cifar10.load_data()


def test_cifar100_crafted_pickle_is_refused_and_never_runs(home, tmp_path):
    marker = tmp_path / "pwned"
    blobs, _ = cifar100_python()
    blobs["train"] = py2_pickle({b"data": _Exploit(marker), b"fine_labels": [], b"coarse_labels": []})
    write_folder(home / "cifar-100-python", blobs)
    with pytest.raises(pickle.UnpicklingError, match=r"cifar-100-python:train: Refusing .*system"):
        cifar100.load_data()
    assert not marker.exists()
