"""Just enough ELF64 reading for the guest builder: DT_NEEDED, PT_INTERP and a section's bytes.

Used instead of ldd/readelf/modinfo so the builder needs nothing beyond the Python stdlib and
works on files of another root (dpkg -x trees), never the host's libraries.
"""

from __future__ import annotations

import struct


class ElfError(ValueError):
    pass


class Elf:
    def __init__(self, data: bytes, name: str = "?") -> None:
        if data[:4] != b"\x7fELF":
            raise ElfError(f"{name}: not an ELF file")
        if data[4] != 2 or data[5] != 1:
            raise ElfError(f"{name}: only little-endian ELF64 is supported")
        self.data = data
        self.name = name
        (self.e_type, _m, _v, _entry, self.phoff, self.shoff, _f, _eh, self.phentsize, self.phnum,
         self.shentsize, self.shnum, self.shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)

    @classmethod
    def from_path(cls, path: str) -> Elf:
        with open(path, "rb") as fh:
            return cls(fh.read(), path)

    def segments(self):
        for i in range(self.phnum):
            yield struct.unpack_from("<IIQQQQQQ", self.data, self.phoff + i * self.phentsize)

    def sections(self) -> dict[str, tuple[int, int, int]]:
        """name -> (type, offset, size)"""
        heads = [struct.unpack_from("<IIQQQQIIQQ", self.data, self.shoff + i * self.shentsize)
                 for i in range(self.shnum)]
        if not heads:
            return {}
        strtab = heads[self.shstrndx]
        out = {}
        for h in heads:
            start = strtab[4] + h[0]
            name = self.data[start:self.data.index(b"\0", start)].decode()
            out[name] = (h[1], h[4], h[5])
        return out

    def section(self, name: str) -> bytes | None:
        sec = self.sections().get(name)
        if sec is None:
            return None
        return self.data[sec[1]:sec[1] + sec[2]]

    def _vaddr_to_offset(self, vaddr: int) -> int:
        for p_type, _flags, offset, p_vaddr, _pa, filesz, _memsz, _align in self.segments():
            if p_type == 1 and p_vaddr <= vaddr < p_vaddr + filesz:
                return offset + (vaddr - p_vaddr)
        raise ElfError(f"{self.name}: address {vaddr:#x} is in no PT_LOAD segment")

    def interp(self) -> str | None:
        for p_type, _flags, offset, _va, _pa, filesz, _memsz, _align in self.segments():
            if p_type == 3:
                return self.data[offset:offset + filesz].rstrip(b"\0").decode()
        return None

    def needed(self) -> list[str]:
        dyn = None
        for p_type, _flags, offset, _va, _pa, filesz, _memsz, _align in self.segments():
            if p_type == 2:
                dyn = (offset, filesz)
        if dyn is None:
            return []
        entries = []
        strtab = None
        for i in range(dyn[1] // 16):
            tag, val = struct.unpack_from("<qQ", self.data, dyn[0] + i * 16)
            if tag == 0:
                break
            if tag == 5:
                strtab = self._vaddr_to_offset(val)
            elif tag == 1:
                entries.append(val)
        if strtab is None:
            return []
        names = []
        for off in entries:
            start = strtab + off
            names.append(self.data[start:self.data.index(b"\0", start)].decode())
        return names

    def modinfo(self) -> dict[str, list[str]]:
        """A kernel module's .modinfo as key -> values (depends=, name=, ...)."""
        raw = self.section(".modinfo") or b""
        out: dict[str, list[str]] = {}
        for item in raw.split(b"\0"):
            if b"=" in item:
                k, v = item.decode(errors="replace").split("=", 1)
                out.setdefault(k, []).append(v)
        return out
