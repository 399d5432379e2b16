"""Where and how a run computes: ``device.py`` -- ``Engine`` (device, precision, autocast,
compiled steps, threads), ``Precision``, ``resolve_device``, ``resolve_precision``,
``compile_for``, ``cap_memory``, ``numerics``, ``thread_count``, ``cuda_device_count``;
``flops.py`` -- a step's FLOP count from its batch's shape, the GPUs' dense peaks, MFU."""
