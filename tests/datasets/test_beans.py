import hashlib
import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from tapefit.datasets import DatasetFormatError, DownloadError, beans


def jpeg(colour):
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), colour, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def split_zip(split, per_class=2, extra=()):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c, name in enumerate(beans.CLASS_NAMES):
            for i in range(per_class):
                zf.writestr(f"{split}/{name}/{name}_{split}.{i}.jpg", jpeg(40 * c))
        for name, data in extra:
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def served(serve, monkeypatch):
    files = {url: split_zip(split) for split, url in beans._URLS.items()}
    digests = {split: hashlib.sha256(files[url]).hexdigest() for split, url in beans._URLS.items()}
    monkeypatch.setattr(beans, "_SHA256", digests)
    return serve(files)


def test_downloads_and_unpacks_the_three_splits(home, served):
    folders = beans.load_data()
    assert folders == beans.BeansFolders(*(str(home / "beans" / s) for s in ("train", "validation", "test")))
    train, validation, test = folders
    for folder in folders:
        assert sorted(os.listdir(folder)) == list(beans.CLASS_NAMES)
        assert sorted(os.listdir(os.path.join(folder, "healthy"))) == [
            f"healthy_{os.path.basename(folder)}.{i}.jpg" for i in range(2)]
    assert len(served) == 3
    assert not [n for n in os.listdir(home / "beans") if n.startswith(".")]  # no temporaries left
    assert beans.load_data() == folders and len(served) == 3  # second call: no network


def test_existing_folders_are_used_offline(tmp_path, offline):
    for split in ("train", "validation", "test"):
        (tmp_path / split / "healthy").mkdir(parents=True)
        (tmp_path / split / "healthy" / "a.jpg").write_bytes(jpeg(1))
    assert beans.load_data(str(tmp_path)).validation == str(tmp_path / "validation")
    assert offline == []


def test_offline_error_names_the_zip(home):
    with pytest.raises(DownloadError) as info:
        beans.load_data()
    assert "https://storage.googleapis.com/ibeans/train.zip" in str(info.value)
    assert str(home / "beans" / "train.zip") in str(info.value)


@pytest.mark.parametrize("evil", ["../escaped.txt", "/tmp/absolute.txt", "train/../../escaped.txt"])
def test_zip_entries_leaving_the_folder_are_refused(tmp_path, evil):
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    archive = tmp_path / "train.zip"
    archive.write_bytes(split_zip("train", extra=[(evil, b"gotcha")]))
    with pytest.raises(DatasetFormatError, match="points outside"):
        beans.extract_zip(str(archive), str(tmp_path / "train"))
    assert not (tmp_path / "train").exists() and not (tmp_path.parent / "escaped.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["train.zip"]


def test_corrupt_zip_gives_a_clear_error(tmp_path):
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.zip").write_bytes(b"not a zip at all")
    with pytest.raises(DatasetFormatError, match="train.zip"):
        beans.load_data(str(tmp_path))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="maps fds to paths through /proc")
def test_extracted_files_are_fsynced_before_the_folder_is_renamed_into_place(tmp_path, monkeypatch):
    archive = tmp_path / "train.zip"
    archive.write_bytes(split_zip("train", per_class=3))
    synced, checked = set(), []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        synced.add(os.path.realpath(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def rename(src, dst):
        if os.path.basename(dst) == "train":
            contents = [os.path.realpath(os.path.join(folder, name))
                        for folder, dirs, files in os.walk(src) for name in files + dirs]
            contents.append(os.path.realpath(src))
            checked.extend(contents)
            assert not [p for p in contents if p not in synced], "renamed before fsync"
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    beans.extract_zip(str(archive), str(tmp_path / "train"))
    assert len([p for p in checked if p.endswith(".jpg")]) == 9  # every image, and every folder
    assert os.path.realpath(tmp_path) in synced  # the parent, so that the rename itself is durable
    assert sorted(os.listdir(tmp_path / "train")) == list(beans.CLASS_NAMES)


def _zip_with(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def _symlink(name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)  # S_IFLNK: what `zip --symlinks` records
    return info, target


@pytest.mark.parametrize("entries", [
    [_symlink("train/healthy/link.jpg", "/etc/passwd")],
    [_symlink("train/healthy", "../../outside"), (zipfile.ZipInfo("train/healthy/a.jpg"), b"x")],
    [(zipfile.ZipInfo("..\\escaped.txt"), b"x")],
    [(zipfile.ZipInfo("C:/escaped.txt"), b"x")],
], ids=["symlink_file", "symlink_folder", "backslash_dotdot", "drive_letter"])
def test_links_and_other_escapes_are_refused(tmp_path, entries):
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    archive = work / "train.zip"
    archive.write_bytes(_zip_with([(zipfile.ZipInfo("train/bean_rust/a.jpg"), jpeg(3)), *entries]))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(DatasetFormatError, match="symbolic link|points outside"):
        beans.extract_zip(str(archive), str(work / "train"))
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_a_broken_deflate_stream_names_the_zip(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train/healthy/a.jpg", bytes(5000))
    blob = bytearray(buf.getvalue())
    blob[30 + len("train/healthy/a.jpg")] = 0xFF  # first byte of the deflate stream: invalid block type
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.zip").write_bytes(bytes(blob))
    with pytest.raises(DatasetFormatError, match=r"train\.zip is not a valid zip archive: it cannot be read"):
        beans.extract_zip(str(work / "train.zip"), str(work / "train"))
    assert [p.name for p in work.iterdir()] == ["train.zip"]
