"""Shrink a built Linux bundle after PyInstaller's COLLECT step (used by ``farnode.spec``).

Two steps, each checked so that it cannot leave a broken file behind:

- :func:`strip_tree`: ``strip --strip-unneeded`` on every ELF shared object that still has a symbol table,
  keeping the stripped copy only when its loadable segments are still page-aligned. binutils' strip
  rewrites the layout of libraries that ``patchelf`` (auditwheel) edited, e.g. numpy's OpenBLAS, into one
  the dynamic loader refuses ("ELF load command address/offset not page-aligned"): those stay as they are.
- :func:`shrink_icu_data`: Qt Core links ICU for case mapping, collation (``QCollator``), time-zone display
  names and legacy text codecs; ICU's data library (32 MB) also carries break-iterator dictionaries,
  transliterators, unit/currency/language/region display names and spell-out rules, none of which Qt (the
  only ICU user in the bundle) calls into. :func:`reduce_common_data` drops those items from ICU's common
  data package, and :func:`build_data_library` links the rest into a library with the same soname and
  data symbol (``icudt<N>_dat``) using binutils' ``as`` and ``ld``.

Sizes are in bytes. ELF64 little-endian (x86-64, aarch64) only; anything else is left alone.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

PT_LOAD = 1
SHT_SYMTAB = 2
SHT_DYNSYM = 11


def _elf64le(data: bytes) -> bool:
    return data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1


def _sections(data: bytes) -> list[tuple[str, int, int, int, int, int]]:
    """(name, type, addr, offset, size, link) of each section header."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    raw = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = raw[shstrndx][4] if shnum else 0

    def name(off: int) -> str:
        end = data.index(b"\0", strtab_off + off)
        return data[strtab_off + off:end].decode("ascii", "replace")

    return [(name(r[0]), r[1], r[3], r[4], r[5], r[6]) for r in raw]


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return _elf64le(fh.read(6))
    except OSError:
        return False


def has_symtab(data: bytes) -> bool:
    """Whether a strip would remove anything: a static symbol table or debug sections are present."""
    return any(t == SHT_SYMTAB or n.startswith(".debug") for n, t, *_ in _sections(data))


def loads_aligned(data: bytes) -> bool:
    """Whether every PT_LOAD segment satisfies ``offset ≡ vaddr (mod align)`` and lies inside the file,
    the conditions the dynamic loader checks before it maps a library."""
    if not _elf64le(data):
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _flags, offset, vaddr, _paddr, filesz, _memsz, align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type != PT_LOAD:
            continue
        if align > 1 and (offset - vaddr) % align:
            return False
        if offset % 4096 != vaddr % 4096 or offset + filesz > len(data):
            return False
    return True


def strip_tree(root: Path, strip: str = "strip", log: Callable[[str], None] = print) -> int:
    """Strip every unstripped ELF library under ``root`` in place where that is safe. Returns bytes saved."""
    saved = 0
    refused: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "lib"
        for path in sorted(root.rglob("*.so*")):
            if path.is_symlink() or not path.is_file() or not is_elf(path):
                continue
            data = path.read_bytes()
            if not has_symtab(data):
                continue
            shutil.copyfile(path, scratch)
            if subprocess.run([strip, "--strip-unneeded", str(scratch)], capture_output=True).returncode:
                refused.append(f"{path.relative_to(root)} (strip failed)")
                continue
            new = scratch.read_bytes()
            if len(new) >= len(data):
                continue
            if not loads_aligned(new):
                refused.append(f"{path.relative_to(root)} (layout would break)")
                continue
            mode = path.stat().st_mode
            path.write_bytes(new)
            path.chmod(mode)
            saved += len(data) - len(new)
    log(f"strip: {saved / 1e6:.1f} MB saved; left as they are: {', '.join(refused) or 'none'}")
    return saved


# --- ICU ---------------------------------------------------------------------------------------------

