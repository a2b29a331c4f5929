from trainer.allocator import MMAP_THRESHOLD, allocator_advice


def test_a_cpu_run_on_glibc_defaults_is_told_how_to_keep_its_memory_flat():
    advice = allocator_advice({}, "cpu", libc="glibc")
    assert advice is not None and MMAP_THRESHOLD in advice


def test_no_advice_with_a_threshold_set_under_jemalloc_on_a_gpu_or_without_glibc():
    assert allocator_advice({"MALLOC_MMAP_THRESHOLD_": "1048576"}, "cpu", libc="glibc") is None
    assert allocator_advice({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "cpu", libc="glibc") is None
    assert allocator_advice({}, "cuda", libc="glibc") is None
    assert allocator_advice({}, "cpu", libc="") is None  # macOS, musl: the variable means nothing there
