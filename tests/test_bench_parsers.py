"""The benchmarks' pure parts: oneDNN's verbose log, op attribution in a profile, per-side summaries.

No timing is asserted: these check the bookkeeping that turns measurements into BENCHMARKS.md's figures.
"""

from __future__ import annotations

import pytest

from bench.train_profile import kernel_times, memory_type, op_component
from bench.train_throughput import summarize

LOG = """\
onednn_verbose,v1,info,oneDNN v3.7.3 (commit N/A)
onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,brg_conv_fwd:avx10_1_512_amx,forward_training,\
src:bf16::blocked:acdb::f0 wei:bf16::blocked:Acdb32a::f0 bia:f32::blocked:a::f0 dst:bf16::blocked:acdb::f0,,,mb64,0.5
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx10_1_512_amx,forward_training,\
src:bf16::blocked:acdb::f0 wei:bf16:a:blocked:Acdb32a::f0 bia:f32::blocked:a::f0 dst:bf16::blocked:acdb::f0,,,mb64,3.0
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx10_1_512_amx,forward_training,\
src:bf16::blocked:acdb::f0 wei:bf16::blocked:Acdb32a::f0 bia:f32::blocked:a::f0 dst:bf16::blocked:acdb::f0,,,mb64,1.0
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,\
src:f32::blocked:abcd::f0 dst:bf16::blocked:acdb::f0,,,64x3,2.0
some other line, from TensorFlow
"""


def test_kernel_times_sums_exec_lines_per_kernel() -> None:
    rows = kernel_times(LOG, steps=2)
    assert rows == [
        {
            "primitive": "convolution",
            "implementation": "brg_conv_fwd:avx10_1_512_amx",
            "types": "bf16/f32",
            "ms_per_step": 2.0,  # (3.0 + 1.0) / 2; the create line is not an execution
        },
        {"primitive": "reorder", "implementation": "jit:uni", "types": "bf16/f32", "ms_per_step": 1.0},
    ]


@pytest.mark.parametrize(
    ("descriptor", "dtype"),
    [
        ("src:bf16::blocked:acdb::f0", "bf16"),
        ("wei:bf16:a:blocked:AcdB16b32a2b::f0", "bf16"),
        ("diff_src:f32::blocked:abcd::f0", "f32"),
        ("src_f32::blocked:ab:f0", "f32"),
        ("ws:u8::blocked:acdb::f0", "u8"),
    ],
)
def test_memory_type(descriptor: str, dtype: str) -> None:
    assert memory_type(descriptor) == dtype


@pytest.mark.parametrize(
    ("name", "thread", "component"),
    [
        ("StatefulPartitionedCall/model_1/conv2d_1/Relu:_MklNativeFusedConv2D", "tf_Compute/1", "conv2d forward"),
        (
            "StatefulPartitionedCall/gradient_tape/model_1/batch_normalization_1_2/moments/Mul:Mul",
            "tf_Compute/2",
            "batch_normalization backward",
        ),
        ("StatefulPartitionedCall/model_1/dropout_3/stateless_dropout/Mul:Mul", "tf_Compute/1", "dropout forward"),
        ("StatefulPartitionedCall/adam/Sqrt:Sqrt", "tf_Compute/1", "optimizer"),
        ("Cast:Cast", "tf_data_private_threadpool/7", "input pipeline (tf.data threads)"),
        ("StatefulPartitionedCall/AddN_11:AddN", "tf_Compute/1", "other"),
    ],
)
def test_op_component(name: str, thread: str, component: str) -> None:
    assert op_component(name, thread) == component


def test_summarize_takes_the_median_round_and_the_precision_peak() -> None:
    rows = [
        {"ms_per_step": ms, "cpu_ms_per_step": cpu, "images_per_s": 64_000 / ms, "batch_size": 64}
        | {"policy": "mixed_bfloat16", "training_flops_per_image": 100_000_000}
        for ms, cpu in ((100.0, 150.0), (300.0, 170.0), (200.0, 160.0))
    ]
    peaks = {
        "float32": {"gflops": 100.0, "gflops_per_cpu_s": 50.0},
        "bfloat16": {"gflops": 128.0, "gflops_per_cpu_s": 80.0},
    }
    summary = summarize(rows, peaks)
    assert summary["peak_dtype"] == "bfloat16"
    assert summary["median_ms_per_step"] == 200.0
    assert summary["best_ms_per_step"] == 100.0
    assert summary["median_cpu_ms_per_step"] == 160.0
    assert summary["gflops"] == pytest.approx(32.0)  # 100 MFLOP x 320 images/s
    assert summary["percent_of_peak"] == pytest.approx(25.0)
    assert summary["gflops_per_cpu_s"] == pytest.approx(40.0)  # 100 MFLOP x 64 images / 0.16 CPU s
    assert summary["percent_of_peak_cpu"] == pytest.approx(50.0)