# Trees and item kinds of ICU's data that Qt never reaches: Qt Core calls only u_strToLower/Upper (case
# data is compiled into libicuuc), ucol_* (coll/ and the locale tree), ucal_* time-zone names (zone/,
# zoneinfo64, metaZones, timezoneTypes) and ucnv_* (cnvalias.icu + *.cnv). No break iterators (brkitr/),
# transliterators (translit/), number spell-out (rbnf/), unit/currency/language/region display names
# (unit/, curr/, lang/, region/) or StringPrep profiles (*.spp): ``check_icu_imports`` verifies the list
# of ICU functions Qt imports at build time.
ICU_UNUSED_TREES = ("brkitr", "translit", "rbnf", "unit", "curr", "lang", "region")
ICU_UNUSED_SUFFIXES = (".spp",)
# The ICU functions Qt may call for the reduction above to be safe (prefixes, without the _<N> suffix).
ICU_ALLOWED_CALLS = ("u_strToLower", "u_strToUpper", "ucal_", "ucol_", "ucnv_", "UCNV_")


def icu_item_unused(name: str) -> bool:
    """Whether a common-data item (``icudt73l/brkitr/char.brk``) is one Qt never loads."""
    parts = name.split("/")
    if len(parts) > 2 and parts[1] in ICU_UNUSED_TREES:
        return True
    return name.endswith(ICU_UNUSED_SUFFIXES)


