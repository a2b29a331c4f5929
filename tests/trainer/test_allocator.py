from trainer.allocator import JEMALLOC_CONF, allocator_advice


def test_a_cpu_run_on_glibc_is_told_how_to_start_under_jemalloc():
    advice = allocator_advice({}, "cpu", find_library=lambda name: f"lib{name}.so.2")
    assert advice is not None
    assert f"LD_PRELOAD=libjemalloc.so.2 MALLOC_CONF={JEMALLOC_CONF}" in advice


def test_without_jemalloc_on_the_system_the_advice_says_what_to_install():
    advice = allocator_advice({}, "cpu", find_library=lambda name: None)
    assert advice is not None and "libjemalloc2" in advice


def test_no_advice_under_jemalloc_or_on_a_gpu():
    assert allocator_advice({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "cpu") is None
    assert allocator_advice({}, "cuda") is None
