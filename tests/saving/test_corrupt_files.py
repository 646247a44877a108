"""Damaged and hostile model files: every one is refused with a ValueError naming the file, and
zip bombs and lying headers are refused without allocating what they claim."""

import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import tapefit
from tapefit import layers
from tapefit.saving.model_file import MAX_CONFIG_BYTES

GIB = 1 << 30
PEAK_LIMIT = 200 * 1024 * 1024


def _model():
    return tapefit.Sequential([tapefit.Input((4,)), layers.Dense(3, name="d")])


def _members(tmp_path):
    """The members of a genuine ``.tapefit`` file, in order."""
    path = tmp_path / "good.tapefit"
    _model().save(path)
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _raw_zip(path, members):
    """Write a zip by hand so that a member can lie: ``members`` is a list of
    ``(name, method, payload, crc, declared_size)``."""
    body, central = bytearray(), bytearray()
    for name, method, payload, crc, size in members:
        offset, encoded = len(body), name.encode()
        body += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(payload), size, len(encoded), 0
        )
        body += encoded + payload
        central += struct.pack(
            "<4s6H3L5H2L",
            *(b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(payload), size, len(encoded)),
            *(0, 0, 0, 0, 0, offset),
        )
        central += encoded
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(body), 0)
    path.write_bytes(bytes(body + central + end))


def _stored(name, blob):
    return (name, zipfile.ZIP_STORED, blob, zlib.crc32(blob), len(blob))


def _zero_bomb(mebibytes=1024):
    """A raw deflate stream that inflates to ``mebibytes`` MiB of zeros, from ~1 KB per MiB.

    One MiB of zeros is compressed once, ending in a full flush (byte-aligned, no reference to
    earlier data), so the same bytes can follow themselves: the stream is that segment repeated,
    then an empty final block. Built in milliseconds; never inflated here beyond two segments.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    final_block = b"\x03\x00"
    two = zlib.decompressobj(-15)
    assert two.decompress(segment * 2 + final_block) == bytes(2 << 20) and two.eof
    return segment * mebibytes + final_block


def _peak_while(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _refused(path, match):
    def load():
        with pytest.raises(ValueError, match=match) as info:
            tapefit.models.load_model(path)
        assert str(path) in str(info.value)

    return load


@pytest.mark.parametrize("member", ["config.json", "model.weights.safetensors"])
@pytest.mark.parametrize("declared", ["true_size", "small", "just_under_the_limit"])
def test_zip_bomb_is_refused_with_bounded_memory(tmp_path, member, declared):
    bomb = _zero_bomb()
    size = {"true_size": GIB, "small": 1000, "just_under_the_limit": MAX_CONFIG_BYTES - 1}[declared]
    entries = [
        (name, zipfile.ZIP_DEFLATED, bomb, 0, size) if name == member else _stored(name, blob)
        for name, blob in _members(tmp_path).items()
    ]
    path = tmp_path / "bomb.tapefit"
    _raw_zip(path, entries)
    assert path.stat().st_size < 2 << 20  # a ~1 MB file that inflates to 1 GiB
    match = "over the limit" if declared == "true_size" else "corrupted or truncated"
    peak = _peak_while(_refused(path, f"{member}.*{match}|{match}.*{member}"))
    assert peak < PEAK_LIMIT, f"peak traced memory {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("member", ["config.json", "model.weights.safetensors"])
def test_a_flipped_byte_in_a_member_names_the_file(tmp_path, member):
    path = tmp_path / "m.tapefit"
    _model().save(path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    blob = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    blob[start + info.compress_size // 2] ^= 0x55
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=rf"m\.tapefit: {member} is corrupted or truncated \(BadZipFile"):
        tapefit.models.load_model(path)


def test_a_broken_deflate_stream_names_the_file(tmp_path):
    members = _members(tmp_path)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = compressor.compress(members["config.json"]) + compressor.flush()
    broken = b"\xff" + deflated[1:]  # block type 11: invalid, zlib.error
    config = members["config.json"]
    entries = [("config.json", zipfile.ZIP_DEFLATED, broken, zlib.crc32(config), len(config))]
    entries += [_stored(n, b) for n, b in members.items() if n != "config.json"]
    _raw_zip(tmp_path / "z.tapefit", entries)
    with pytest.raises(ValueError, match=r"z\.tapefit: config\.json is corrupted or truncated \(error"):
        tapefit.models.load_model(tmp_path / "z.tapefit")


@pytest.mark.parametrize("lie", [-100, +100])
def test_a_false_declared_size_names_the_file(tmp_path, lie):
    members = _members(tmp_path)
    weights = members["model.weights.safetensors"]
    entries = [
        ("model.weights.safetensors", zipfile.ZIP_STORED, weights, zlib.crc32(weights), len(weights) + lie)
        if n == "model.weights.safetensors"
        else _stored(n, b)
        for n, b in members.items()
    ]
    _raw_zip(tmp_path / "lie.tapefit", entries)
    with pytest.raises(ValueError, match=r"lie\.tapefit: model\.weights\.safetensors .*(corrupted|declares)"):
        tapefit.models.load_model(tmp_path / "lie.tapefit")


def test_other_compression_methods_are_refused(tmp_path):
    members = _members(tmp_path)
    path = tmp_path / "lzma.tapefit"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    with pytest.raises(ValueError, match=r"lzma\.tapefit: config\.json uses zip compression method 14"):
        tapefit.models.load_model(path)


def _huge_header_safetensors():
    return struct.pack("<Q", 2**62) + b'{"d.kernel": {}}' + bytes(64)


def test_safetensors_header_claiming_2_to_the_62_bytes_is_refused(tmp_path):
    path = tmp_path / "huge.weights.safetensors"
    path.write_bytes(_huge_header_safetensors())
    model = _model()
    before = model.get_weights()

    def load():
        with pytest.raises(ValueError, match=r"huge\.weights\.safetensors: corrupt .*4611686018427387904"):
            model.load_weights(path)

    assert _peak_while(load) < PEAK_LIMIT
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    members = _members(tmp_path)
    members["model.weights.safetensors"] = _huge_header_safetensors()
    _raw_zip(tmp_path / "huge.tapefit", [_stored(n, b) for n, b in members.items()])
    peak = _peak_while(_refused(tmp_path / "huge.tapefit", "model.weights.safetensors: corrupt"))
    assert peak < PEAK_LIMIT