def find_data_symbol(data: bytes) -> tuple[str, int, int]:
    """(name, file offset, size) of the ``icudt<N>_dat`` symbol of an ICU data library."""
    secs = _sections(data)
    for _name, typ, _addr, offset, size, link in secs:
        if typ not in (SHT_DYNSYM, SHT_SYMTAB):
            continue
        str_off = secs[link][3]
        for i in range(size // 24):
            st_name, _info, _other, shndx, value, st_size = struct.unpack_from("<IBBHQQ", data, offset + 24 * i)
            end = data.index(b"\0", str_off + st_name)
            sym = data[str_off + st_name:end].decode("ascii", "replace")
            if re.fullmatch(r"icudt\d+_dat", sym) and 0 < shndx < len(secs):
                sec = secs[shndx]
                return sym, value - sec[2] + sec[3], st_size
    raise ValueError("no icudt<N>_dat symbol: not an ICU data library")


def _toc(dat: bytes) -> tuple[int, list[tuple[str, int, int]]]:
    """(header size, [(item name, start, end)]) of an ICU common data package (``CmnD``, little-endian)."""
    header_size, magic = struct.unpack_from("<H2s", dat, 0)
    if magic != b"\xda\x27" or dat[12:16] != b"CmnD" or dat[8] != 0:
        raise ValueError("not a little-endian ICU common data package")
    count, = struct.unpack_from("<I", dat, header_size)
    entries = [struct.unpack_from("<II", dat, header_size + 4 + 8 * i) for i in range(count)]
    toc = dat[header_size:]
    starts = [d for _n, d in entries] + [len(toc)]
    items = []
    for i, (name_off, data_off) in enumerate(entries):
        name = toc[name_off:toc.index(b"\0", name_off)].decode("ascii")
        items.append((name, header_size + data_off, header_size + starts[i + 1]))
    return header_size, items


def common_data_items(dat: bytes) -> list[tuple[str, int]]:
    """(name, bytes) of each item of an ICU common data package."""
    return [(name, end - start) for name, start, end in _toc(dat)[1]]


def reduce_common_data(dat: bytes, drop: Callable[[str], bool]) -> bytes:
    """The same package without the items ``drop`` names (order, padding and header kept)."""
    header_size, items = _toc(dat)
    kept = [(name, dat[start:end]) for name, start, end in items if not drop(name)]
    names = b"".join(name.encode("ascii") + b"\0" for name, _ in kept)
    table_size = 4 + 8 * len(kept)
    data_start = (table_size + len(names) + 15) & ~15  # items are 16-byte aligned, relative to the TOC
    out = bytearray(dat[:header_size])
    out += struct.pack("<I", len(kept))
    name_off, data_off = table_size, data_start
    body = bytearray()
    for name, blob in kept:
        out += struct.pack("<II", name_off, data_off)
        name_off += len(name) + 1
        padded = blob + b"\0" * (-len(blob) % 16)
        body += padded
        data_off += len(padded)
    out += names
    out += b"\0" * (header_size + data_start - len(out))
    out += body
    return bytes(out)


def build_data_library(dat: bytes, symbol: str, soname: str, out: Path, *, as_: str = "as", ld: str = "ld") -> None:
    """Link ``dat`` into a shared library exporting ``symbol`` (16-byte aligned, read-only) as ``soname``."""
    with tempfile.TemporaryDirectory() as tmp:
        blob, asm, obj = Path(tmp) / "data.dat", Path(tmp) / "data.s", Path(tmp) / "data.o"
        blob.write_bytes(dat)
        asm.write_text(f'\t.section .rodata\n\t.globl {symbol}\n\t.type {symbol}, @object\n\t.balign 16\n'
                       f'{symbol}:\n\t.incbin "{blob}"\n\t.size {symbol}, . - {symbol}\n'
                       '\t.section .note.GNU-stack,"",@progbits\n')
        subprocess.run([as_, "-o", str(obj), str(asm)], check=True, capture_output=True)
        subprocess.run([ld, "-shared", "-soname", soname, "-z", "noexecstack", "-o", str(out), str(obj)],
                       check=True, capture_output=True)


def icu_calls(libraries: Iterable[Path]) -> set[str]:
    """ICU functions (without the version suffix) that ``libraries`` import, from ``nm -D``."""
    calls: set[str] = set()
    for lib in libraries:
        out = subprocess.run(["nm", "-D", "--undefined-only", str(lib)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.fullmatch(r"\s*U (\w+?)_(\d+)(@\S*)?", line)
            if m and re.match(r"u_|ucal_|ucol_|ucnv_|UCNV_|ubrk_|udat_|unum_|utrans_|uloc|ures_|uidna_|usprep_|"
                              r"ucurr_|ulocdata_|unorm|uset_|uregex_|uspoof_", m.group(1)):
                calls.add(m.group(1))
    return calls


def shrink_icu_data(lib_dir: Path, log: Callable[[str], None] = print) -> int:
    """Replace ``libicudata.so.*`` in ``lib_dir`` by one without the items Qt never loads, after checking that
    the libraries there call no ICU service beyond :data:`ICU_ALLOWED_CALLS`. Returns bytes saved (0 when
    the data library, binutils or the check is missing)."""
    libs = [p for p in lib_dir.glob("libicudata.so.*") if p.is_file() and not p.is_symlink()]
    if len(libs) != 1 or not all(shutil.which(t) for t in ("as", "ld", "nm")):
        log("icu: data library or binutils (as, ld, nm) not found: ICU data left as it is")
        return 0
    users = [p for p in lib_dir.glob("libQt6*.so*") if p.is_file() and not p.is_symlink()]
    calls = icu_calls(users)
    if not calls:
        log("icu: no Qt library imports ICU: data left as it is")
        return 0
    other = sorted(c for c in calls if not c.startswith(ICU_ALLOWED_CALLS))
    if other:
        log(f"icu: Qt calls ICU services this reduction does not keep data for ({', '.join(other)}): left as it is")
        return 0
    lib = libs[0]
    data = lib.read_bytes()
    symbol, offset, size = find_data_symbol(data)
    dat = data[offset:offset + size]
    small = reduce_common_data(dat, icu_item_unused)
    with tempfile.TemporaryDirectory() as tmp:
        new = Path(tmp) / lib.name
        build_data_library(small, symbol, lib.name, new)
        check = new.read_bytes()
        sym2, off2, size2 = find_data_symbol(check)
        if sym2 != symbol or check[off2:off2 + size2][:len(small)] != small or not loads_aligned(check):
            log("icu: the rebuilt data library does not check out: left as it is")
            return 0
        mode = lib.stat().st_mode
        shutil.copyfile(new, lib)
        lib.chmod(mode)
    saved = len(data) - lib.stat().st_size
    log(f"icu: {len(common_data_items(dat)) - len(common_data_items(small))} unused data items dropped, "
        f"{saved / 1e6:.1f} MB saved")
    return saved
