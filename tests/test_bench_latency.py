"""edgeface.bench.latency.side_by_side: the files and the ncnn teacher timed alternately on one thread.

Real shipped files, the real interpreter and the real ncnn teacher; no timing target (those live in
`make bench`), only what the function promises: one median per file, in milliseconds, and the teacher's."""
from __future__ import annotations

import pytest

from conftest import REPO

TEACHER = REPO.parent / "shared" / "teachers" / "mobilefacenet-ncnn"


def test_side_by_side_returns_one_median_per_file_and_the_teachers():
    from edgeface.bench.latency import side_by_side

    files = [REPO / "models" / "edgeface_face_micro_int8.tflite", REPO / "models" / "edgeface_expr_fer_int8.tflite"]
    if not all(f.is_file() for f in files) or not TEACHER.is_dir():
        pytest.skip("shipped files or the shared ncnn teacher missing")
    ms, teacher = side_by_side(files, TEACHER, repeats=2, runs=5, warmup=1)
    assert list(ms) == [str(f) for f in files]
    assert all(0.0 < v < 10_000 for v in ms.values()) and 0.0 < teacher < 10_000
    alone, none = side_by_side(files[:1], None, repeats=1, runs=3, warmup=1)
    assert none is None and list(alone) == [str(files[0])]


# Excerpts in the layout of Linux's /proc/cpuinfo: the first processor's lines are the ones read.
X86_VNNI = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni amx_int8 amx_tile

processor\t: 1
model name\t: second processor, not read
"""
X86_AVX2 = "processor\t: 0\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma f16c\n"
PI4 = ("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU part\t: 0xd08\n\n"
       "Revision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
ARM_DOT = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes crc32 asimddp\nCPU part\t: 0xd0b\n"


def test_parse_cpuinfo_names_the_int8_dot_product_features():
    from edgeface.bench.latency import describe_cpu, parse_cpuinfo

    vnni = parse_cpuinfo(X86_VNNI)
    assert vnni == {"model": "Intel(R) Xeon(R) Platinum 8480+", "int8_dot_product": True,
                    "int8_features": ["avx512_vnni", "amx_int8"]}
    assert describe_cpu(vnni) == "Intel(R) Xeon(R) Platinum 8480+, int8 dot product: yes (avx512_vnni, amx_int8)"
    avx2 = parse_cpuinfo(X86_AVX2)
    assert avx2["int8_dot_product"] is False and describe_cpu(avx2) == "AMD EPYC 7B13, int8 dot product: no"
    pi4 = parse_cpuinfo(PI4)  # Cortex-A72: no dot product; the board's name, not the CPU part number
    assert pi4 == {"model": "Raspberry Pi 4 Model B Rev 1.4", "int8_dot_product": False, "int8_features": []}
    arm = parse_cpuinfo(ARM_DOT)
    assert arm == {"model": "0xd0b", "int8_dot_product": True, "int8_features": ["asimddp"]}
    unknown = parse_cpuinfo("")  # no flags line: not known, never a guessed "no"
    assert unknown["int8_dot_product"] is None and describe_cpu(unknown) == "unknown CPU, int8 dot product: unknown"


def test_cpu_info_reads_this_machine():
    from edgeface.bench.latency import cpu_info

    info = cpu_info()
    assert set(info) == {"model", "int8_dot_product", "int8_features"}
    assert info["int8_dot_product"] in (True, False, None)
    assert all(isinstance(f, str) for f in info["int8_features"])


def test_middle_round_keeps_the_round_whose_median_is_the_median():
    from edgeface.bench.latency import middle_round

    rounds = [{"median": 5.0, "p90": 6.0}, {"median": 3.0, "p90": 9.0}, {"median": 4.0, "p90": 4.5}]
    assert middle_round(rounds) == {"median": 4.0, "p90": 4.5, "round_medians": [5.0, 3.0, 4.0]}
    # an even count keeps the lower middle round: a reported time is always one that was measured
    assert middle_round(rounds[:2])["median"] == 3.0 and middle_round(rounds[:1])["median"] == 5.0


def test_interleaved_latency_times_every_model_and_the_teacher_in_each_round():
    from edgeface.bench.latency import interleaved_latency

    files = [REPO / "models" / "edgeface_face_micro_int8.tflite", REPO / "models" / "edgeface_expr_cnn_int8.tflite"]
    if not all(f.is_file() for f in files) or not TEACHER.is_dir():
        pytest.skip("shipped files or the shared ncnn teacher missing")
    timed, teacher = interleaved_latency([(str(f), None) for f in files], threads=(1, 2), runs=3, warmup=1,
                                         repeats=2, teacher_dir=TEACHER)
    assert len(timed) == 2
    for d in timed:
        assert set(d["per_thread"]) == {"1", "2"} and d["rounds"] == 2
        for summary in d["per_thread"].values():
            assert len(summary["round_medians"]) == 2 and summary["median"] in summary["round_medians"]
            assert summary["runs"] == 3
    assert len(teacher["round_medians"]) == 2 and teacher["median"] in teacher["round_medians"]
    assert teacher["threads"] == 1 and teacher["path"] == str(TEACHER)
