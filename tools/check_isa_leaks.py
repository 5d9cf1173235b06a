"""Checks a portable (RELUFLOW_NATIVE=OFF) build of reluflow._core for wide instructions outside the SIMD
kernels of their instruction set: an AVX-512 instruction in a function that the scalar or AVX2 path
runs would crash those paths on a CPU without AVX-512 (simd.h, "ISA translation units", says how the
build avoids it: target pragmas after the includes, one namespace per instruction set).

    python tools/check_isa_leaks.py path/to/_core.so

The module must keep its symbols (pybind11 strips Release builds: configure with
-DCMAKE_BUILD_TYPE=RelWithDebInfo). Rules, per function of the disassembly:
  outside the isa_avx2 / isa_avx512 namespaces: no VEX/EVEX instruction at all (baseline x86-64: SSE2);
  in isa_avx2: no AVX-512 (zmm, mask registers k1-k7, xmm/ymm16-31, embedded broadcasts).
Exit status 1 and the offending functions listed if a rule is broken; 2 if the module has no symbols.
"""
import re
import subprocess
import sys

AVX512 = re.compile(r"%zmm|%k[1-7]\b|%[xy]mm(1[6-9]|2\d|3[01])\b|\{1to\d+\}")
FUNC = re.compile(r"^[0-9a-f]+ <(.+)>:$")
INSN = re.compile(r"^\s+[0-9a-f]+:\s+(\S+)\s*(.*)$")


def leaks(so_path):
    """{function: first offending instruction} and the number of functions seen."""
    dis = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", so_path], capture_output=True,
                         text=True, check=True).stdout
    bad, func, nfunc = {}, None, 0
    for line in dis.splitlines():
        m = FUNC.match(line)
        if m:
            func, nfunc = m.group(1), nfunc + 1
            continue
        m = INSN.match(line)
        if not m or func is None or func in bad:
            continue
        mnemonic, operands = m.group(1), m.group(2)
        if "isa_avx512" in func:
            continue
        if "isa_avx2" in func:
            if AVX512.search(operands):
                bad[func] = f"{mnemonic} {operands}"
        elif mnemonic.startswith("v") and mnemonic not in ("verr", "verw"):
            bad[func] = f"{mnemonic} {operands}"
    return bad, nfunc


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    names = subprocess.run(["nm", "-C", argv[1]], capture_output=True, text=True).stdout
    if "isa_scalar" not in names:
        print(f"{argv[1]}: no symbols of the SIMD kernels (stripped?); configure with RelWithDebInfo")
        return 2
    bad, nfunc = leaks(argv[1])
    for func, insn in sorted(bad.items()):
        print(f"LEAK {func}: {insn}")
    print(f"{nfunc} functions checked, {len(bad)} with instructions beyond their path")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
