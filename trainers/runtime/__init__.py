"""Where and how a run computes: ``device.py`` -- ``Engine`` (device, precision, autocast,
threads), ``Precision``, ``resolve_device``, ``resolve_precision``, ``numerics``,
``thread_count``, ``cuda_device_count``."""
