"""Reading and rewriting the segments of a baseline JPEG stream (ITU T.81 Annex B).

The DCT-domain encoder takes every header segment Pillow writes for the options given (JFIF, EXIF, ICC,
comment, frame, Huffman tables), sets the frame size, swaps in its own quantisation tables and writes the
entropy-coded scan.
"""
from dataclasses import dataclass, field, replace

import numpy as np

SOI, EOI, SOS, DQT, DHT, DRI = 0xD8, 0xD9, 0xDA, 0xDB, 0xC4, 0xDD
SOF_BASELINE = 0xC0
ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
    21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53,
    60, 61, 54, 47, 55, 62, 63])


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class JpegStreamError(ValueError):
    """The JPEG stream is not the baseline, single-scan stream this module rewrites."""


@dataclass
class Component:
    ident: int
    samp_h: int
    samp_v: int
    quant_table: int
    dc_table: int = 0
    ac_table: int = 0


@dataclass
class BaselineJpeg:
    """A parsed baseline JPEG: header segments (marker, payload) up to SOS, frame and scan parameters."""
    segments: list
    height: int
    width: int
    components: list
    sos_payload: bytes
    huffman: dict = field(default_factory=dict)  # (class 0=DC/1=AC, id) -> (bits[16], values)

    def blocks(self):
        """(blocks_h, blocks_w) of each component, as libjpeg sizes them."""
        hmax = max(c.samp_h for c in self.components)
        vmax = max(c.samp_v for c in self.components)
        return [(_ceil_div(_ceil_div(self.height * c.samp_v, vmax), 8),
                 _ceil_div(_ceil_div(self.width * c.samp_h, hmax), 8)) for c in self.components]

    def with_size(self, height: int, width: int) -> "BaselineJpeg":
        """The same header for an image of another size (the frame header's dimensions rewritten)."""
        if not (1 <= height <= 65535 and 1 <= width <= 65535):
            raise JpegStreamError(f"{width}x{height} does not fit a JPEG frame header")
        segments = [(m, p[:1] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + p[5:]) if m == SOF_BASELINE
                    else (m, p) for m, p in self.segments]
        return replace(self, segments=segments, height=height, width=width)

    def mcus(self):
        """Number of MCU rows and columns of an interleaved scan."""
        hmax = max(c.samp_h for c in self.components)
        vmax = max(c.samp_v for c in self.components)
        return -(-self.height // (8 * vmax)), -(-self.width // (8 * hmax))


def parse_baseline(data: bytes) -> BaselineJpeg:
    """Parse the header of a single-scan baseline JPEG (what Pillow writes without progressive)."""
    if data[:2] != b"\xff\xd8":
        raise JpegStreamError("not a JPEG stream (no SOI marker)")
    pos, segments, frame, huffman = 2, [], None, {}
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise JpegStreamError(f"expected a marker at byte {pos}")
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        payload = data[pos + 4:pos + 2 + length]
        pos += 2 + length
        if marker == SOS:
            if frame is None:
                raise JpegStreamError("scan before frame header")
            n = payload[0]
            by_id = {c.ident: c for c in frame[2]}
            for i in range(n):
                comp = by_id[payload[1 + 2 * i]]
                comp.dc_table, comp.ac_table = payload[2 + 2 * i] >> 4, payload[2 + 2 * i] & 15
            if n != len(frame[2]):
                raise JpegStreamError("multi-scan (non-interleaved) streams are not supported")
            return BaselineJpeg(segments, frame[0], frame[1], frame[2], payload, huffman)
        if 0xC1 <= marker <= 0xCF and marker not in (DHT, 0xC8, 0xCC):
            raise JpegStreamError(f"only baseline JPEG is supported, found SOF marker 0x{marker:02X}")
        if marker == DRI:
            raise JpegStreamError("restart markers are not supported")
        if marker == SOF_BASELINE:
            height, width, n = int.from_bytes(payload[1:3], "big"), int.from_bytes(payload[3:5], "big"), payload[5]
            comps = [Component(payload[6 + 3 * i], payload[7 + 3 * i] >> 4, payload[7 + 3 * i] & 15, payload[8 + 3 * i])
                     for i in range(n)]
            frame = (height, width, comps)
        if marker == DHT:
            p = 0
            while p < len(payload):
                cls_id = payload[p]
                bits = list(payload[p + 1:p + 17])
                values = bytes(payload[p + 17:p + 17 + sum(bits)])
                huffman[(cls_id >> 4, cls_id & 15)] = (bits, values)
                p += 17 + sum(bits)
        segments.append((marker, payload))
    raise JpegStreamError("no scan found (truncated JPEG stream)")


def huffman_code_table(bits, values):
    """Code and length of each symbol (ITU T.81 Annex C); symbols absent from the table have length 0."""
    code_of, size_of = np.zeros(256, np.uint32), np.zeros(256, np.uint8)
    code, k = 0, 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            code_of[values[k]], size_of[values[k]] = code, length
            code += 1
            k += 1
        code <<= 1
    return code_of, size_of


def dqt_payload(tables) -> bytes:
    """DQT segment payload for 8-bit tables given in natural order (table i gets id i)."""
    out = bytearray()
    for i, table in enumerate(tables):
        table = np.asarray(table)
        if table.max() > 255:
            raise ValueError("quantisation step above 255 does not fit a baseline table")
        out.append(i)
        out += bytes(table[ZIGZAG].astype(np.uint8))
    return bytes(out)


def assemble(header: BaselineJpeg, tables, scan: bytes) -> bytes:
    """The full stream: Pillow's header segments with our DQT, then the scan and EOI."""
    out = bytearray(b"\xff\xd8")
    dqt_written = False
    for marker, payload in header.segments:
        if marker == DQT:
            if dqt_written:
                continue
            payload, dqt_written = dqt_payload(tables), True
        out += bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload
    out += bytes([0xFF, SOS]) + (len(header.sos_payload) + 2).to_bytes(2, "big") + header.sos_payload
    out += scan + b"\xff\xd9"
    return bytes(out)


def drop_duplicate_segments(data: bytes) -> bytes:
    """Remove byte-identical repeats of header segments (libjpeg writes JFIF and also copies the saved one)."""
    out, seen, pos = bytearray(data[:2]), set(), 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] != SOS:
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        segment = bytes(data[pos:end])
        if not (0xE0 <= data[pos + 1] <= 0xEF and segment in seen):
            out += segment
        seen.add(segment)
        pos = end
    return bytes(out + data[pos:])


def assemble_optimised(header: BaselineJpeg, tables, huffman: dict, scan: bytes) -> bytes:
    """The full stream as libjpeg writes it with optimised Huffman tables: the header's segments, one DQT
    segment per quantisation table (natural order, table i gets id i) where the header's first DQT was, and
    one DHT segment per table of ``huffman`` ((class, id) -> (bits[16], values)) where its first DHT was, in
    libjpeg's order (each component's DC then AC table, each table once); then the scan and EOI. Component
    identifiers are renumbered 0..n-1 in the frame and scan headers, as jpeglib's libjpeg re-coding writes
    them (decoders match components by these numbers only)."""
    out = bytearray(b"\xff\xd8")
    n = len(header.components)
    sos = bytearray(header.sos_payload)
    for i in range(n):
        sos[1 + 2 * i] = i
    dqt_written = dht_written = False
    order = []
    for comp in header.components:
        for key in ((0, comp.dc_table), (1, comp.ac_table)):
            if key not in order:
                order.append(key)

    def segment(marker, payload):
        out.extend(bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload)

    for marker, payload in header.segments:
        if marker == DQT:
            if not dqt_written:
                for i, table in enumerate(tables):
                    segment(DQT, bytes([i]) + dqt_payload([table])[1:])
                dqt_written = True
        elif marker == DHT:
            if not dht_written:
                for cls, ident in order:
                    bits, values = huffman[(cls, ident)]
                    segment(DHT, bytes([cls << 4 | ident]) + bytes(bits) + bytes(values))
                dht_written = True
        elif marker == SOF_BASELINE:
            sof = bytearray(payload)
            for i in range(n):
                sof[6 + 3 * i] = i
            segment(marker, bytes(sof))
        else:
            segment(marker, payload)
    segment(SOS, bytes(sos))
    out += scan + b"\xff\xd9"
    return bytes(out)
